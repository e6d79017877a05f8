"""Pruning units: the root channels a pruner can only remove together, ranked by importance, and what they cost.

A group's own units (``group.units``) tie channels that a layer's arithmetic ties (a grouped convolution loses the
same offset from every group). The pruner adds the ties the user declared: ``out_channel_groups`` /
``in_channel_groups`` (``{module: g}``: that side is ``g`` equal blocks that lose the same offsets) and the heads of
``num_heads`` layers it does not prune by head itself. :func:`tied_units` merges both (connected components, with
:func:`~prune_explorer.graph.model.union_find.connected_components`).

All indices here are root channels: current channel indices of the group's root layer (``group.root_idxs``).
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .._index import concat_ranges
from ..graph.model.group_members import layout_of
from ..graph.model.union_find import connected_components
from ..importance.base import root_positions
from ..importance.held import current_size
from .member_facts import MemberFacts, SpaceFacts, channel_multiple

__all__ = ["tied_units", "singleton_units", "ranked_units", "RankedUnits", "member_constraints", "channel_multiple"]


def _declared_blocks(item, out_channel_groups: Dict[nn.Module, int], in_channel_groups: Dict[nn.Module, int],
                     head_layers: Dict[int, int]) -> Optional[int]:
    """How many equal blocks the user declared for this member's side (None: no declaration)."""
    s, layer = item.dep.space, item.dep.layer
    out_side = s.side == "out" or s.passthrough
    in_side = s.side == "in" or s.passthrough
    if out_side and layer in out_channel_groups:
        return out_channel_groups[layer]
    if in_side and layer in in_channel_groups:
        return in_channel_groups[layer]
    if out_side:
        return head_layers.get(id(layer))
    return None


def tied_units(group, out_channel_groups: Dict[nn.Module, int], in_channel_groups: Dict[nn.Module, int],
               head_layers: Dict[int, int], members: Optional[MemberFacts] = None) -> List[List[int]]:
    """The group's units merged with the same-offset ties of declared blocks (``head_layers``: ``{id(layer):
    heads}``). Returns the units as sorted lists of root channels, themselves sorted; the group's own units when
    nothing is declared for its members. ``members``: the group's :class:`~.member_facts.MemberFacts` (their
    channel counts; read from the group when not given)."""
    units = group.units
    if not (out_channel_groups or in_channel_groups or head_layers):
        return units  # nothing declared: no member has blocks
    ties = []
    for k, it in enumerate(group.items):
        g = _declared_blocks(it, out_channel_groups, in_channel_groups, head_layers)
        if not g or g <= 1:
            continue
        n = int(members.sizes[k]) if members is not None else current_size(it.dep.space)
        if n % g:
            continue
        per = n // g
        offset = it.idx_array % per
        roots = it.root_array
        order = np.argsort(offset, kind="stable")
        bounds = np.flatnonzero(np.diff(offset[order])) + 1
        ties.extend(t for t in np.split(roots[order], bounds) if t.size > 1)
    if not ties:
        return units
    root, pos_of = root_positions(group)
    pairs = [np.asarray(u, dtype=np.int64) for u in units if len(u) > 1] + ties
    positions = [pos_of(p).numpy() for p in pairs]
    labels = connected_components(root.numel(), [p[:-1] for p in positions], [p[1:] for p in positions])
    merged: Dict[int, List[int]] = {}
    for r, lab in zip(group.root_idxs, labels.tolist()):
        merged.setdefault(lab, []).append(r)
    return sorted(merged.values())


def singleton_units(group, units) -> bool:
    """Whether ``units`` hold one root channel each, the group's root channels ascending (as groups list them):
    then ``units[k] == [group.root_array[k]]``, and a ranking is a permutation of root positions."""
    root = group.root_array
    return len(units) == root.size and (root.size < 2 or not np.count_nonzero(root[1:] <= root[:-1]))


class RankedUnits:
    """A group's units (``n_units`` lists of root channels) in increasing score order, as arrays
    (:func:`ranked_units`); ties keep the listed order:

    * ``order``: ``int64 [n_units]``, the listed units' indices in rank order;
    * ``sizes``: ``int64 [n_units]``, the channel count of each unit, in rank order (all one when ``singles``: each
      unit one root channel, unit ``k`` is root position ``k``);
    * ``roots``: ``int64 [sizes.sum()]``, their root channels, unit after unit (each unit's as listed): the first
      ``k`` units remove ``roots[:sizes[:k].sum()]``;
    * ``scores``: a float32 tensor ``[n_units]``, each unit's score (the mean of its channels' importance), in rank
      order;
    * :meth:`ranks`: the rank of the unit holding given root channels.

    What a proposal does not read (``sizes`` of single channels, ``scores``, the ranks' table) is made on first read.
    """

    __slots__ = ("order", "roots", "singles", "_sizes", "_scores", "_group", "_ranks", "_pos_of")

    def __init__(self, group, order: np.ndarray, roots: np.ndarray, sizes: Optional[np.ndarray], scores,
                 pos_of=None):
        self._group, self.order, self.roots, self._sizes, self._scores = group, order, roots, sizes, scores
        self.singles = sizes is None
        self._ranks = None
        self._pos_of = pos_of  # the group's position map (root_positions), when the ranking read it already

    @property
    def sizes(self) -> np.ndarray:
        if self._sizes is None:
            self._sizes = np.ones(self.order.size, dtype=np.int64)
        return self._sizes

    @property
    def scores(self) -> torch.Tensor:
        if callable(self._scores):
            self._scores = self._scores()
        return self._scores

    def first_roots(self, n: int) -> List[int]:
        """The first ``n`` root channels in rank order (those the first units remove), sorted, as a list."""
        chosen = self.roots[:n].copy()
        chosen.sort()  # (what np.sort does, without its Python wrapper)
        return chosen.tolist()

    def ranks(self, root_idxs: np.ndarray) -> np.ndarray:
        """``int64``: per root channel in ``root_idxs``, the rank of the unit holding it (0 for a root channel that
        no unit holds). Raises ValueError for a channel that is not one of the group's root channels (the group's
        position map, :func:`~prune_explorer.importance.base.root_positions`, tells)."""
        if self._ranks is None:  # root position -> rank of its unit
            pos_of = self._pos_of if self._pos_of is not None else root_positions(self._group)[1]
            by_pos = np.zeros(self._group.root_array.size, dtype=np.int64)
            by_pos[pos_of(self.roots).numpy()] = (np.arange(self.order.size) if self.singles else
                                                  np.arange(self.order.size).repeat(self.sizes))
            self._ranks = (by_pos, pos_of)
        by_pos, pos_of = self._ranks
        return by_pos[pos_of(root_idxs).numpy()] if root_idxs.size else root_idxs


def _plain_scores(importance: torch.Tensor) -> Optional[np.ndarray]:
    """``importance`` as a float32 numpy array when it is a plain CPU float32 vector (read in numpy); else None (the
    scores are then computed in torch: the same values)."""
    if (importance.dtype == torch.float32 and importance.is_cpu and importance.dim() == 1
            and not importance.requires_grad):
        return importance.numpy()
    return None


def ranked_units(group, importance: Optional[torch.Tensor], units) -> RankedUnits:
    """``units`` (lists of root channels) ranked by the mean ``importance`` of their channels (one score per channel
    of ``group.root_idxs``), as a :class:`RankedUnits`; without importance: in listed order, zero scores.

    The order is the stable ``argsort`` of the scores, and a unit's score sums its channels' scores one after
    another in float32 then divides by its size (what ``index_add_`` and ``/`` give); plain CPU float32 scores are
    ranked in numpy (``np.add.at`` and a stable ``np.argsort``: the same sums and the same order, NaN last in both,
    with less call overhead on a few hundred scores; a NaN's sign bit may differ), others in torch."""
    root = group.root_array
    n_units = len(units)
    if importance is None or not units:
        order = np.arange(n_units)
        lens = np.fromiter(map(len, units), dtype=np.int64, count=n_units)
        flat = np.fromiter(itertools.chain.from_iterable(units), dtype=np.int64, count=int(lens.sum()))
        return RankedUnits(group, order, flat, lens, lambda: torch.zeros(n_units))
    values = _plain_scores(importance)
    if singleton_units(group, units):  # units[k] == [root[k]]: a ranking is a permutation of root positions
        if values is not None:
            order = values.argsort(kind="stable")
            return RankedUnits(group, order, root[order], None, lambda: torch.from_numpy(values[order]))
        order_t = torch.argsort(importance.float(), stable=True)
        order = order_t.cpu().numpy()
        return RankedUnits(group, order, root[order], None, lambda: importance.float()[order_t])
    _, pos_of = root_positions(group)
    lens = np.fromiter(map(len, units), dtype=np.int64, count=n_units)
    starts = np.zeros(n_units + 1, dtype=np.int64)
    np.add.accumulate(lens, out=starts[1:])
    flat = np.fromiter(itertools.chain.from_iterable(units), dtype=np.int64, count=int(starts[-1]))
    pos = pos_of(flat)
    uid = np.arange(n_units).repeat(lens)
    if values is not None:
        sums = np.zeros(n_units, dtype=np.float32)
        with np.errstate(all="ignore"):  # inf - inf is NaN without a warning, as in torch
            np.add.at(sums, uid, values[pos.numpy()])
            scores = sums / lens.astype(np.float32)
        order = scores.argsort(kind="stable")
        ranked_scores = lambda: torch.from_numpy(scores[order])  # noqa: E731
    else:
        uid_t = torch.from_numpy(uid)
        sums_t = torch.zeros(n_units, dtype=torch.float32).index_add_(0, uid_t, importance.float()[pos])
        scores_t = sums_t / torch.from_numpy(lens).float()
        order_t = torch.argsort(scores_t, stable=True)
        order = order_t.cpu().numpy()
        ranked_scores = lambda: scores_t[order_t]  # noqa: E731
    sizes = lens[order]
    roots = flat[concat_ranges(starts[order], sizes)]
    return RankedUnits(group, order, roots, sizes, ranked_scores, pos_of)


def member_constraints(group, ranking: RankedUnits, members: Optional[MemberFacts] = None):
    """Per constrained member: ``(counts, multiple, size)`` for :func:`~.guards.feasible_prefixes`: ``counts[k]``
    is how many of its channels the first ``k`` units of ``ranking`` (a :class:`RankedUnits` of the group) remove,
    ``multiple`` its channel multiple (e.g. attention heads, GroupNorm groups) and ``size`` its current channel
    count. ``members``: the group's :class:`~.member_facts.MemberFacts` (read from the group when not given).

    A member is constrained when it has a multiple, or loses every channel it has, unless it is one channel per
    root channel in root order (its counts are then the root's own) without a multiple and with the root's channel
    count (then the root's own guard, keep >= 1, covers it). The members are screened as arrays (the group's flat
    member layout), and the other constrained ones counted together."""
    if members is None:
        members = SpaceFacts(group.graph, {}).members(group)
    multiple, size, lost = members.multiples, members.sizes, members.lost  # size: as the held cuts leave it
    several = multiple > 1
    constrained = several | (lost >= size)
    if not np.count_nonzero(constrained):
        return []
    layout = layout_of(group)
    bounds, member_roots = layout.bounds, layout.root
    root = group.root_array
    n_root = root.size
    # plain members: one channel per root channel, in root order
    if n_root and not np.count_nonzero(lost != n_root):  # every member has as many channels as the root
        plain = _all_rows(member_roots.reshape(-1, n_root) == root)
    else:
        plain = np.zeros(lost.size, dtype=bool)
        maybe = (constrained & (lost == n_root)).nonzero()[0]
        if maybe.size:
            plain[maybe] = _all_rows(member_roots[bounds[maybe, None] + np.arange(n_root)] == root)
    constrained &= ~(plain & ~several & (size == current_size(group.root_space)))
    constrained = constrained.nonzero()[0]
    if not constrained.size:
        return []
    sizes = ranking.sizes
    n_units = sizes.size
    root_cum = np.zeros(n_units + 1, dtype=np.int64)
    np.add.accumulate(sizes, out=root_cum[1:], dtype=np.int64)
    if root_cum[-1] != n_root:  # units that do not hold each root channel once: every member counted
        plain[:] = False
    general = constrained[~plain[constrained]]
    if general.size:  # every other constrained member's channels, member after member, counted together
        m = general.size
        counts = lost[general]
        at = concat_ranges(bounds[general], counts)
        per_unit = np.bincount((np.arange(m) * n_units).repeat(counts) + ranking.ranks(member_roots[at]),
                               minlength=m * n_units)
        cum = np.zeros((m, n_units + 1), dtype=np.int64)
        np.add.accumulate(per_unit.reshape(m, n_units), axis=1, out=cum[:, 1:], dtype=np.int64)
        rows = iter(cum)
    return [(root_cum if plain[k] else next(rows), int(multiple[k]), int(size[k])) for k in constrained.tolist()]


def _all_rows(equal: np.ndarray) -> np.ndarray:
    """``equal.all(axis=1)`` of a 2-D boolean array, as the ufunc's own reduction (no Python wrapper per call)."""
    return np.logical_and.reduce(equal, axis=1)


