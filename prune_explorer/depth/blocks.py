"""Depth groups: whole residual blocks whose removal leaves a valid model, found in a model's structure.

A :class:`DepthGroup` is one block in its container: an element of a ``ModuleList`` that a Hugging Face model runs
``config.num_hidden_layers`` of (decoder / encoder layers: removed by deleting it from the list and updating the
config), or an element of a ``Sequential`` / ``ModuleList`` that maps its input to an output of the same shape and
adds it back (torchvision's ``BasicBlock`` / ``Bottleneck`` without a downsample, ViT's ``EncoderBlock``, timm's
``Block``, any class named ``*Block`` / ``*Layer`` with no shape change: replaced by ``nn.Identity``).
:func:`find_blocks` lists them; ``blocks=`` names them yourself.

    >>> import torch, torchvision
    >>> m = torchvision.models.resnet18()
    >>> [g.name for g in find_blocks(m, torch.randn(1, 3, 32, 32))][:3]
    ['layer1.0', 'layer1.1', 'layer2.1']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from ..inputs import call_model, kept_state, tensors_in

__all__ = ["DepthGroup", "find_blocks", "DEPTH_KIND", "hf_layer_list"]

#: ``group.kind`` of a depth group (width groups: None or an attention kind)
DEPTH_KIND = "depth"
_LAYER_COUNT_FIELDS = ("num_hidden_layers", "n_layer", "num_layers")
_BLOCK_SUFFIXES = ("Block", "Layer", "Bottleneck")


@dataclass(eq=False)
class DepthGroup:
    """One removable block: ``name`` (qualified), the ``module``, its ``container`` and ``index`` there, and
    ``mode``: ``"delete"`` (a Hugging Face layer list: the element is deleted, the config follows) or
    ``"identity"`` (replaced by ``nn.Identity``)."""

    name: str
    module: nn.Module
    container: nn.Module
    index: int
    mode: str
    kind: str = DEPTH_KIND

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def __repr__(self) -> str:
        return f"DepthGroup({self.name}: {type(self.module).__name__}, {self.num_params:,} parameters, {self.mode})"


def hf_layer_list(model: nn.Module):
    """``(config, field, qualified name, ModuleList)`` of a Hugging Face model's main layer stack, or None."""
    names = dict(model.named_modules())
    for qname, m in names.items():
        cfg = getattr(m, "config", None)
        if cfg is None:
            continue
        for f in _LAYER_COUNT_FIELDS:
            n = getattr(cfg, f, None)
            if not isinstance(n, int):
                continue
            for cname, child in m.named_modules():
                if isinstance(child, nn.ModuleList) and len(child) == n and n > 0 and cname.split(".")[-1] in (
                        "layers", "layer", "h", "blocks", "block"):
                    full = f"{qname}.{cname}" if qname else cname
                    return cfg, f, full, child
    return None


def _same_shape_children(model: nn.Module, example_inputs, candidates: List[tuple]) -> List[tuple]:
    """The candidates whose forward maps the first input tensor to an output tensor of the same shape."""
    seen = {}
    hooks = []

    def hook(mod, args, out, key=None):
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        y = out if isinstance(out, torch.Tensor) else (tensors_in(out)[0] if tensors_in(out) else None)
        seen[key] = x is not None and y is not None and x.shape == y.shape

    for k, (name, mod, cont, idx) in enumerate(candidates):
        hooks.append(mod.register_forward_hook(lambda m, a, o, k=k: hook(m, a, o, k)))
    try:
        with kept_state(model, eval_mode=True), torch.no_grad():
            call_model(model, example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return [c for k, c in enumerate(candidates) if seen.get(k)]


def find_blocks(model: nn.Module, example_inputs=None, blocks: Optional[Sequence[nn.Module]] = None) -> List[DepthGroup]:
    """Every depth group of ``model`` (module docstring). ``example_inputs``: needed to check shapes (not for Hugging
    Face layer stacks). ``blocks``: these modules only (each must sit in a ``Sequential`` or ``ModuleList``)."""
    names = {id(m): n for n, m in model.named_modules()}
    hf = hf_layer_list(model)
    out: List[DepthGroup] = []
    if hf is not None and blocks is None:
        _, _, qname, layers = hf
        return [DepthGroup(f"{qname}.{i}", layer, layers, i, "delete") for i, layer in enumerate(layers)]
    wanted = {id(b) for b in blocks} if blocks is not None else None
    candidates = []
    for cname, cont in model.named_modules():
        if not isinstance(cont, (nn.Sequential, nn.ModuleList)):
            continue
        for i, child in enumerate(cont):
            if wanted is not None:
                if id(child) in wanted:
                    candidates.append((names[id(child)], child, cont, i))
                continue
            cls = type(child).__name__
            if not cls.endswith(_BLOCK_SUFFIXES) or getattr(child, "downsample", None) is not None:
                continue
            if not any(True for _ in child.parameters()):
                continue
            candidates.append((names[id(child)], child, cont, i))
    if wanted is not None and len(candidates) != len(wanted):
        raise ValueError("find_blocks: every block in blocks= must be an element of an nn.Sequential or nn.ModuleList "
                         "of the model")
    if candidates:
        if example_inputs is None:
            raise ValueError("find_blocks needs example_inputs to check that each block keeps its input's shape")
        candidates = _same_shape_children(model, example_inputs, candidates)
    for name, child, cont, i in candidates:
        out.append(DepthGroup(name, child, cont, i, "identity"))
    return out
