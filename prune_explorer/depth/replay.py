"""Replaying a depth entry of a stored pruning history (``{"kind": "depth", "root": name, "mode": ...}``) on a
freshly built model, for :func:`prune_explorer.history.apply_history`."""

from __future__ import annotations

import torch.nn as nn

from ..errors import PruningError
from .blocks import DepthGroup, hf_layer_list
from .remove import DepthRecord, remove_blocks

__all__ = ["replay_depth_entry"]


def replay_depth_entry(model: nn.Module, names: dict, entry: dict) -> DepthRecord:
    """Remove the block ``entry["root"]`` (a name of the model as built: ``names``) as it was removed; returns the
    :class:`~.remove.DepthRecord` (``undo()`` puts it back)."""
    name, mode = entry.get("root"), entry.get("mode", "identity")
    block = names.get(name)
    if not isinstance(block, nn.Module) or mode not in ("identity", "delete"):
        raise PruningError(f"history: cannot replay the depth entry {entry!r} on this {type(model).__name__}")
    if mode == "delete":
        hf = hf_layer_list(model)
        container = hf[3] if hf is not None else None
    else:
        parent = names.get(name.rpartition(".")[0]) if "." in name else model
        container = parent
    if container is None:
        raise PruningError(f"history: the block {name!r} has no layer stack to be removed from")
    index = next((k for k, m in enumerate(container.children()) if m is block), None)
    if index is None:
        raise PruningError(f"history: the block {name!r} is not in its container any more (removed twice?)")
    return remove_blocks(model, [DepthGroup(name, block, container, index, mode)])
