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


#: attribute value types seen that are not lists (their values need no copy)
_NOT_LISTS: set = set()


def module_state(m: nn.Module) -> Tuple[nn.Module, dict, dict, dict]:
    """One module's entry of a :data:`ModuleSnapshot`: its attribute dict with its lists copied, its parameter and
    buffer dicts; the dicts are copied in C, and only a module holding a list is scanned in Python."""
    attrs = m.__dict__.copy()
    if _NOT_LISTS.issuperset(map(type, attrs.values())):  # (no set built for the usual module)
        return m, attrs, m._parameters.copy(), m._buffers.copy()
    new_types = set(map(type, attrs.values())) - _NOT_LISTS
    if new_types:
        if any(issubclass(t, list) for t in new_types):
            attrs = {k: (list(v) if isinstance(v, list) else v) for k, v in attrs.items()}
        else:
            _NOT_LISTS.update(new_types)
    return m, attrs, m._parameters.copy(), m._buffers.copy()


def all_modules(modules: Iterable[nn.Module]) -> List[nn.Module]:
    """Every given module and its submodules, each once, in ``top.modules()`` order: one loop instead of torch's
    chain of generators, one per level (0.26 instead of 0.6 ms on densenet201's 713 modules)."""
    seen, out = set(), []
    for top in modules:
        stack = [top]
        while stack:
            m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            out.append(m)
            if m._modules:
                stack.extend(reversed([s for s in m._modules.values() if s is not None]))
    return out


def snapshot_modules(modules: Iterable[nn.Module]) -> ModuleSnapshot:
    """Snapshot every given module and its submodules (each once)."""
    return [module_state(m) for m in all_modules(modules)]


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
    and buffer dicts, any other object's (a config's) attribute dict. References, not copies, for a change made by
    assigning attributes (lists are not copied: use :func:`snapshot_modules` where lists change in place)."""
    seen, out = set(), []
    for o in objects:
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, nn.Module):
            out.append((o, dict(o.__dict__), dict(o._parameters), dict(o._buffers)))
        else:
            out.append((o, dict(o.__dict__)))
    return out


def _same(a: dict, b: dict) -> bool:
    return len(a) == len(b) and all(k in b and v is b[k] for k, v in a.items())


def changed_since(snapshot: List[OwnState]) -> List[OwnState]:
    """The entries of ``snapshot`` (:func:`snapshot_own`) whose object changed since: an attribute, parameter or
    buffer replaced, added or removed (compared by identity). Restoring them undoes exactly what changed."""
    out = []
    for entry in snapshot:
        o = entry[0]
        if not _same(entry[1], o.__dict__) or (len(entry) == 4 and not (
                _same(entry[2], o._parameters) and _same(entry[3], o._buffers))):
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
