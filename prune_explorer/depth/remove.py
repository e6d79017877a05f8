"""Removing depth groups, and undoing it exactly.

``"identity"`` groups are replaced by ``nn.Identity`` in their container. ``"delete"`` groups (a Hugging Face layer
stack) are deleted from their ``ModuleList``, so the state dict's layer numbering matches a fresh model built from
the updated config: the layer count (``num_hidden_layers`` ...) and every per-layer list of the config that has one
entry per layer (``layer_types`` ...) lose the removed layers' entries, and the remaining layers' ``layer_idx``
attributes (the key-value cache's slots) are renumbered. ``save_pretrained`` -> ``from_pretrained`` then gives the
same model.

:func:`remove_blocks` returns a :class:`DepthRecord`; ``record.undo()`` puts every module, config value and
``layer_idx`` back (the very same objects). The width dependency graph of a pruner built before a depth removal no
longer matches the model: remove depth first, then build the pruner (or build a new one).
"""

from __future__ import annotations

from typing import List, Sequence

import torch.nn as nn

from ..errors import PruningError
from .blocks import DepthGroup, hf_layer_list

__all__ = ["remove_blocks", "DepthRecord"]


class DepthRecord:
    """What :func:`remove_blocks` changed; :meth:`undo` restores it exactly."""

    def __init__(self, names: List[str]):
        self.names = names
        self._undo: List = []  # callables, run in reverse order
        self.undone = False

    def undo(self) -> None:
        if self.undone:
            raise PruningError("this depth removal was already undone")
        for fn in reversed(self._undo):
            fn()
        self.undone = True

    def __repr__(self) -> str:
        return f"DepthRecord(removed {self.names}{', undone' if self.undone else ''})"


def _set_child(container: nn.Module, index: int, module: nn.Module) -> None:
    container._modules[list(container._modules)[index]] = module


def remove_blocks(model: nn.Module, groups: Sequence[DepthGroup]) -> DepthRecord:
    """Remove ``groups`` (from :func:`~.blocks.find_blocks` on this model) at once; see the module docstring."""
    groups = list(groups)
    if not groups:
        raise PruningError("remove_blocks: no depth group given")
    rec = DepthRecord([g.name for g in groups])
    for g in groups:
        if g.container[g.index] is not g.module:
            raise PruningError(f"remove_blocks: {g.name} is no longer at its place (the model changed since the "
                               "groups were listed); call find_blocks again")
    deleting = [g for g in groups if g.mode == "delete"]
    if deleting:
        hf = hf_layer_list(model)
        if hf is None or any(g.container is not hf[3] for g in deleting):
            raise PruningError("remove_blocks: a layer to delete is not in the model's configured layer stack")
        cfg, field, _, layers = hf
        if len(deleting) >= len(layers):
            raise PruningError(f"remove_blocks: removing all {len(layers)} layers would leave no layer; keep one")
    try:
        for g in groups:
            if g.mode == "identity":
                _set_child(g.container, g.index, nn.Identity())
                rec._undo.append(lambda g=g: _set_child(g.container, g.index, g.module))
        if deleting:
            _delete_layers(rec, cfg, field, layers, sorted({g.index for g in deleting}))
    except BaseException:
        rec.undo()
        raise
    return rec


def _delete_layers(rec: DepthRecord, cfg, field: str, layers: nn.ModuleList, idxs: List[int]) -> None:
    n = len(layers)
    old_modules = dict(layers._modules)
    rec._undo.append(lambda: _restore_modules(layers, old_modules))
    kept = [layers[i] for i in range(n) if i not in idxs]
    layers._modules.clear()
    for i, m in enumerate(kept):
        layers._modules[str(i)] = m
    # config: the layer count and every per-layer list
    old_cfg = {field: getattr(cfg, field)}
    for k, v in list(vars(cfg).items()):
        if isinstance(v, (list, tuple)) and len(v) == n and k != field:
            old_cfg[k] = v
    rec._undo.append(lambda: [setattr(cfg, k, v) for k, v in old_cfg.items()])
    for k, v in old_cfg.items():
        if k == field:
            setattr(cfg, k, n - len(idxs))
        else:
            setattr(cfg, k, type(v)(x for i, x in enumerate(v) if i not in idxs))
    # the key-value cache slots
    for new_i, layer in enumerate(kept):
        for m in layer.modules():
            old = m.__dict__.get("layer_idx")
            if isinstance(old, int) and old != new_i:
                m.layer_idx = new_i
                rec._undo.append(lambda m=m, old=old: setattr(m, "layer_idx", old))


def _restore_modules(layers: nn.ModuleList, modules: dict) -> None:
    layers._modules.clear()
    layers._modules.update(modules)
