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
cut model): a parameter whose held cut or whose read is not a plain ``Rows`` selection (gates, a grouped conv's input
side read per group, a layer of no known family), or a read of channels a held cut removes. :meth:`HeldCuts.conflict`
says so before deciding. (A grouped conv's input cut is held as the plain cut of the offsets it removes from every
group, so the next group reads its output rows through it.)

A step holds each cut as (channel space, positions): one key per (space, current channel) (``Group.member_keys``), in
one mask per graph; a group's conflict check is one gather over its keys, and holding it one mask update. The
power sums of a group's plain members are one gather over its keys too (:mod:`.held_sums`).

Only criteria that read the weights through :func:`~.members.channel_parts` and nothing else may decide through held
cuts (:func:`reads_channel_parts_only`); a criterion reading layer-wide statistics (activations, Hessians of inputs,
a layer's whole norm) must see the cut model: the caller then cuts what it holds before deciding a group that
touches a layer it holds cuts of.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from contextvars import ContextVar
from typing import Dict, Iterator, Optional

import numpy as np
import torch

from .._index import long_tensor
from ..layers.family import FAMILIES
from ..layers.slicing import Part, Rows, every_power_sum, row_power_sums
from .held_sums import SpaceSums

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


_VERSIONS = itertools.count(1)  # versions of held positions: never reused, so a cache key names one content


class _Positions:
    """The positions held along one axis of ``n`` entries (a channel space, or one dim of a tensor): a mask (a channel
    space's is a view into the held cuts' key mask), with the count, sorted positions and kept ones (a long tensor)
    derived on first use after each change. ``version`` changes with every change (unique across all positions);
    ``space``: the index of the channel space whose positions these are (a tensor dim cut at the same positions
    reads them too), None for a tensor dim's own."""

    __slots__ = ("mask", "version", "space", "_count", "_sorted", "_keep")

    def __init__(self, mask: np.ndarray, space: Optional[int] = None):
        self.mask, self.space = mask, space
        self.changed()

    def changed(self) -> None:
        self.version = next(_VERSIONS)
        self._count = self._sorted = self._keep = None

    def add(self, arr: np.ndarray) -> None:
        self.mask[arr] = True
        self.changed()

    def copy(self) -> "_Positions":
        return _Positions(self.mask.copy())

    @property
    def count(self) -> int:
        if self._count is None:
            self._count = int(np.count_nonzero(self.mask))
        return self._count

    def meets(self, idx) -> bool:
        """Whether any of the positions ``idx`` is held."""
        return bool(np.size(idx)) and bool(self.mask[idx].any())

    @property
    def sorted(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.flatnonzero(self.mask)
        return self._sorted

    @property
    def keep(self) -> torch.Tensor:
        if self._keep is None:
            self._keep = torch.from_numpy(np.flatnonzero(~self.mask))
        return self._keep


class MaskedRows:
    """A ``Rows(dim, idx)`` read (``idx``: positions on the uncut tensor) of a parameter with held cuts ``held``
    (``{dim: positions held along it}``): the result equals ``Rows(dim, idx')`` on the cut tensor, ``idx'`` being
    ``idx`` renumbered after the cut (see :class:`~prune_explorer.layers.slicing.Rows`).

    :meth:`power_sum` of the parameter itself is read from ``sums``, a cache the held cuts own: per (parameter, dim,
    p, which of ``Rows.power_sum``'s two ways applies, held cuts of the other dims), the vector of every channel's
    sum along ``dim``, computed once with the very operations ``Rows.power_sum`` runs on the cut tensor (a channel's
    sum reads only that channel's entries, so it does not depend on which other channels are present). The groups
    of a step that read the same tensor (a DenseNet's later layers are read by every earlier group) share it."""

    __slots__ = ("dim", "idx", "n", "_param", "_held", "_sums", "_size_cut", "_r")

    def __init__(self, rows: Rows, param: torch.Tensor, held: Dict[int, _Positions], sums: dict):
        d = rows.dim
        self.dim, self.idx, self.n, self._param, self._held, self._sums = d, rows.idx, rows.n, param, held, sums
        r = held.get(d)
        self._r = r if r is not None and r.count else None
        if self._r is not None and self._r.meets(rows.idx.numpy()):
            raise HeldConflict("a held cut removes channels this decision reads")
        self._size_cut = param.shape[d] - (self._r.count if self._r is not None else 0)

    def _keeps(self, with_dim: bool):
        return [(e, h.keep) for e, h in sorted(self._held.items()) if h.count and (with_dim or e != self.dim)]

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        g = t.index_select(self.dim, self.idx.to(t.device))
        for e, keep in self._keeps(False):
            g = g.index_select(e, keep.to(t.device))
        return g

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return self._gather(t).movedim(self.dim, 0).reshape(self.n, -1)

    def _is_param(self, t: torch.Tensor) -> bool:
        q = self._param
        return (t.data_ptr() == q.data_ptr() and t.shape == q.shape and t.stride() == q.stride()
                and t.dtype == q.dtype and t._version == q._version)

    def power_sum(self, t: torch.Tensor, p: float) -> torch.Tensor:
        """What ``Rows.power_sum`` gives on the cut tensor (the same operations on the same values)."""
        gathers = 4 * self.n < self._size_cut  # which of Rows.power_sum's two ways the cut tensor takes
        if self.n > 1 and self._is_param(t):
            key = (id(self._param), self._param._version, self.dim, p, gathers,
                   tuple((e, h.version) for e, h in sorted(self._held.items()) if e != self.dim))
            every = self._sums.get(key)
            if every is None:
                every = self._sums[key] = self._every_channel(t, p, gathers)
            return every.index_select(0, self.idx.to(every.device))
        if gathers:  # Rows gathers the rows first: gather them, drop the held entries
            return row_power_sums(self._gather(t), self.dim, p)
        cut = t  # Rows reduces the whole tensor: build the cut tensor (this read covers a quarter of it or more)
        for e, keep in self._keeps(True):
            cut = cut.index_select(e, keep.to(t.device))
        idx = self.idx.numpy()
        idx_cut = self.idx if self._r is None else torch.from_numpy(idx - np.searchsorted(self._r.sorted, idx))
        return Rows(self.dim, idx_cut).power_sum(cut, p)

    def _every_channel(self, t: torch.Tensor, p: float, gathers: bool) -> torch.Tensor:
        return every_channel(t, self.dim, self._keeps(False), p, gathers)


def every_channel(t: torch.Tensor, dim: int, keeps, p: float, gathers: bool) -> torch.Tensor:
    """Every channel's power sum along ``dim`` (uncut positions), the other dims cut (``keeps``: ``[(dim, kept
    positions)]``), as ``Rows.power_sum`` computes it on the cut tensor (``gathers``: rows gathered then reduced one
    by one; else the whole tensor reduced)."""
    g = t
    for e, keep in keeps:
        g = g.index_select(e, keep if t.device.type == "cpu" else keep.to(t.device))
    return row_power_sums(g, dim, p) if gathers else every_power_sum(g, dim, p)


@functools.lru_cache(maxsize=1)
def _members():
    """The :mod:`.members` module (it imports this one: looked up on first use, then kept)."""
    from . import members

    return members


def _grouped_in_cut(dep, part: Part, arr: np.ndarray) -> Optional[np.ndarray]:
    """The positions of weight dim 1 that cutting input channels ``arr`` of a grouped (not depthwise, not transposed)
    convolution removes, when ``part`` is that weight: it stores one group's ``a = in_channels / groups`` inputs,
    and the conv pruner removes offsets ``arr % a`` from it (the graph ties the same offset of every group, so
    ``arr`` is those offsets in every group). None for any other part, or when ``arr`` is not such a set."""
    space, layer = dep.space, dep.space.owner
    family = FAMILIES.family_of(layer)
    groups = getattr(layer, "groups", 1)
    if (family is None or family.name != "conv" or space.side != "in" or space.passthrough or groups <= 1
            or getattr(layer, "transposed", False) or part.param is not getattr(layer, "weight", None)):
        return None
    a = layer.in_channels // groups
    offsets = np.unique(arr % a)
    if arr.size != offsets.size * groups or not np.array_equal(
            np.sort(arr), (np.arange(groups)[:, None] * a + offsets[None, :]).reshape(-1)):
        return None
    return offsets


class HeldCuts:
    """The cuts a batched applier holds (see the module docstring). ``add(group)`` records a group's members (its
    items: channel space and positions on the uncut model); ``clear()`` once they are cut."""

    def __init__(self):
        self._spaces: Dict[int, _Positions] = {}  # space index -> positions held
        self._keys: Optional[np.ndarray] = None  # [graph channel keys]: held (Group.member_keys); spaces' masks view it
        self._params: Dict[int, tuple] = {}  # id(param) -> (param, {dim: positions held along it})
        self._opaque: Dict[int, torch.Tensor] = {}  # id(param) -> param whose held cut is not a plain Rows cut
        self._owners: set = set()  # id of every layer (or loose parameter) some held cut touches
        self._sums: dict = {}  # every channel's power sums of a parameter, shared by the reads (MaskedRows)
        self._sums_np: dict = {}  # the same sums as float32 numpy arrays on the CPU (power_sums)
        self._layouts: dict = {}  # space index -> [(param, dim)] cut at its positions, not sharing its mask
        self._reads: dict = {}  # space index -> [(param, dim, is_bias)] its channels own as plain rows, or None
        self._shared: dict = {}  # space index -> [(id(param), dim)] whose held positions are the space's own
        self.space_sums = SpaceSums(self)  # every member's sums of a group at once (held_sums)
        #: what a caller derives from the model while these cuts are held (cleared with them)
        self.memo: dict = {}

    def __bool__(self) -> bool:
        return bool(self._spaces)

    def clear(self) -> None:
        self._spaces.clear()
        if self._keys is not None:
            self._keys[:] = False
        self._params.clear()
        self._opaque.clear()
        self._owners.clear()
        self._sums.clear()
        self._sums_np.clear()
        self._layouts.clear()
        self._reads.clear()
        self._shared.clear()
        self.space_sums.clear()
        self.memo.clear()

    def touches(self, owner) -> bool:
        """Whether a held cut touches layer ``owner`` (a module, or a loose parameter)."""
        return id(owner) in self._owners

    def holds(self, space) -> bool:
        """Whether a held cut removes channels of ``space``."""
        return space.index in self._spaces

    def add(self, group) -> None:
        """Hold the cuts of ``group`` (a graph group: its items' ``dep.space`` and ``idx_array``, its
        ``member_keys``): one mask update for the whole group, then each member space's bookkeeping."""
        keys = group.member_keys
        n_keys = group.graph.alive_mask.size
        if self._keys is None or self._keys.size != n_keys:
            if self._spaces:
                raise ValueError("HeldCuts holds the cuts of one graph at a time: clear() it first")
            self._keys = np.zeros(n_keys, dtype=bool)
        self._keys[keys] = True
        for it in group.items:
            arr = it.idx_array
            if not arr.size:
                continue
            s = it.dep.space
            pos = self._spaces.get(s.index)
            if pos is None:
                pos = self._spaces[s.index] = _Positions(self._keys[s.offset: s.offset + s.current_size], s.index)
            else:
                pos.changed()
                for pid, d in self._shared.get(s.index, ()):
                    self.space_sums.changed(pid, d, s.index)
            self._owners.add(id(s.owner))
            layout = self._layouts.get(s.index)
            if layout is not None:
                for param, d in layout:
                    self._cut_dim(param, d, arr)
                continue
            owner = s.owner
            if isinstance(owner, torch.nn.Module) and FAMILIES.family_of(owner) is not None:
                self._hold_parts(it.dep, arr, pos)
            else:  # what it cuts is not described: every tensor of it is opaque
                for p in ([owner] if isinstance(owner, torch.Tensor) else list(owner.parameters(recurse=False))):
                    self._opaque[id(p)] = p
                    self.space_sums.changed(id(p), -1)

    def _hold_parts(self, dep, arr: np.ndarray, pos: _Positions) -> None:
        """Hold the cut of positions ``arr`` of ``dep``'s space in the parameters its channels own (their parts).
        A tensor dim cut at exactly the space's positions (a plain ``Rows`` part of ``arr``) reads the space's
        positions themselves while no other cut shares that dim. When every part is the plain rows ``arr`` of a
        parameter, the next cuts of the same space (by other groups) reuse that layout ``[(param, dim)]`` (the dims
        that do not read the space's positions) instead of asking the layer family again (nor does a space whose
        channels a decision read as plain rows: :meth:`_read_layout`, the same parts whatever the channels)."""
        layout = []
        plain = True
        read = self._reads.get(dep.space.index)
        parts = ([(param, d, arr) for param, d, _ in read] if read else
                 [(part.param, part.select.dim, part.select.idx.numpy()) if type(part.select) is Rows else part
                  for part in _members().raw_channel_parts(dep, arr)])
        for part in parts:
            if type(part) is tuple:  # the plain rows idx of param along d
                param, d, idx = part
                same = idx is arr or (idx.size == arr.size and np.array_equal(idx, arr))
                plain = plain and same
                if same and param.shape[d] == pos.mask.size:
                    _, dims = self._params.setdefault(id(param), (param, {}))
                    if dims.setdefault(d, pos) is pos:
                        self._shared.setdefault(dep.space.index, []).append((id(param), d))
                        self.space_sums.changed(id(param), d, dep.space.index)
                        continue
                self._cut_dim(param, d, idx)
                layout.append((param, d))
            else:
                cut = _grouped_in_cut(dep, part, arr)
                if cut is None:
                    self._opaque[id(part.param)] = part.param
                    self.space_sums.changed(id(part.param), -1)
                else:  # the same input offsets leave every group: a plain cut of the weight's dim 1
                    self._cut_dim(part.param, 1, cut)
                plain = False
        if plain:
            self._layouts[dep.space.index] = layout

    def _cut_dim(self, param: torch.Tensor, d: int, idx: np.ndarray) -> None:
        self.space_sums.changed(id(param), d)
        _, dims = self._params.setdefault(id(param), (param, {}))
        pos = dims.get(d)
        if pos is None:
            pos = dims[d] = _Positions(np.zeros(param.shape[d], dtype=bool))
        elif pos.space is not None:  # a space's positions: this dim now has its own, which that space's cuts update
            layout = self._layouts.get(pos.space)
            if layout is not None:
                layout.append((param, d))
            pos = dims[d] = pos.copy()
        pos.add(idx)

    def removed(self, space) -> np.ndarray:
        """The positions (uncut) the held cuts remove from ``space``, sorted (empty when none)."""
        pos = self._spaces.get(space.index)
        return np.zeros(0, dtype=np.int64) if pos is None else pos.sorted

    def current_size(self, space) -> int:
        """``space``'s channel count once the held cuts are applied."""
        pos = self._spaces.get(space.index)
        return space.current_size if pos is None else space.current_size - pos.count

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
        masked = MaskedRows(part.select, part.param, self._params[key][1], self._sums)
        return Part(part.param, masked, part.is_bias)

    def power_sums(self, dep, idx: np.ndarray, p: float, bias: bool):
        """``[len(idx)]`` float32 numpy: per channel ``idx`` (positions on the uncut model) of member ``dep``, the sum
        over the parts its channels own (biases only when ``bias``) of ``sum |w|^p`` as the held cuts leave the
        tensor: bit for bit what ``MagnitudeImportance.member_scores`` gives on the parts :func:`~.members.
        channel_parts` returns (each part's sums read from the per-step cache of every channel's sums, as
        :meth:`MaskedRows.power_sum` reads them; the parts added in order, in float32). ``()`` when the channels own
        no part; None when this read is not plain (one channel, or a part that is not a plain ``Rows`` read of
        ``idx``): the caller reads the parts one by one. Raises :class:`HeldConflict` as :meth:`wrap` would."""
        n = idx.size
        if n < 2:
            return None
        key = dep.space.index
        layout = self._reads.get(key, False)
        if layout is False:
            layout = self._reads[key] = self._read_layout(dep, idx)
        if layout is None:
            return None
        total = None
        for param, d, is_bias in layout:
            if is_bias and not bias:
                continue
            pid = id(param)
            if pid in self._opaque:
                raise HeldConflict("a held cut of this parameter is not a plain row/column cut")
            entry = self._params.get(pid)
            dims = entry[1] if entry is not None else {}
            r = dims.get(d)
            size_cut = param.shape[d]
            if r is not None and r.count:
                if r.mask[idx].any():
                    raise HeldConflict("a held cut removes channels this decision reads")
                size_cut -= r.count
            s = self._every_sums(param, d, p, 4 * n < size_cut)[idx]
            total = s if total is None else total + s
        return () if total is None else total

    def _every_sums(self, param: torch.Tensor, d: int, p: float, gathers: bool) -> np.ndarray:
        """Every channel's power sums of ``param`` along ``d`` (uncut positions; the held cuts of its other dims
        applied; ``gathers``: which of ``Rows.power_sum``'s ways), float32 numpy, from the per-step cache."""
        pid = id(param)
        entry = self._params.get(pid)
        dims = entry[1] if entry is not None else None
        if not dims or (len(dims) == 1 and d in dims):  # no held cut along another dim
            others = ()
            skey = (pid, param._version, d, p, gathers, ())
        else:
            others = sorted((e, h) for e, h in dims.items() if e != d)
            skey = (pid, param._version, d, p, gathers, tuple([(e, h.version) for e, h in others]))
        arr = self._sums_np.get(skey)
        if arr is not None:
            return arr
        every = self._sums.get(skey)
        if every is None:
            keeps = [(e, h.keep) for e, h in others if h.count]
            every = self._sums[skey] = every_channel(param.detach(), d, keeps, p, gathers)
        if every.dtype != torch.float32 or every.device.type != "cpu":
            every = every.to(device="cpu", dtype=torch.float32)
        arr = self._sums_np[skey] = every.numpy()
        return arr

    @staticmethod
    def _read_layout(dep, idx: np.ndarray):
        """``[(param, dim, is_bias)]`` when every part channels ``idx`` (``int64``, non-empty) of ``dep`` own is the
        plain rows ``idx`` of a parameter along ``dim`` (then any channels of that space own the same rows of the
        same tensors); else None."""
        layout = []
        t = torch.from_numpy(idx) if idx.dtype == np.int64 and idx.ndim == 1 else long_tensor(idx)
        for part in _members().parts_at(dep, t):
            sel = part.select
            if type(sel) is not Rows:
                return None
            # the parts select through t itself as a rule: equal without reading it
            if sel.idx is not t and not (sel.n == idx.size and np.array_equal(sel.idx.numpy(), idx)):
                return None
            layout.append((part.param, sel.dim, part.is_bias))
        return layout

    def conflict(self, group) -> Optional[str]:
        """Why ``group`` cannot be decided through the held cuts (None when it can): its root space has held cuts
        (its channel indices and target would move), or it reads channels a held cut removes. (A read that cannot
        see through a held cut raises :class:`HeldConflict` while deciding.)"""
        if not self._spaces:
            return None
        if group.root_space.index in self._spaces:
            return "its root channels have held cuts"
        keys = group.member_keys
        if keys.size and self._keys.size == group.graph.alive_mask.size and not self._keys[keys].any():
            return None
        for it in group.items:
            pos = self._spaces.get(it.dep.space.index)
            if pos is not None and pos.meets(it.idx_array):
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
