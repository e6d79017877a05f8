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


def lists_copied(attrs: dict) -> dict:
    """A copy of an attribute dict with its lists copied (``list(v)``), made in C; only a dict holding a value of a
    type not seen before is scanned in Python."""
    copied = attrs.copy()
    if _NOT_LISTS.issuperset(map(type, copied.values())):  # (no set built for the usual module)
        return copied
    new_types = set(map(type, copied.values())) - _NOT_LISTS
    if any(issubclass(t, list) for t in new_types):
        return {k: (list(v) if isinstance(v, list) else v) for k, v in copied.items()}
    _NOT_LISTS.update(new_types)
    return copied


def module_state(m: nn.Module) -> Tuple[nn.Module, dict, dict, dict]:
    """One module's entry of a :data:`ModuleSnapshot`: its attribute dict with its lists copied
    (:func:`lists_copied`), its parameter and buffer dicts; the dicts are copied in C."""
    return m, lists_copied(m.__dict__), m._parameters.copy(), m._buffers.copy()


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


_set_dict = object.__setattr__


def _working_copy(attrs: dict) -> dict:
    """A module's attribute dict to run with: a copy with its lists copied (a list changed in place changes the
    copy's) and its parameter and buffer dicts copied (a tensor registered or replaced changes the copy's)."""
    work = lists_copied(attrs)
    work["_parameters"] = attrs["_parameters"].copy()
    work["_buffers"] = attrs["_buffers"].copy()
    return work


def lend_modules(modules: Iterable[nn.Module]) -> ModuleSnapshot:
    """Give every given module and its submodules (each once) a working copy of its attribute dict, as its
    ``__dict__``, and return their own dicts as a :data:`ModuleSnapshot` (``(module, own attribute dict, own
    parameter dict, own buffer dict)``, the very objects, not copies): whatever is then set, added, removed or
    appended to a list on a module goes to the copy, and :func:`return_modules` puts the module's own dict back,
    untouched. The copy holds the same objects as the module's own dict except its lists and its parameter and
    buffer dicts, which are copies: in-place changes of other mutable values (a dict of submodules, a set) reach
    them, as they would a :func:`snapshot_modules` snapshot's. Cheaper than a snapshot and its restore: one copy of
    each dict instead of two, and the restore assigns ``__dict__`` instead of refilling it.

    >>> conv = nn.Conv2d(3, 8, 1)
    >>> own = conv.__dict__
    >>> lent = lend_modules([conv])
    >>> conv.out_channels = 4; conv.__dict__ is own, own["out_channels"]
    (False, 8)
    >>> return_modules(lent); conv.__dict__ is own, conv.out_channels
    (True, 8)
    """
    out = []
    try:
        for m in all_modules(modules):
            attrs = m.__dict__
            work = _working_copy(attrs)
            out.append((m, attrs, attrs["_parameters"], attrs["_buffers"]))
            _set_dict(m, "__dict__", work)
    except BaseException:  # (a module without plain parameter / buffer dicts: none is left lent)
        return_modules(out)
        raise
    return out


def return_modules(lent: ModuleSnapshot) -> None:
    """Put back the own dicts of the modules :func:`lend_modules` lent working copies to (idempotent)."""
    for m, attrs, _params, _buffers in lent:
        _set_dict(m, "__dict__", attrs)


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
