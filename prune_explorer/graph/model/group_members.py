"""A group's members, computed from its classes: which channels of which layer sides it removes.

A :class:`~.group.Group` stores only its root space and its classes. Its items are computed on first use (and again
after any prune or undo): every alive channel of its classes, grouped by channel space (root first, then trace
order), each with the root channel it is coupled with. Its units are the root channels that share a class (a
grouped convolution ties the same offset of every group: they can only leave together). All of it is vectorised:
the cost is linear in the number of member channels.

:func:`group_roots` is the one walk that says which groups a graph has (``DependencyGraph.get_all_groups``
materialises them; ``measure.sweep.GroupLayout`` counts their channels on the model as built).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch.nn as nn

from ..._index import unique_ints
from ...errors import PruningError
from .channel_space import SIDE_OUT, ChannelSpace
from .group import Dependency, Group, GroupItem

__all__ = ["in_sorted", "root_units", "GroupRoot", "group_roots", "closure", "group_items", "restricted_items", "subgroup",
           "dependency", "member_labels"]


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
        return [[c] for c in np.sort(cur_sorted).tolist()]
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
    for s in list(graph.spaces):  # a copy: the caller may prune while walking
        if s.side != SIDE_OUT or id(s.owner) in ignored_ids:
            continue
        if not (isinstance(s.owner, root_module_types) or s.index in param_roots):
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


def group_items(graph, group: Group) -> Tuple[List[GroupItem], List[List[int]]]:
    """``(items, units)`` of a group: its members (root first, then spaces in trace order; indices ascending within
    a space; each with the root channel it is coupled with) and its units."""
    of = graph.classes.of
    root = group.root_space
    gids = np.sort(graph.classes.members(group.classes, graph.alive_mask))  # ids are allocated space by space
    gids = gids[graph.state.visible[gids]]  # size attributes are rewritten by prune_group, not group members
    lo, hi = np.searchsorted(gids, (root.offset, root.offset + root.size))
    root_gids = gids[lo:hi]
    if lo:
        gids = np.concatenate([root_gids, gids[:lo], gids[hi:]])
    space_idx = graph.state.space_of[gids]
    root_cur = root.rank[root_gids - root.offset]
    root_cls = of[root_gids]
    rc_cls, first = np.unique(root_cls, return_index=True)
    # every member channel -> the root channel (current index) of its class; the root's own channels map to
    # themselves (also inside tied units)
    pos = _positions(rc_cls, of[gids])
    r_all = root_cur[first[pos]] if rc_cls.size else np.zeros(gids.size, dtype=np.int64)
    r_all[: root_gids.size] = root_cur
    starts = [0] + (np.flatnonzero(np.diff(space_idx)) + 1).tolist() + [gids.size]
    items: List[GroupItem] = []
    for a, b in zip(starts[:-1], starts[1:]):
        if a == b:
            continue
        s = graph.spaces[space_idx[a]]
        items.append(GroupItem.from_arrays(dependency(graph, root, s), s.rank[gids[a:b] - s.offset], r_all[a:b]))
    return items, root_units(root_cls, root_cur)


def restricted_items(group: Group, sub: Group) -> Tuple[List[GroupItem], List[List[int]]]:
    """``sub``'s items and units cut out of ``group``'s (already computed, same graph version): every member channel
    whose root channel ``sub`` selects. Same result as :func:`group_items`, without the graph walk."""
    root = group.root_space
    keep = np.zeros(root.current_size, dtype=bool)
    keep[root.rank[sub._root_orig]] = True
    items: List[GroupItem] = []
    for it in group._items:
        m = keep[it.root_array]
        if m.any():
            items.append(GroupItem.from_arrays(it.dep, it.idx_array[m], it.root_array[m]))
    units = group._units
    roots = group.root_array
    if len(units) == roots.size and (roots.size < 2 or bool((roots[1:] > roots[:-1]).all())):
        units = list(itertools.compress(units, keep[roots].tolist()))  # one channel per unit: units[k] == [roots[k]]
    else:
        units = [u for u in units if keep[u[0]]]
    return items, units


def subgroup(graph, group: Group, idxs: Sequence[int], validate: bool = True) -> Group:
    """The part of ``group`` that removes only root channels ``idxs`` (whole units; see :meth:`Group.select`)."""
    root = group.root_space
    idxs = graph._validate_root_idxs(root, idxs) if validate else np.asarray(idxs, dtype=np.int64)
    orig = root.alive_idx[idxs]
    of_idxs = graph.classes.of[root.gids(orig)]
    cls = unique_ints(of_idxs)
    outside = cls[~in_sorted(cls, group.classes)]
    if outside.size:
        reason = graph.classes.reasons.get(int(outside[0]), "it is not part of this group (ignored or fixed)")
        bad = [int(i) for i, c in zip(idxs, of_idxs) if c in set(outside.tolist())][:5]
        raise PruningError(f"channels {bad} of {root.label} cannot be pruned in this group: {reason}")
    sub = closure(graph, root, cls)  # all of them prunable: they are the group's
    if group._items is not None and group._items_version == graph.version and group.root_space is root:
        sub._items, sub._units = restricted_items(group, sub)
    return sub


def member_labels(graph, classes: np.ndarray) -> List[str]:
    """The layer sides (space labels, in trace order) holding channels of ``classes``, as built (pruned channels
    included): the members of the group that removes those classes."""
    gids = graph.classes.members(np.asarray(classes, dtype=np.int64), np.ones(graph.classes.of.size, dtype=bool))
    gids = gids[graph.state.visible[gids]]
    return [graph.spaces[i].label for i in unique_ints(graph.state.space_of[gids]) if i >= 0]
