"""The importance interface and the machinery shared by the group-level criteria.

An importance criterion is a callable ``imp(group) -> torch.Tensor`` returning one score per root channel the
group covers, in ``group.root_idxs`` order (float32, on the CPU; higher = more important), or ``None`` when it
has no opinion about this group (e.g. :class:`~prune_explorer.importance.BNScaleImportance` on a group without a
normalisation layer): the pruners then skip the group and record why.

:class:`GroupImportance` scores *every* member of a group (see :mod:`.members` for which weights each channel
owns), scatters each member's per-channel scores into root positions with ``group[k].root_idxs`` (several member
channels coupled with one root channel, as in a Linear layer reading a flattened conv map, add up), reduces over
members (``group_reduction``) and normalises the result (``normalizer``), as Torch-Pruning's criteria do.
"""

from __future__ import annotations

import itertools
import operator
from typing import Callable, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .._index import long_array
from ..graph.model.group_members import layout_of
from .held import active
from .held_sums import OWNS_NOTHING
from .members import Part, channel_parts

__all__ = ["Importance", "GroupImportance", "normalize", "REDUCTIONS", "NORMALIZERS"]

REDUCTIONS = ("mean", "sum", "max", "prod", "first", "gate", None)
NORMALIZERS = ("mean", "max", "sum", "standardization", "standarization", "gaussian", "lamp", None)


class Importance:
    """Base class of importance criteria: ``imp(group)`` -> one score per channel of ``group.root_idxs`` (or None)."""

    def __call__(self, group) -> Optional[torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(group)")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _lamp(x: torch.Tensor) -> torch.Tensor:
    """LAMP score: each value divided by the sum of the values at least as large (itself included)."""
    sorted_x, order = torch.sort(x, descending=True)
    out = torch.empty_like(x)
    denom = torch.cumsum(sorted_x, 0)
    out[order] = sorted_x / torch.where(denom > 0, denom, torch.ones_like(denom))
    return out


def normalize(x: torch.Tensor, normalizer: Union[str, Callable, None]) -> torch.Tensor:
    """Normalise a group's scores so groups can be ranked together (global pruning).

    ``"mean"``: x / mean(x); ``"max"``: x / max(x); ``"sum"``: x / sum(x); ``"standardization"`` (Torch-Pruning's
    spelling ``"standarization"`` too): min-max scaling to [0, 1]; ``"gaussian"``: (x - mean) / std; ``"lamp"``: LAMP
    scores; a callable: ``normalizer(x)``; None: unchanged. A zero denominator leaves ``x`` unchanged.
    """
    if normalizer is None:
        return x
    if callable(normalizer):
        return normalizer(x)
    if x.numel() == 0:
        return x
    if normalizer == "mean":
        d = x.mean()
        return x / d if d.item() != 0 else x
    if normalizer == "max":
        d = x.max()
        return x / d if d.item() != 0 else x
    if normalizer == "sum":
        d = x.sum()
        return x / d if d.item() != 0 else x
    if normalizer in ("standardization", "standarization"):
        return (x - x.min()) / (x.max() - x.min() + 1e-8)
    if normalizer == "gaussian":
        std = x.std() if x.numel() > 1 else torch.zeros((), dtype=x.dtype)
        return (x - x.mean()) / (std + 1e-8)
    if normalizer == "lamp":
        return _lamp(x)
    raise ValueError(f"unknown normalizer {normalizer!r}; use one of {NORMALIZERS} or a callable")


def _check_choice(name: str, value, choices) -> None:
    if value in choices or (name == "normalizer" and callable(value)):
        return
    raise ValueError(f"{name}={value!r} is not supported; use one of {choices}" + (" or a callable" if name == "normalizer" else ""))


def root_positions(group) -> Tuple[torch.Tensor, Callable[[Sequence[int]], torch.Tensor]]:
    """``(root, pos)``: the group's root channels as a tensor, and a function mapping root channel indices (as in
    ``group[k].root_idxs``) to positions in ``group.root_idxs``."""
    root_np = _root_array(group)
    return torch.from_numpy(root_np), _position_map(group, root_np)


def _root_array(group) -> np.ndarray:
    """``group.root_idxs`` as an ``int64`` array (a graph group keeps it as ``root_array``)."""
    arr = getattr(group, "root_array", None)  # (one read of the property: hasattr would read it too)
    return arr if arr is not None else long_array(group.root_idxs)


def _position_map(group, root_np: np.ndarray) -> Callable[[Sequence[int]], torch.Tensor]:
    """:func:`root_positions`' ``pos`` for root channels ``root_np`` (its table made on the first call)."""
    lut = None

    def pos(root_idxs: Sequence[int]) -> torch.Tensor:
        nonlocal lut
        if lut is None:
            size = int(root_np.max()) + 1 if root_np.size else 0
            lut = np.full(size, -1, dtype=np.int64)
            lut[root_np] = np.arange(root_np.size)
        r = long_array(root_idxs)
        try:
            out = lut[r] if r.size and r.min() >= 0 else None  # too large: IndexError
        except IndexError:
            out = None
        if r.size and (out is None or out.min() < 0):
            raise ValueError(f"group member maps to root channels outside group.root_idxs ({group.root_name})")
        return torch.from_numpy(out if r.size else r)

    return pos


def _member_positions(group, items, n: int, root_np: np.ndarray):
    """``(positions, bounds, in_order, sizes)`` for every member of ``group`` at once: the root position (in
    ``group.root_idxs``, given as ``root_np``) of each member channel's root channel, item ``k``'s at
    ``positions[bounds[k]:bounds[k + 1]]``; ``in_order[k]``: item ``k`` maps one channel to each root position, in
    order; ``True``/``False`` entries, or None for an item that maps a channel outside the group's root channels
    (reading its positions is an error); ``sizes[k]``: item ``k``'s channel count."""
    lay = layout_of(group, items)  # the group's flat arrays (Group.member_layout): no pass over the items
    bounds = lay.bounds
    sizes = bounds[1:] - bounds[:-1]  # (np.diff's values without its wrapper)
    if not bounds[-1]:
        return np.zeros(0, dtype=np.int64), bounds.tolist(), [False] * len(items), sizes
    roots = lay.root
    lo, hi, m = int(roots.min()), int(roots.max()), root_np.size
    if 0 <= lo and hi < m and root_np[0] == 0 and root_np[-1] == m - 1 and (
            m < 3 or bool((root_np[1:] > root_np[:-1]).all())):
        pos = roots  # the root channels are 0, 1, ..., m - 1 (a whole layer, the usual group): their own positions
    else:
        lut = np.full(max(int(root_np.max()) + 1 if m else 0, hi + 1), -1, dtype=np.int64)
        lut[root_np] = np.arange(m)
        pos = lut[roots] if lo >= 0 else np.where(roots >= 0, lut[np.maximum(roots, 0)], -1)
    step = np.arange(pos.size) - bounds[:-1].repeat(sizes) == pos
    if sizes.min() > 0:  # (reduceat reads one entry at an empty item's bound)
        in_order = (np.logical_and.reduceat(step, bounds[:-1]) & (sizes == n)).tolist()
    else:
        nonempty = sizes > 0
        in_order = np.zeros(sizes.size, dtype=bool)
        in_order[nonempty] = np.logical_and.reduceat(step, bounds[:-1][nonempty]) & (sizes[nonempty] == n)
        in_order = in_order.tolist()
    if pos is not roots and pos.min() < 0:  # (the roots as their own positions are >= 0)
        valid = pos >= 0
        nonempty = sizes > 0
        ok = np.ones(sizes.size, dtype=bool)
        ok[nonempty] = np.logical_and.reduceat(valid, bounds[:-1][nonempty])
        in_order = [o if v else None for o, v in zip(in_order, ok.tolist())]
    return pos, bounds.tolist(), in_order, sizes


def _positions_of(group, all_pos: np.ndarray, bounds, in_order, k: int) -> np.ndarray:
    """Item ``k``'s root positions from :func:`_member_positions` (an error when one is not the group's)."""
    if in_order[k] is None:
        raise ValueError(f"group member maps to root channels outside group.root_idxs ({group.root_name})")
    return all_pos[bounds[k]:bounds[k + 1]]


_first = operator.itemgetter(0)

_COVERED: dict = {}


def _all_covered(n: int) -> np.ndarray:
    """A read-only ``[n]`` mask of ``True``: the ``covered`` of a member with one score per root position (shared
    by every such member, so a reduction can tell them apart without reading them)."""
    ones = _COVERED.get(n)
    if ones is None:
        ones = _COVERED[n] = np.ones(n, dtype=bool)
        ones.flags.writeable = False
    return ones


class _UnitSpreader:
    """Even out a member's scores inside units whose channels it does not map one by one.

    The graph ties channels into units (grouped convs) and maps every member channel of a unit to *one* root channel
    of it, so a member's scores can pile up on the first channel of each unit. Pruning removes whole units, so what
    matters is each unit's total: for such members the unit total is shared evenly by the unit's channels (the root
    layer's own scores are kept per channel). Works on numpy vectors of length ``n`` (root positions)."""

    def __init__(self, group, pos_of, n: int):
        self._group, self._pos_of, self._n = group, pos_of, n
        self.active = None  # the units are read on the first call (most groups never spread a member)
        # the last call's positions, and what they gave: which positions are evened out (None: none) and the mask
        # (the members of a group mostly map their channels alike: a regnet_y_400mf step, 66 of 96 calls)
        self._last = None

    def _read_units(self) -> None:
        n = self._n
        all_units = self._group.units if n else []
        units = [u for u in all_units if len(u) > 1] if len(all_units) != n else []  # n units of n channels: singles
        self.active = bool(units)
        if not self.active:
            return
        lengths = np.fromiter(map(len, units), dtype=np.int64, count=len(units))
        # every unit's channels at once (units are disjoint): their positions, each set to its unit's id (n + j;
        # singleton units keep their own position as id)
        chans = np.fromiter(itertools.chain.from_iterable(units), dtype=np.int64, count=int(lengths.sum()))
        raw = np.arange(n)
        raw[self._pos_of(chans).numpy()] = np.arange(n, n + len(units)).repeat(lengths)
        used = np.zeros(n + len(units), dtype=bool)  # the ids in use, renumbered 0.. in order (np.unique's ids)
        used[raw] = True
        dense = np.add.accumulate(used, dtype=np.int64) - 1  # (np.cumsum's values without its wrapper)
        self.uid = dense[raw]
        self.n_units = int(dense[-1]) + 1
        self.size = np.bincount(self.uid, minlength=self.n_units)
        self.size_at = self.size[self.uid]  # per position, its unit's channel count
        self.order = self.uid.argsort(kind="stable")  # positions unit by unit (ids 0..n_units-1, none empty)
        self.starts = np.zeros(self.n_units, dtype=np.int64)
        np.add.accumulate(self.size[:-1], out=self.starts[1:])

    def __call__(self, vec: np.ndarray, mask: np.ndarray, pos: np.ndarray):
        """``(vec, mask)`` evened out: a member's scores ``vec`` at the positions ``pos`` its channels map to, and
        ``mask`` the positions ``pos`` covers (made from ``pos``; the returned mask may be shared, read-only)."""
        if self.active is None:
            self._read_units()
        if not self.active:
            return vec, mask
        last = self._last
        if last is not None and last[0].size == pos.size and np.logical_and.reduce(last[0] == pos):
            _, uneven, spread_mask = last  # (``mask`` is made from ``pos``: the same as that call's)
        else:
            hits = np.bincount(pos, minlength=vec.size)[self.order]  # per position, unit by unit
            lo = np.minimum.reduceat(hits, self.starts)
            hi = np.maximum.reduceat(hits, self.starts)
            uneven = (lo != hi)[self.uid]
            if np.logical_or.reduce(uneven):
                spread_mask = mask | uneven
                spread_mask.flags.writeable = False  # (shared by the members that map their channels alike)
            else:
                uneven = spread_mask = None
            self._last = (pos.copy(), uneven, spread_mask)
        if uneven is None:
            return vec, mask
        total = np.bincount(self.uid, weights=vec, minlength=self.n_units)
        even = (total[self.uid] / self.size_at).astype(np.float32)
        return np.where(uneven, even, vec), spread_mask


def _add_rows(vectors) -> np.ndarray:
    """``np.sum(vectors, axis=0, dtype=np.float32)`` (the rows added one after another into a float32 total)
    without numpy's wrapper."""
    return np.add.reduce(np.array(vectors), axis=0, dtype=np.float32)


class GroupImportance(Importance):
    """Scores every member of a group, scatters the scores into root positions, reduces and normalises.

    Subclasses implement :meth:`member_scores` (per-channel scores of one member, from its :class:`Part`s).

    Args:
        group_reduction: how member scores combine per root channel: ``"mean"`` (over the members that own the
            channel), ``"sum"``, ``"max"``, ``"prod"``, ``"first"`` (the root layer only), ``"gate"`` (the last
            scored member only: a gating layer that closes the group, as in Torch-Pruning) or ``None`` (no reduction:
            a ``[n_members, n_channels]`` tensor, for analysis; the pruners need a reduction).
        normalizer: see :func:`normalize`.
        bias: include biases (and norm-layer shifts) in the score.
        target_types: only members whose layer is an instance of one of these types count (None: every member).
    """

    def __init__(self, group_reduction: Optional[str] = "mean", normalizer="mean", bias: bool = False,
                 target_types: Optional[Iterable[type]] = None):
        _check_choice("group_reduction", group_reduction, REDUCTIONS)
        _check_choice("normalizer", normalizer, NORMALIZERS)
        self.group_reduction = group_reduction
        self.normalizer = normalizer
        self.bias = bias
        self.target_types = tuple(target_types) if target_types else None

    # ---- to implement ------------------------------------------------------------------------------------------
    def member_scores(self, item, parts: Sequence[Part]) -> Optional[torch.Tensor]:
        """Scores ``[len(item.idxs)]`` of one member's channels (before scattering), or None to leave it out."""
        raise NotImplementedError

    def member_position_scores(self, item, parts: Sequence[Part], pos: torch.Tensor):
        """``(positions, scores)`` of one member; by default :meth:`member_scores` at ``pos`` (repeats add up)."""
        s = self.member_scores(item, parts)
        return (pos, s) if s is not None else None

    def power_p(self) -> Optional[float]:
        """``p`` when a member's scores are exactly the sum over its parts of each channel's ``sum |w|^p`` (as
        ``MagnitudeImportance.member_scores`` computes them): reads through held cuts then take the per-step cache
        of every channel's sums for a whole member at once (:meth:`~.held.HeldCuts.power_sums`; every plain
        member of a group in one gather: :mod:`.held_sums`). None otherwise."""
        return None

    # ---- the shared pipeline ------------------------------------------------------------------------------------
    def accepts(self, dep) -> bool:
        return self.target_types is None or isinstance(dep.layer, self.target_types)

    def parts_of(self, item) -> list:
        return [p for p in channel_parts(item.dep, item.idx_array) if self.bias or not p.is_bias]

    def __call__(self, group) -> Optional[torch.Tensor]:
        n, vectors = self.member_vectors(group)
        return self.combine(vectors, n)

    def member_vectors(self, group, members: Optional[Callable[[int, object], bool]] = None):
        """``(n, [(k, scores, covered), ...])``: each scored member's per-root-channel scores (numpy float32
        ``[n]``, ``n = len(group.root_idxs)``) and which root positions it covers, for the members ``k`` of
        ``group.items`` that ``members(k, item)`` accepts (every member by default), in member order.

        :meth:`combine` on the vectors of every member is ``self(group)``: a caller that can only hold some
        members' weights at a time (a checkpoint streamed block by block) gathers the vectors of each part and
        combines them once, with the same result."""
        root_np = _root_array(group)
        pos_of = _position_map(group, root_np)
        n = root_np.size
        spread = _UnitSpreader(group, pos_of, n)
        vectors = []
        held = active()
        cls = type(self)
        p = self.power_p() if held is not None and cls.parts_of is GroupImportance.parts_of and (
            cls.member_position_scores is GroupImportance.member_position_scores) else None
        items = group.items
        all_pos, bounds, in_order, sizes = _member_positions(group, items, n, root_np)
        if members is None and self.target_types is None and type(self).accepts is GroupImportance.accepts:
            wanted = (sizes > 0).tolist()  # every member with channels
        else:
            accepts = self.accepts
            wanted = [(members is None or members(k, item)) and size > 0 and accepts(item.dep)
                      for k, (item, size) in enumerate(zip(items, sizes.tolist()))]
        # the plain members' sums at once: one gather over the group's member keys (held_sums)
        sums, how = (held.space_sums.read(group, items, wanted, sizes, p, self.bias) if p is not None
                     else (None, None))
        ones = _all_covered(n)
        for k, item in enumerate(items):
            if not wanted[k]:
                continue
            # the root layer's own channels are their own root channels (the graph maps every channel of a unit to
            # the unit's first root channel, see _UnitSpreader)
            own = k == 0 and item.dep.space is group.root_space
            h = how[k] if how is not None else None
            if h is True:
                s = sums[bounds[k]:bounds[k + 1]]
                if in_order[k] is True or (own and s.size == n):  # one score per root position, in order
                    vectors.append((k, s, ones))
                    continue
            elif h is OWNS_NOTHING:
                continue
            else:
                s = None if p is None else held.power_sums(item.dep, item.idx_array, p, self.bias)
            idx = item.idx_array
            ordered = False
            if s is not None:  # the whole member at once (the same values as its parts one by one)
                if not len(s):
                    continue
                if own:
                    pos = pos_of(idx).numpy()
                else:
                    pos, ordered = _positions_of(group, all_pos, bounds, in_order, k), in_order[k]
            else:
                parts = self.parts_of(item)
                if not parts:
                    continue
                given = pos_of(idx) if own else torch.from_numpy(_positions_of(group, all_pos, bounds, in_order, k))
                res = self.member_position_scores(item, parts, given)
                if res is None:
                    continue
                pos, s = res
                pos = pos.numpy() if isinstance(pos, torch.Tensor) else np.asarray(pos, dtype=np.int64)
                s = s.detach()
                if s.dtype != torch.float32 or s.device.type != "cpu":
                    s = s.to(device="cpu", dtype=torch.float32)
                s = s.reshape(-1).numpy()
            if own and pos.size == n or ordered or (
                    pos.size == n and n and pos[0] == 0 and pos[-1] == n - 1 and (pos[1:] > pos[:-1]).all()):
                vec, mask = s, ones  # one score per root position, in order
            else:
                vec = np.bincount(pos, weights=s, minlength=n).astype(np.float32)
                mask = np.zeros(n, dtype=bool)
                mask[pos] = True
            if not own:
                vec, mask = spread(vec, mask, pos)
            vectors.append((k, vec, mask))
        return n, vectors

    def combine(self, vectors, n: int) -> Optional[torch.Tensor]:
        """The group's scores from :meth:`member_vectors`' ``(k, scores, covered)`` (taken in ``k`` order):
        reduced over members and normalised; None when no member was scored."""
        if not vectors:
            return None
        ordered = [(v, m) for _, v, m in sorted(vectors, key=_first)]
        total = np.ascontiguousarray(self.reduce(ordered, n), dtype=np.float32)
        out = torch.from_numpy(total)
        if self.group_reduction is None:
            return out
        if self.normalizer == "mean" and total.ndim == 1 and total.size:
            # normalize(out, "mean") without two of its tensor ops: x.mean() of a float32 CPU tensor is its sum
            # divided by the count in float32, and x / d divides in float32
            d = np.float32(out.sum().item()) / np.float32(total.size)
            return torch.from_numpy(total / d) if d != 0 else out
        return normalize(out, self.normalizer)

    def reduce(self, vectors, n: int) -> np.ndarray:
        """Combine the members' ``(scores, covered)`` numpy vectors per root channel (see ``group_reduction``)."""
        r = self.group_reduction
        if r is None:
            return np.stack([v for v, _ in vectors])
        if r == "first":
            return vectors[0][0]
        if r == "gate":
            return vectors[-1][0]
        if r == "sum":
            return _add_rows([v for v, _ in vectors])
        if r == "mean":
            total = _add_rows([v for v, _ in vectors])
            ones = _all_covered(n)
            if all(m is ones for _, m in vectors):  # every member covers every root position
                # (float32 / int64 count is a float64 division: the same with the count as a float64)
                return np.true_divide(total, np.float64(len(vectors)), dtype=np.float64)
            count = np.sum([m for _, m in vectors], axis=0)
            return total / np.maximum(count, 1)
        vals = np.stack([v for v, _ in vectors])
        masks = np.stack([m for _, m in vectors])
        if r == "max":
            out = np.where(masks, vals, -np.inf).max(0)
            return np.where(masks.any(0), out, 0.0)
        if r == "prod":
            return np.where(masks, vals, 1.0).prod(0)
        raise ValueError(r)
