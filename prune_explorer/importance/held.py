"""Cuts decided but not applied yet, and how a later decision reads the model through them.

A step decides every group first and cuts once (``DG.prune_groups``). The groups it holds are not cut yet, but the
next group must be decided exactly as it would be after them (group after group). :class:`HeldCuts` makes that
possible without cutting: it records each held cut as *(channel space, channel positions)* on the uncut model, and
what the cut removes from each parameter tensor (per tensor dim, the positions removed along it, read from the layer
families' parts: :mod:`.members`). While it is active (``with held.reading():``):

* :func:`current_size` of a channel space is its size once the held cuts are applied (the guards and member
  constraints read it);
* :func:`~.members.channel_parts` reads a parameter with held cuts through :class:`MaskedRows`: the rows of the
  channels asked for (positions on the uncut model), without the entries the held cuts remove along the other dims.
  The values, their order and the reductions (:meth:`MaskedRows.power_sum`) are exactly those the cut model gives,
  so the importance scores are bit for bit those of pruning group by group.

What it cannot reproduce raises :class:`HeldConflict` (the caller then cuts what it holds and decides again on the
cut model): a parameter whose held cut or whose read is not a plain ``Rows`` selection (gates, grouped convs, a layer
of no known family), or a read of channels a held cut removes. :meth:`HeldCuts.conflict` says so before deciding.

Only criteria that read the weights through :func:`~.members.channel_parts` and nothing else may decide through held
cuts (:func:`reads_channel_parts_only`); a criterion reading layer-wide statistics (activations, Hessians of inputs,
a layer's whole norm) must see the cut model: the caller then cuts what it holds before deciding a group that
touches a layer it holds cuts of.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Dict, Iterator, Optional

import numpy as np
import torch

from ..layers.family import FAMILIES
from ..layers.slicing import Part, Rows

__all__ = ["HeldCuts", "HeldConflict", "MaskedRows", "current_size", "active", "reads_channel_parts_only"]

_ACTIVE: ContextVar[Optional["HeldCuts"]] = ContextVar("prune_explorer_held_cuts", default=None)


class HeldConflict(Exception):
    """A decision cannot be read through the held cuts (see the module docstring): cut them first."""


def active() -> Optional["HeldCuts"]:
    """The held cuts the current decision reads through (None outside ``HeldCuts.reading()``)."""
    return _ACTIVE.get()


def current_size(space) -> int:
    """``space.current_size`` once the active held cuts are applied (``space.current_size`` when none is active)."""
    held = _ACTIVE.get()
    return space.current_size if held is None else held.current_size(space)


def reads_channel_parts_only(importance) -> bool:
    """Whether ``importance`` reads the model only through :func:`~.members.channel_parts` (so a decision can be
    read through held cuts): its exact class declares ``channel_parts_only = True`` in its own body (a subclass that
    overrides the scoring does not inherit it), and a fallback criterion, if any, does too."""
    if not type(importance).__dict__.get("channel_parts_only", False):
        return False
    fallback = getattr(importance, "fallback", None)
    return fallback is None or reads_channel_parts_only(fallback)


def _union(held: Optional[np.ndarray], arr: np.ndarray) -> np.ndarray:
    """``held`` (sorted, or None) with the positions ``arr`` added, sorted and unique."""
    arr = np.sort(arr) if arr.size > 1 and (arr[1:] < arr[:-1]).any() else arr
    return arr if held is None else np.union1d(held, arr)


def _meets(sorted_held: np.ndarray, idx: np.ndarray) -> bool:
    """Whether any of ``idx`` is in ``sorted_held``."""
    if not sorted_held.size or not np.size(idx):
        return False
    hit = np.minimum(np.searchsorted(sorted_held, idx), sorted_held.size - 1)
    return bool((sorted_held[hit] == idx).any())


def _complement(n: int, removed: np.ndarray) -> torch.Tensor:
    mask = np.ones(n, dtype=bool)
    mask[removed] = False
    return torch.from_numpy(np.flatnonzero(mask))


class MaskedRows:
    """A ``Rows(dim, idx)`` read (``idx``: positions on the uncut tensor) of a tensor with held cuts ``removed``
    (``{dim: sorted positions removed along it}``): the result equals ``Rows(dim, idx')`` on the cut tensor, ``idx'``
    being ``idx`` renumbered after the cut (see :class:`~prune_explorer.layers.slicing.Rows`)."""

    __slots__ = ("dim", "idx", "n", "_shape", "_keeps", "_cut_keeps", "_idx_cut", "_size_cut", "_whole")

    def __init__(self, rows: Rows, shape: torch.Size, removed: Dict[int, np.ndarray], keep_of):
        d = rows.dim
        self.dim, self.idx, self.n, self._shape = d, rows.idx, rows.n, tuple(shape)
        idx = rows.idx.numpy()
        r = removed.get(d)
        if r is not None and r.size:
            if _meets(r, idx):
                raise HeldConflict("a held cut removes channels this decision reads")
            self._idx_cut, self._size_cut = torch.from_numpy(idx - np.searchsorted(r, idx)), shape[d] - r.size
        else:
            self._idx_cut, self._size_cut = rows.idx, shape[d]
        self._keeps = [(e, keep_of(e)) for e in sorted(removed) if e != d]  # other dims, in order
        self._cut_keeps = [(e, keep_of(e)) for e in sorted(removed)]
        self._whole = self.n == shape[d] and (r is None or not r.size) and bool(
            self.n == 0 or (idx[0] == 0 and idx[-1] == self.n - 1 and (idx[1:] > idx[:-1]).all()))

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        g = t if self._whole else t.index_select(self.dim, self.idx.to(t.device))
        for e, keep in self._keeps:
            g = g.index_select(e, keep.to(t.device))
        return g

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return self._gather(t).movedim(self.dim, 0).reshape(self.n, -1)

    def power_sum(self, t: torch.Tensor, p: float) -> torch.Tensor:
        """What ``Rows.power_sum`` gives on the cut tensor (the same operations on the same values)."""
        if 4 * self.n < self._size_cut:  # Rows gathers the rows first: gather them, drop the held entries
            g = self._gather(t).float()
            v = g * g if p == 2 else (g.abs() if p == 1 else g.abs().pow(p))
            return v.movedim(self.dim, 0).reshape(self.n, -1).sum(1)
        cut = t  # Rows reduces the whole tensor: build the cut tensor (this read covers a quarter of it or more)
        for e, keep in self._cut_keeps:
            cut = cut.index_select(e, keep.to(t.device))
        return Rows(self.dim, self._idx_cut).power_sum(cut, p)


class HeldCuts:
    """The cuts a batched applier holds (see the module docstring). ``add(items)`` records a group's members (its
    items: channel space and positions on the uncut model); ``clear()`` once they are cut."""

    def __init__(self):
        self._spaces: Dict[int, np.ndarray] = {}  # space index -> sorted positions held
        self._params: Dict[int, tuple] = {}  # id(param) -> (param, {dim: sorted positions held along it})
        self._opaque: Dict[int, torch.Tensor] = {}  # id(param) -> param whose held cut is not a plain Rows cut
        self._owners: set = set()  # id of every layer (or loose parameter) some held cut touches
        self._keeps: dict = {}  # (id(param), dim) -> the positions kept along dim (a long tensor)

    def __bool__(self) -> bool:
        return bool(self._spaces)

    def clear(self) -> None:
        self._spaces.clear()
        self._params.clear()
        self._opaque.clear()
        self._owners.clear()
        self._keeps.clear()

    def touches(self, owner) -> bool:
        """Whether a held cut touches layer ``owner`` (a module, or a loose parameter)."""
        return id(owner) in self._owners

    def add(self, items) -> None:
        """Hold the cuts of a group's ``items`` (``GroupItem``: ``dep.space`` and ``idx_array``)."""
        from .members import raw_channel_parts

        for it in items:
            arr = np.asarray(it.idx_array, dtype=np.int64)
            if not arr.size:
                continue
            s = it.dep.space
            self._spaces[s.index] = _union(self._spaces.get(s.index), arr)
            self._owners.add(id(s.owner))
            owner = s.owner
            known = isinstance(owner, torch.nn.Module) and FAMILIES.family_of(owner) is not None
            if not known:  # what it cuts is not described: every tensor of it is opaque
                for p in ([owner] if isinstance(owner, torch.Tensor) else list(owner.parameters(recurse=False))):
                    self._opaque[id(p)] = p
                continue
            for part in raw_channel_parts(it.dep, arr):
                key = id(part.param)
                if type(part.select) is Rows:
                    param, dims = self._params.setdefault(key, (part.param, {}))
                    d = part.select.dim
                    dims[d] = _union(dims.get(d), part.select.idx.numpy())
                    self._keeps.pop((key, d), None)
                else:
                    self._opaque[key] = part.param

    def removed(self, space) -> np.ndarray:
        """The positions (uncut) the held cuts remove from ``space``, sorted (empty when none)."""
        out = self._spaces.get(space.index)
        return np.zeros(0, dtype=np.int64) if out is None else out

    def current_size(self, space) -> int:
        """``space``'s channel count once the held cuts are applied."""
        r = self._spaces.get(space.index)
        return space.current_size if r is None else space.current_size - int(r.size)

    def _keep(self, key: int, param: torch.Tensor, dim: int) -> torch.Tensor:
        out = self._keeps.get((key, dim))
        if out is None:
            out = self._keeps[(key, dim)] = _complement(param.shape[dim], self._params[key][1][dim])
        return out

    def wrap(self, part: Part) -> Part:
        """``part`` read through the held cuts (unchanged when none touches its parameter); raises
        :class:`HeldConflict` when that cannot be done exactly."""
        key = id(part.param)
        if key in self._opaque:
            raise HeldConflict("a held cut of this parameter is not a plain row/column cut")
        if key not in self._params:
            return part
        if type(part.select) is not Rows:
            raise HeldConflict("this read of a parameter with held cuts is not a plain row/column read")
        masked = MaskedRows(part.select, part.param.shape, self._params[key][1], lambda e: self._keep(key, part.param, e))
        return Part(part.param, masked, part.is_bias)

    def conflict(self, group) -> Optional[str]:
        """Why ``group`` cannot be decided through the held cuts (None when it can): its root space has held cuts
        (its channel indices and target would move), or it reads channels a held cut removes. (A read that cannot
        see through a held cut raises :class:`HeldConflict` while deciding.)"""
        if not self._spaces:
            return None
        if group.root_space.index in self._spaces:
            return "its root channels have held cuts"
        for it in group.items:
            r = self._spaces.get(it.dep.space.index)
            if r is not None and _meets(r, it.idx_array):
                return f"a held cut removes channels of {it.dep.space.label} it reads"
        return None

    @contextlib.contextmanager
    def reading(self) -> Iterator["HeldCuts"]:
        """``with held.reading():`` decisions read the model through these held cuts (see the module docstring)."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)
