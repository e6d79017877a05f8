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

from ..graph.model.union_find import connected_components
from ..importance.base import root_positions
from ..importance.held import current_size
from .member_facts import MemberFacts, SpaceFacts, channel_multiple

__all__ = ["tied_units", "singleton_units", "rank_units", "member_constraints", "channel_multiple"]


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
    return len(units) == root.size and (root.size < 2 or bool((root[1:] > root[:-1]).all()))


def rank_units(group, importance: Optional[torch.Tensor], units) -> Tuple[List[List[int]], torch.Tensor]:
    """``(units in increasing score order, their scores)``; a unit's score is the mean of its channels'
    ``importance`` (one score per channel of ``group.root_idxs``). Without importance: unchanged, zero scores."""
    if importance is None or not units:
        return units, torch.zeros(len(units))
    if singleton_units(group, units):  # units[k] == [root[k]]
        order = torch.argsort(importance.float(), stable=True)
        return list(map(units.__getitem__, order.tolist())), importance.float()[order]
    _, pos_of = root_positions(group)
    pos = pos_of(list(itertools.chain.from_iterable(units)))
    uid = torch.from_numpy(np.repeat(np.arange(len(units)), [len(u) for u in units]))
    sums = torch.zeros(len(units), dtype=torch.float32).index_add_(0, uid, importance.float()[pos])
    scores = sums / torch.bincount(uid, minlength=len(units)).float()
    order = torch.argsort(scores, stable=True).tolist()
    return [units[i] for i in order], scores[order]


def member_constraints(group, unit_order: Optional[List[List[int]]], order: Optional[np.ndarray] = None,
                       members: Optional[MemberFacts] = None):
    """Per constrained member: ``(counts, multiple, size)`` for :func:`~.guards.feasible_prefixes`: ``counts[k]``
    is how many of its channels the first ``k`` units of ``unit_order`` remove, ``multiple`` its channel multiple
    (e.g. attention heads, GroupNorm groups) and ``size`` its current channel count. For :func:`singleton_units`,
    ``order`` (root positions in rank order, an int array) may stand for ``unit_order`` (then not read).
    ``members``: the group's :class:`~.member_facts.MemberFacts` (read from the group when not given).

    A member is constrained when it has a multiple, or loses every channel it has, unless it is one channel per
    root channel (then the root's own guard, keep >= 1, covers it): the members are screened as arrays, and only
    the constrained ones are counted one by one."""
    if members is None:
        members = SpaceFacts(group.graph, {}).members(group)
    multiple, size = members.multiples, members.sizes  # size: as the cuts held for this step leave it
    constrained = np.flatnonzero((multiple > 1) | (members.lost >= size))
    if not constrained.size:
        return []
    out = []
    items = group.items
    root = group.root_array
    root_size = current_size(group.root_space)
    unit_of = None
    for k in constrained.tolist():
        it = items[k]
        mult, n = int(multiple[k]), int(size[k])
        if mult <= 1 and n == root_size and np.array_equal(it.root_array, root):
            continue  # one channel per root channel: the root's own guard (keep >= 1) already covers it
        if unit_of is None:
            unit_of, n_units, pos_of = _unit_ranks(group, unit_order, order)
        per_unit = np.bincount(unit_of[pos_of(it.root_array).numpy()], minlength=n_units)
        out.append((np.concatenate([[0], np.cumsum(per_unit)]), mult, n))
    return out


def _unit_ranks(group, unit_order: Optional[List[List[int]]], order: Optional[np.ndarray]):
    """``(unit_of, n_units, pos_of)``: ``unit_of[p]`` is the rank in ``unit_order`` (or ``order``, see
    :func:`member_constraints`) of the unit holding root position ``p``; ``pos_of`` as :func:`root_positions`."""
    root = group.root_array
    _, pos_of = root_positions(group)
    n_units = len(unit_order) if order is None else int(order.size)
    unit_of = np.zeros(root.size, dtype=np.int64)  # root position -> its unit's rank in unit_order
    if order is not None:
        unit_of[order] = np.arange(n_units)
    elif unit_order:
        flat = np.fromiter(itertools.chain.from_iterable(unit_order), dtype=np.int64)
        if flat.size == n_units:  # one channel per unit (the common case)
            rank = np.arange(n_units)
        else:
            rank = np.repeat(np.arange(n_units), np.fromiter(map(len, unit_order), dtype=np.int64, count=n_units))
        unit_of[pos_of(flat).numpy()] = rank
    return unit_of, n_units, pos_of
