"""A group's members, computed from its classes: which channels of which layer sides it removes.

A :class:`~.group.Group` stores only its root space and its classes. Its items are computed on first use (and again
after any prune or undo): every alive channel of its classes, grouped by channel space (root first, then trace
order), each with the root channel it is coupled with. Its units are the root channels that share a class (a
grouped convolution ties the same offset of every group: they can only leave together). All of it is vectorised:
the cost is linear in the number of member channels, plus one small object per member (its item). The members are
also kept as flat arrays (:class:`MemberLayout`, ``Group.member_layout``): a selection of the group
(:func:`restricted_items`), its member keys and a batched cut read those instead of looping over the items.

:func:`group_roots` is the one walk that says which groups a graph has (``DependencyGraph.get_all_groups``
materialises them; ``measure.sweep.GroupLayout`` counts their channels on the model as built).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch.nn as nn

from ..._index import unique_ints
from ...errors import PruningError
from .channel_space import SIDE_OUT, ChannelSpace
from .group import Dependency, Group, GroupItem

__all__ = ["in_sorted", "root_units", "GroupRoot", "group_roots", "closure", "group_items", "restricted_items", "subgroup",
           "dependency", "member_labels", "MemberLayout", "layout_of"]


def in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted, duplicate-free ``sorted_set`` (a binary search: no hashing).

    >>> in_sorted(np.array([3, 4, 9]), np.array([1, 3, 9])).tolist()
    [True, False, True]
    """
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.searchsorted(sorted_set, values)
    return sorted_set[np.minimum(pos, sorted_set.size - 1)] == values


def root_units(root_cls: np.ndarray, root_cur: np.ndarray) -> List[List[int]]:
    """Root channels (current indices) grouped by channel class, sorted: the units a group removes whole.

    >>> root_units(np.array([7, 5, 7, 5]), np.array([0, 1, 2, 3]))
    [[0, 2], [1, 3]]
    """
    if root_cls.size == 0:
        return []
    order = np.argsort(root_cls, kind="stable")
    cls_sorted, cur_sorted = root_cls[order], root_cur[order]
    bounds = np.flatnonzero(np.diff(cls_sorted)) + 1
    if bounds.size + 1 == cur_sorted.size:  # one channel per class: singletons
        return np.sort(cur_sorted)[:, None].tolist()  # [[c], ...] made in one call
    return sorted(chunk.tolist() for chunk in np.split(cur_sorted, bounds))


@dataclass(frozen=True)
class GroupRoot:
    """Where one group of the graph's walk starts (see :func:`group_roots`)."""

    space: ChannelSpace  # the root layer side (an output space)
    idxs: np.ndarray  # original indices of the root channels the group selects (sorted)
    classes: np.ndarray  # the prunable coupled-channel classes it removes (sorted, unique)
    new_classes: np.ndarray  # those of ``classes`` no earlier group of the walk reached (sorted)


def group_roots(graph, ignored_layers: Iterable = (), root_module_types: tuple = (),
                as_built: bool = False) -> Iterator[GroupRoot]:
    """Every group of ``graph`` once, in execution order of their root layers: an output space of a
    ``root_module_types`` layer not in ``ignored_layers`` (or a loose weight's output dim, ``graph.param_roots``,
    when ``nn.Linear`` is a root type) roots a group when some of its channels belong to classes
    that are prunable (not fixed, not reached by an ignored layer's outputs) and not all of them were reached by an
    earlier group. The group removes all of those classes (an earlier group may share some).

    ``as_built=False`` looks at the alive channels (the groups prunable now); ``as_built=True`` at every channel the
    model was built with, whatever has been pruned since.
    """
    ignored = list(ignored_layers or ())
    ignored_ids = {id(m) for m in ignored}
    blocked = graph._blocked_classes(ignored)
    kept = graph.classes.kept
    covered = np.zeros(graph.classes.of.size, dtype=bool)
    param_roots = getattr(graph, "param_roots", frozenset()) if any(
        issubclass(nn.Linear, t) for t in root_module_types) else frozenset()
    is_root_type = {}  # type -> isinstance against root_module_types (a library type's check walks the MRO by name)
    for s in list(graph.spaces):  # a copy: the caller may prune while walking
        if s.side != SIDE_OUT or id(s.owner) in ignored_ids:
            continue
        t = type(s.owner)
        root_type = is_root_type.get(t)
        if root_type is None:
            root_type = is_root_type[t] = isinstance(s.owner, root_module_types)
        if not (root_type or s.index in param_roots):
            continue
        idxs = np.arange(s.size) if as_built else s.alive_idx
        if idxs.size == 0:
            continue
        root_cls = graph.classes.of[s.gids(idxs)]
        prunable = ~kept[root_cls] & ~blocked[root_cls]
        if not (prunable & ~covered[root_cls]).any():  # nothing new here: no sort needed
            continue
        classes = unique_ints(root_cls[prunable])
        new = classes[~covered[classes]]
        covered[new] = True
        yield GroupRoot(s, idxs[in_sorted(root_cls, classes)], classes, new)


def dependency(graph, root: ChannelSpace, space: ChannelSpace) -> Dependency:
    """The (immutable, cached) :class:`~.group.Dependency` from a group's root space to one of its member spaces."""
    key = (root.index, space.index)
    dep = graph.state.deps.get(key)
    if dep is None:
        dep = graph.state.deps[key] = Dependency(root.handler, space.handler, graph.space_node(root),
                                            graph.space_node(space), space)
    return dep


def closure(graph, root: ChannelSpace, classes: np.ndarray) -> Group:
    """The group that removes ``classes`` (sorted, prunable) from ``root``: it selects every alive root channel of
    those classes."""
    alive = root.alive_idx
    root_cls = graph.classes.of[root.gids(alive)]
    return Group(graph, root, classes, alive[in_sorted(root_cls, classes)])


def _positions(sorted_set: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)`` (0 for an empty set), through a
    table over ``sorted_set``'s span when that span is small (a group's classes are mostly contiguous ids): the
    same positions, without a binary search per value.

    >>> _positions(np.array([2, 4, 5]), np.array([5, 2, 3, 9, 0])).tolist()
    [2, 0, 1, 2, 0]
    """
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=np.int64)
    lo, hi = int(sorted_set[0]), int(sorted_set[-1])
    if hi - lo + 1 > 4 * sorted_set.size or values.size < sorted_set.size:
        return np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    table = np.minimum(np.searchsorted(sorted_set, np.arange(lo, hi + 1)), sorted_set.size - 1)
    return table[np.clip(values, lo, hi) - lo]


class MemberLayout:
    """A group's members as flat arrays, in item order: what :func:`group_items` computes, kept with the items so
    that a selection (:func:`restricted_items`), the member keys and a batched cut read them with a few array
    operations instead of a loop over members.

    Member ``k`` (``items[k]``) is channel space ``space[k]`` (an index into ``graph.spaces``); its channels are
    positions ``bounds[k]:bounds[k + 1]`` of the per-channel arrays: ``idx`` (current channel indices; the item's
    ``idx_array`` is that slice), ``root`` (the root channel each is coupled with; the item's ``root_array``) and
    ``keys`` (``space.offset + idx``, as ``Group.member_keys``). All ``int64``, read-only."""

    __slots__ = ("items", "space", "bounds", "idx", "root", "keys")

    def __init__(self, items: List[GroupItem], space: np.ndarray, bounds: np.ndarray, idx: np.ndarray,
                 root: np.ndarray, keys: np.ndarray):
        self.items, self.space, self.bounds, self.idx, self.root, self.keys = items, space, bounds, idx, root, keys

    @classmethod
    def of_items(cls, items: List[GroupItem]) -> "MemberLayout":
        """The layout of ``items`` listed some other way (a group built by hand): one pass over them."""
        n = len(items)
        space = np.fromiter((it.dep.space.index for it in items), dtype=np.int64, count=n)
        lengths = np.fromiter((it.idx_array.size for it in items), dtype=np.int64, count=n)
        bounds = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        if n:
            idx = np.concatenate([it.idx_array for it in items]).astype(np.int64, copy=False)
            root = np.concatenate([it.root_array for it in items]).astype(np.int64, copy=False)
            offsets = np.fromiter((it.dep.space.offset for it in items), dtype=np.int64, count=n)
            keys = np.repeat(offsets, lengths) + idx
        else:
            idx = root = keys = np.zeros(0, dtype=np.int64)
        return cls(items, space, bounds, idx, root, keys)


def layout_of(group, items: Optional[Sequence[GroupItem]] = None) -> MemberLayout:
    """``group``'s members as flat arrays: a graph group's own :attr:`~.group.Group.member_layout` (kept with its
    items) when it lists ``items`` (the very list; ``None``: the group's items), else one made from ``items`` (or
    ``group.items``) in one pass. The one place that chooses between the two (criteria, proposals and the batched
    cut read members through it).

    >>> from types import SimpleNamespace
    >>> lay = layout_of(SimpleNamespace(items=[]))  # not a graph group: made from its items
    >>> lay.bounds.tolist(), lay.keys.size
    ([0], 0)
    """
    try:
        lay = group.member_layout
    except AttributeError:  # not a graph group (a Group built by hand, a group-like object)
        lay = None
    if lay is not None and (items is None or lay.items is items):
        return lay
    return MemberLayout.of_items(list(group.items) if items is None else list(items))


def _items_from(graph, root: ChannelSpace, space: np.ndarray, bounds: np.ndarray, idx: np.ndarray,
                root_idx: np.ndarray) -> List[GroupItem]:
    """One item per member (``space[k]``, channels ``bounds[k]:bounds[k + 1]``): its cached dependency and views of
    ``idx`` and ``root_idx``."""
    deps = graph.state.deps
    spaces = graph.spaces
    ri = root.index
    new = object.__new__
    items = []
    append = items.append
    bl = bounds.tolist()
    for k, a, b in zip(space.tolist(), bl, bl[1:]):
        dep = deps.get((ri, k))
        if dep is None:
            dep = dependency(graph, root, spaces[k])
        it = new(GroupItem)  # GroupItem.from_arrays, inlined (one item per member of every group of a step)
        it.dep, it._idxs, it._root_idxs, it._idx_arr, it._root_arr = dep, None, None, idx[a:b], root_idx[a:b]
        append(it)
    return items


def _sorted_ids(gids: np.ndarray, n_classes: int) -> np.ndarray:
    """``np.sort(gids, kind="stable")`` for distinct channel ids listed class by class (``n_classes`` ascending runs):
    the same array, by a mask over the ids' span when that is cheaper than merging the runs (a group of many classes
    over a few adjacent layers: a depthwise block's 1152 classes of 7 members, 8064 ids over a span of 8160)."""
    n = gids.size
    # measured costs, ns: merging the runs ~ 0.85 * n * log2(runs); the mask ~ 4500 + 0.45 * span + 1.5 * n
    merge = 0.85 * n * (n_classes.bit_length() - 1)
    if merge <= 4500 + 1.95 * n:  # (span >= n)
        return np.sort(gids, kind="stable")
    lo, hi = int(gids.min()), int(gids.max())
    span = hi - lo + 1
    if merge <= 4500 + 0.45 * span + 1.5 * n:
        return np.sort(gids, kind="stable")
    mask = np.zeros(span, dtype=bool)
    mask[gids - lo if lo else gids] = True
    out = mask.nonzero()[0]
    if lo:
        out += lo
    return out


def _root_period(root_cls: np.ndarray) -> int:
    """``k`` when the root channels' classes repeat one strictly increasing run of ``k`` classes (``root_cls`` is
    ``root_cls[:k]`` tiled): ``k == root_cls.size`` when they simply increase (one root channel per class, most
    groups), ``k`` the inputs per group of a grouped convolution whose every group has the same offset classes. 0
    when they do not (any other order)."""
    n = root_cls.size
    if n < 2:
        return n
    down = root_cls[1:] <= root_cls[:-1]
    j = int(down.argmax())
    if not down[j]:
        return n
    k = j + 1
    if n % k or not (root_cls.reshape(-1, k) == root_cls[:k]).all():
        return 0
    return k


def _class_positions(first_cls: np.ndarray, n_classes: int, cls: np.ndarray) -> np.ndarray:
    """The position of each of ``cls`` in ``first_cls`` (sorted, duplicate-free), as :func:`_positions` gives it.
    When ``first_cls`` holds all ``n_classes`` classes of the group (every value of ``cls`` is one of them) and they
    are consecutive ids (a group's classes mostly are), that is ``cls - first_cls[0]``: no table."""
    k = first_cls.size
    if k == n_classes and k and int(first_cls[-1]) - int(first_cls[0]) + 1 == k:
        lo = int(first_cls[0])
        return cls - lo if lo else cls
    return _positions(first_cls, cls)


def group_items(graph, group: Group) -> Tuple[List[GroupItem], List[List[int]], MemberLayout]:
    """``(items, units, layout)`` of a group: its members (root first, then spaces in trace order; indices ascending
    within a space; each with the root channel it is coupled with), its units and the members' flat layout."""
    st = graph.state
    of = graph.classes.of
    root = group.root_space
    # ids are allocated space by space; members are listed class by class, each class ascending: a merge of sorted
    # runs, which the stable sort (timsort) does in about a quarter of the time of the default one (or a mask)
    gids = _sorted_ids(graph.classes.members(group.classes, graph.alive_mask), group.classes.size)
    if st.attr_spaces:  # size attributes (the only hidden ids) are rewritten by prune_group, not group members
        gids = gids[st.visible[gids]]
    lo, hi = gids.searchsorted((root.offset, root.offset + root.size)).tolist()
    n_root = hi - lo
    if lo:
        gids = np.concatenate([gids[lo:hi], gids[:lo], gids[hi:]])
    n = gids.size
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return [], [], MemberLayout([], empty, np.zeros(1, dtype=np.int64), empty, empty, empty)
    space_idx = st.space_of[gids]
    starts = (space_idx[1:] != space_idx[:-1]).nonzero()[0]
    bounds = np.empty(starts.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, n
    np.add(starts, 1, out=bounds[1:-1])
    space = space_idx[bounds[:-1]]
    spaces = graph.spaces
    members = [spaces[k] for k in space.tolist()]
    offsets = np.fromiter([s.offset for s in members], dtype=np.int64, count=len(members))
    base = offsets.repeat(bounds[1:] - bounds[:-1])
    cur = gids - base  # original indices; current ones where a space lost channels (below)
    bl = None
    for k, s in enumerate(members):
        alive = s._alive_idx if s._alive_idx is not None else s.alive_idx  # (``current_size``, without two calls)
        if alive.size != s.size:
            if bl is None:
                bl = bounds.tolist()
            a, b = bl[k], bl[k + 1]
            cur[a:b] = s.rank[cur[a:b]]
    keys = gids if bl is None else base + cur  # offset + current index (the original one, where none was pruned)
    root_cur = cur[:n_root]
    cls = of[gids]
    root_cls = cls[:n_root]
    # every member channel -> the root channel (current index) of its class: the first of the class's root channels
    # (root_cur ascends); the root's own channels map to themselves (also inside tied units)
    k = _root_period(root_cls)
    if k == n_root and n_root:  # one root channel per class, in class order (most groups)
        r_all = root_cur[_class_positions(root_cls, group.classes.size, cls)]
        r_all[:n_root] = root_cur
        units = root_cur[:, None].tolist()  # root_units: [[c], ...] (root_cur ascends with the root's ids)
    elif k:  # the same k classes repeated (a grouped conv's offsets): unit j is root_cur[j::k], in order of j
        r_all = root_cur[:k][_class_positions(root_cls[:k], group.classes.size, cls)]
        r_all[:n_root] = root_cur
        units = root_cur.reshape(-1, k).T.tolist()  # root_units' answer (each unit's first channel ascends with j)
    elif n_root:
        rc_cls, first = np.unique(root_cls, return_index=True)
        r_all = root_cur[first[_positions(rc_cls, cls)]]
        r_all[:n_root] = root_cur
        units = root_units(root_cls, root_cur)
    else:
        r_all = np.zeros(n, dtype=np.int64)
        units = []
    items = _items_from(graph, root, space, bounds, cur, r_all)
    return items, units, MemberLayout(items, space, bounds, cur, r_all, keys)


def _one_channel_units(units: List[List[int]], roots: np.ndarray) -> bool:
    """Whether ``units`` (a listed graph group's) hold one root channel each, the root channels ``roots`` ascending:
    then ``units[k] == [roots[k]]``, and each of the group's classes has one root channel."""
    return len(units) == roots.size and (roots.size < 2 or bool((roots[1:] > roots[:-1]).all()))


def restricted_items(group: Group, sub: Group, one_channel_units: Optional[bool] = None
                     ) -> Tuple[List[GroupItem], Callable[[], List[List[int]]], MemberLayout]:
    """``sub``'s items, units and layout cut out of ``group``'s (already computed, same graph version): every
    member channel whose root channel ``sub`` selects. Same result as :func:`group_items`, without the graph walk:
    a few array operations over ``group``'s layout, then one item per member that keeps a channel; the units as a
    function that makes them (:func:`_kept_units`, run when ``sub.units`` is first read: a pruning step never reads
    a selection's). ``one_channel_units``: :func:`_one_channel_units` of ``group`` when the caller asked already."""
    root = group.root_space
    lay = group._layout
    n_cur = root.current_size
    keep = np.zeros(n_cur, dtype=bool)
    keep[sub._root_orig if n_cur == root.size else root.rank[sub._root_orig]] = True  # (no rank: none pruned)
    sel = keep[lay.root].nonzero()[0]  # the member channels kept, ascending
    at = sel.searchsorted(lay.bounds)  # each member's first kept channel, in the kept arrays (a bool cumsum is slower)
    nz = (at[1:] != at[:-1]).nonzero()[0]  # the members that keep some channel
    bounds = np.concatenate((at[nz], at[-1:]))
    space = lay.space[nz]
    idx, sel_root, keys = lay.idx[sel], lay.root[sel], lay.keys[sel]
    items = _items_from(sub._graph, root, space, bounds, idx, sel_root)
    return items, functools.partial(_kept_units, group.units, group.root_array, keep, one_channel_units), MemberLayout(
        items, space, bounds, idx, sel_root, keys)


def _kept_units(units: List[List[int]], roots: np.ndarray, keep: np.ndarray,
                one_channel_units: Optional[bool] = None) -> List[List[int]]:
    """The units of a selection (:func:`restricted_items`, made when its ``units`` are first read): those of its
    group's ``units`` (root channels ``roots``) whose channels ``keep`` (``bool [current root channels]``) holds."""
    if one_channel_units if one_channel_units is not None else _one_channel_units(units, roots):
        return list(itertools.compress(units, keep[roots].tolist()))  # one channel per unit: units[k] == [roots[k]]
    return [u for u in units if keep[u[0]]]


def subgroup(graph, group: Group, idxs: Sequence[int], validate: bool = True) -> Group:
    """The part of ``group`` that removes only root channels ``idxs`` (whole units; see :meth:`Group.select`)."""
    root = group.root_space
    idxs = graph._validate_root_idxs(root, idxs) if validate else np.asarray(idxs, dtype=np.int64)
    orig = root.alive_idx[idxs]
    of_idxs = graph.classes.of[root.gids(orig)]
    cls = unique_ints(of_idxs)
    listed = group._listed_now()
    single = listed and _one_channel_units(group.units, group.root_array)
    if single and group.root_array.size == root.current_size:
        # every alive root channel is the group's (their classes are its classes), one per class: the closure of
        # ``idxs`` is their own channels
        sub = Group(graph, root, cls, unique_ints(orig))
    else:
        outside = cls[~in_sorted(cls, group.classes)]
        if outside.size:
            reason = graph.classes.reasons.get(int(outside[0]), "it is not part of this group (ignored or fixed)")
            bad = [int(i) for i, c in zip(idxs, of_idxs) if c in set(outside.tolist())][:5]
            raise PruningError(f"channels {bad} of {root.label} cannot be pruned in this group: {reason}")
        sub = closure(graph, root, cls)  # all of them prunable: they are the group's
    if listed:
        sub._set_listing(*restricted_items(group, sub, single))
    return sub


def member_labels(graph, classes: np.ndarray) -> List[str]:
    """The layer sides (space labels, in trace order) holding channels of ``classes``, as built (pruned channels
    included): the members of the group that removes those classes."""
    gids = graph.classes.members(np.asarray(classes, dtype=np.int64), np.ones(graph.classes.of.size, dtype=bool))
    gids = gids[graph.state.visible[gids]]
    return [graph.spaces[i].label for i in unique_ints(graph.state.space_of[gids]) if i >= 0]
