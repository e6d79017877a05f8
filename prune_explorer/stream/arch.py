"""Architecture adapters: which checkpoints stream, how their tensors split into blocks, and which tensor dims each
pruned member of a group cuts.

Decoder-only transformers whose blocks are ``<prefix>.layers.<i>.`` and whose layers are plain ``Linear``,
``Embedding`` and norm-weight parameters stream: the Llama, Mistral and Qwen2 families are tested
(:data:`SUPPORTED`). A checkpoint is split into *units*: one per decoder block (``"block 3"``) and the tensors
outside the blocks (``"outside"``: embeddings, final norm, ``lm_head``), which stay loaded for the groups that span
the whole model.

:data:`CUTS` says which dims of which tensors a pruning function removes entries from (for a ``Linear`` member
pruned on its ``out`` side: ``weight`` dim 0 and ``bias`` dim 0). A pruning record of the graph (``pruner.history``:
member name, function, idxs) thus becomes index selections on the checkpoint's tensors (:mod:`.keep`).
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .errors import StreamError

__all__ = ["SUPPORTED", "CUTS", "unit_of", "unit_order", "build_meta_model", "tensor_cuts", "OUTSIDE"]

#: ``config.model_type`` values that stream (decoder-only, ``layers.<i>`` blocks, Linear / Embedding / norm weights)
SUPPORTED = ("llama", "mistral", "qwen2")
OUTSIDE = "outside"
_BLOCK = re.compile(r"(?:^|\.)layers\.(\d+)\.")

#: pruning function name -> ``[(tensor suffix, dim)]`` it cuts (suffix "" for a loose parameter: the tensor itself,
#: with the dim the record gives)
CUTS: Dict[str, List[Tuple[str, Optional[int]]]] = {
    "prune_linear_out_channels": [("weight", 0), ("bias", 0)],
    "prune_linear_in_channels": [("weight", 1)],
    "prune_embedding_out_channels": [("weight", 1)],
    "prune_parameter_out_channels": [("", None)],
    "prune_parameter_in_channels": [("", None)],
}


def unit_of(name: str) -> str:
    """``"block <i>"`` for a tensor / layer of decoder block ``i``, else ``"outside"``."""
    m = _BLOCK.search(name)
    return f"block {int(m.group(1))}" if m else OUTSIDE


def unit_order(unit: str) -> int:
    return -1 if unit == OUTSIDE else int(unit.split()[1])


def check_supported(config: dict) -> None:
    """Raise :class:`StreamError` unless ``config`` (a parsed ``config.json``) is of a family that streams."""
    mt = config.get("model_type")
    if mt not in SUPPORTED:
        arch = (config.get("architectures") or ["?"])[0]
        raise StreamError(f"streaming supports decoder-only {', '.join(SUPPORTED)} checkpoints; this one is "
                          f"model_type={mt!r} ({arch}). Fix: load it whole and use pe.apply_plan, or add an adapter "
                          "in prune_explorer/stream/arch.py once its blocks are plain Linear / norm layers")
    if config.get("is_encoder_decoder"):
        raise StreamError("encoder-decoder checkpoints do not stream (decoder-only only)")


def build_meta_model(folder: str, dtype: torch.dtype) -> nn.Module:
    """The checkpoint's model built on the ``meta`` device from its ``config.json`` (shapes only, no memory), in
    ``dtype``, with ``use_cache=False`` (for tracing)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    config.use_cache = False
    with torch.device("meta"):
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        except TypeError:  # older transformers
            model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype)
    return model.eval()


def tensor_cuts(member: dict) -> List[Tuple[str, int]]:
    """``[(tensor name, dim)]`` that one member of a pruning record (``{"name", "fn", "side", "idxs"[, "dim"]}``)
    removes ``idxs`` from."""
    fn = member["fn"]
    if fn not in CUTS:
        raise StreamError(f"streaming cannot replay {fn} on {member['name']} (only {sorted(CUTS)}); the plan prunes "
                          "a layer kind the streaming adapters do not know. Fix: apply it in memory with pe.apply_plan")
    out = []
    for suffix, dim in CUTS[fn]:
        if suffix:
            out.append((f"{member['name']}.{suffix}", dim))
        else:
            out.append((member["name"], int(member.get("dim", 0) if dim is None else dim)))
    return out
