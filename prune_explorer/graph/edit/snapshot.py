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


#: one object's own state: ``(module, attribute dict, parameter dict, buffer dict)`` or ``(object, attribute dict)``
OwnState = tuple


def snapshot_own(objects: Iterable[object]) -> List[OwnState]:
    """Snapshot the own state of each object (each once, submodules not included): a module's attribute, parameter
    and buffer dicts, any other object's (a config's) attribute dict. References, not copies, as above."""
    seen, out = set(), []
    for o in objects:
        if id(o) in seen:
            continue
        seen.add(id(o))
        attrs = {k: (list(v) if isinstance(v, list) else v) for k, v in o.__dict__.items()}
        if isinstance(o, nn.Module):
            out.append((o, attrs, dict(o._parameters), dict(o._buffers)))
        else:
            out.append((o, attrs))
    return out


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(v is b[k] or (isinstance(v, list) and v == b[k]) for k, v in a.items())


def changed_since(snapshot: List[OwnState]) -> List[OwnState]:
    """The entries of ``snapshot`` (:func:`snapshot_own`) whose object changed since: a value replaced, added or
    removed (compared by identity; lists by value). Restoring them undoes exactly what changed."""
    out = []
    for entry in snapshot:
        o = entry[0]
        now = (o.__dict__,) if len(entry) == 2 else (
            {k: v for k, v in o.__dict__.items() if k not in ("_parameters", "_buffers")}, o._parameters, o._buffers)
        before = (entry[1],) if len(entry) == 2 else (
            {k: v for k, v in entry[1].items() if k not in ("_parameters", "_buffers")}, entry[2], entry[3])
        if not all(_same(b, n) for b, n in zip(before, now)):
            out.append(entry)
    return out


def restore_own(snapshot: List[OwnState]) -> None:
    """Put every object of ``snapshot`` (:func:`snapshot_own`) back exactly as it was."""
    for entry in snapshot:
        if len(entry) == 4:
            restore_modules([entry])
        else:
            o, attrs = entry
            o.__dict__.clear()
            o.__dict__.update(attrs)
