"""Random-weight checkpoints of any size, written one block at a time (for tests and benchmarks of streaming: an
8B-parameter checkpoint is written without ever holding more than one block).

:func:`write_random_checkpoint` builds the model of a config on the ``meta`` device for its tensor names and
shapes, and writes one safetensors shard per decoder block (plus one for the tensors outside the blocks) with an
index and the config, as ``save_pretrained`` lays them out. Values: normal with standard deviation
``config.initializer_range``, norm weights 1, biases 0.
"""

from __future__ import annotations

import json
import os
from typing import Dict

import torch

from .arch import unit_of, unit_order
from .checkpoint import INDEX, write_shard

__all__ = ["write_random_checkpoint"]


def write_random_checkpoint(folder: str, config, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> int:
    """Write a random checkpoint of ``config`` (a transformers config) to ``folder``; returns its bytes."""
    from transformers import AutoModelForCausalLM

    os.makedirs(folder, exist_ok=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    gen = torch.Generator().manual_seed(seed)
    std = float(getattr(config, "initializer_range", 0.02))
    units: Dict[str, Dict[str, tuple]] = {}
    for name, p in model.named_parameters():  # tied parameters once
        units.setdefault(unit_of(name), {})[name] = tuple(p.shape)
    order = sorted(units, key=unit_order)
    weight_map, total = {}, 0
    for j, u in enumerate(order):
        file = f"model-{j + 1:05d}-of-{len(order):05d}.safetensors"
        tensors = {}
        for name, shape in units[u].items():
            if name.endswith("norm.weight") or (len(shape) == 1 and "norm" in name):
                t = torch.ones(shape, dtype=dtype)
            elif name.endswith(".bias"):
                t = torch.zeros(shape, dtype=dtype)
            else:
                t = torch.randn(shape, generator=gen).mul_(std).to(dtype)
            tensors[name] = t
            weight_map[name] = file
        total += write_shard(tensors, os.path.join(folder, file))
        del tensors
    with open(os.path.join(folder, INDEX), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = type(config).from_dict(config.to_dict())
    if hasattr(config, "dtype"):
        config.dtype = dtype
    else:  # older transformers
        config.torch_dtype = dtype
    config.save_pretrained(folder)
    return total
