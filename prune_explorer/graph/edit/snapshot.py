"""Cheap, exact snapshots of modules for rollback and undo.

Pruning never modifies a tensor in place: it assigns new ``nn.Parameter`` objects and new buffers. So a snapshot
only needs each module's attribute dict and its parameter/buffer dicts (references, not copies): restoring them
puts back the very same tensor objects, and the model is bit-for-bit what it was.

Example::

    >>> import torch.nn as nn
    >>> conv = nn.Conv2d(3, 8, 1)
    >>> snap = snapshot_modules([conv])
    >>> conv.out_channels = 4
    >>> restore_modules(snap); conv.out_channels
    8
"""

from __future__ import annotations

from typing import Iterable, List, Tuple

import torch.nn as nn

ModuleSnapshot = List[Tuple[nn.Module, dict, dict, dict]]


def snapshot_modules(modules: Iterable[nn.Module]) -> ModuleSnapshot:
    """Snapshot every given module and its submodules (each once)."""
    seen, out = set(), []
    for top in modules:
        for m in top.modules():
            if id(m) in seen:
                continue
            seen.add(id(m))
            attrs = {k: (list(v) if isinstance(v, list) else v) for k, v in m.__dict__.items()}
            out.append((m, attrs, dict(m._parameters), dict(m._buffers)))
    return out


def restore_modules(snapshot: ModuleSnapshot) -> None:
    """Put every snapshotted module back exactly as it was."""
    for m, attrs, params, buffers in snapshot:
        m.__dict__.clear()
        m.__dict__.update(attrs)
        m.__dict__["_parameters"] = dict(params)
        m.__dict__["_buffers"] = dict(buffers)
