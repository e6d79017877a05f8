"""A group's members (``group_members.group_items``) through its shortcuts give what the general path gives, on real
torchvision models before and after a pruning step: the ids sorted by a mask over their span (``_sorted_ids``), the
units and root channels of root classes that repeat one increasing run (``_root_period``: a grouped conv's offsets;
one root channel per class), the positions of consecutive classes without a table (``_class_positions``); a
selection (``subgroup``) of a group of one-channel units is the closure of its channels, and its members cut out
of the group's (``restricted_items``) are those the graph walk lists."""

import numpy as np
import pytest
import torch
import torchvision

import prune_explorer as pe
from prune_explorer._index import unique_ints
from prune_explorer.graph.model.group_members import (_class_positions, _one_channel_units, _positions, _root_period,
                                                      _sorted_ids, closure, group_items, root_units)


def _pruner(name: str):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    return pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 224, 224), pe.importance.MagnitudeImportance(p=2),
                                     pruning_ratio=0.5, iterative_steps=2, ignored_layers=[last])


def _general(graph, group):
    """``(space, bounds, idx, root, keys, units)`` of ``group`` by the general path: a stable sort of the ids, the
    first root channel of each class by ``np.unique``, the units by ``root_units``."""
    root = group.root_space
    gids = np.sort(graph.classes.members(group.classes, graph.alive_mask), kind="stable")
    gids = gids[graph.state.visible[gids]]
    lo, hi = np.searchsorted(gids, (root.offset, root.offset + root.size))
    gids = np.concatenate([gids[lo:hi], gids[:lo], gids[hi:]])
    space_idx = graph.state.space_of[gids]
    bounds = np.r_[0, np.flatnonzero(np.diff(space_idx)) + 1, gids.size]
    space = space_idx[bounds[:-1]]
    idx = np.empty_like(gids)
    for k, a, b in zip(space.tolist(), bounds[:-1].tolist(), bounds[1:].tolist()):
        s = graph.spaces[k]
        idx[a:b] = s.rank[gids[a:b] - s.offset] if s.current_size != s.size else gids[a:b] - s.offset
    keys = np.repeat([graph.spaces[k].offset for k in space.tolist()], np.diff(bounds)) + idx
    n_root = int(hi - lo)
    cls = graph.classes.of[gids]
    root_cls, root_cur = cls[:n_root], idx[:n_root]
    rc_cls, first = np.unique(root_cls, return_index=True)
    r_all = root_cur[first[_positions(rc_cls, cls)]]
    r_all[:n_root] = root_cur
    return space, bounds, idx, r_all, keys, root_units(root_cls, root_cur), root_cls


@pytest.mark.parametrize("name", ["regnet_y_400mf", "efficientnet_b0"])
def test_group_items_shortcuts_give_the_general_path(name):
    p = _pruner(name)
    seen = {"periodic": 0, "consecutive": 0}
    for step in range(2):
        graph = p.DG
        for group in p.graph_groups():
            items, units, lay = group_items(graph, group)
            space, bounds, idx, root, keys, general_units, root_cls = _general(graph, group)
            assert units == general_units
            for got, want in ((lay.space, space), (lay.bounds, bounds), (lay.idx, idx), (lay.root, root),
                              (lay.keys, keys)):
                assert got.dtype == np.int64 and np.array_equal(got, want)
            assert [it.dep.space.index for it in items] == space.tolist()
            raw = graph.classes.members(group.classes, graph.alive_mask)
            ids = _sorted_ids(raw, group.classes.size)
            assert ids.dtype == np.int64 and np.array_equal(ids, np.sort(raw, kind="stable"))
            k = _root_period(root_cls)
            seen["periodic"] += 0 < k < root_cls.size
            if k:
                first = root_cls[:k]
                cls = graph.classes.of[raw]
                assert np.array_equal(_class_positions(first, group.classes.size, cls), _positions(first, cls))
                seen["consecutive"] += first.size == group.classes.size and first[-1] - first[0] + 1 == first.size
        p.step()
    assert seen["consecutive"] and (seen["periodic"] or name != "regnet_y_400mf")  # (regnet: grouped convs)


def test_root_period_and_class_positions_on_small_cases():
    assert _root_period(np.array([], dtype=np.int64)) == 0
    assert _root_period(np.array([4])) == 1
    assert _root_period(np.array([1, 3, 7])) == 3
    assert _root_period(np.array([1, 3, 1, 3, 1, 3])) == 2
    assert _root_period(np.array([1, 3, 1, 4])) == 0
    assert _root_period(np.array([1, 3, 5, 1, 3])) == 0  # not whole repeats
    assert _root_period(np.array([3, 1, 3, 1])) == 0  # the run does not increase
    first = np.array([5, 6, 7])
    values = np.array([7, 5, 6, 6])
    assert _class_positions(first, 3, values).tolist() == [2, 0, 1, 1]
    assert _class_positions(np.array([2, 4, 5]), 3, values).tolist() == _positions(np.array([2, 4, 5]), values).tolist()
    assert _class_positions(first, 4, values).tolist() == _positions(first, values).tolist()  # not all the classes
    ids = np.concatenate([np.arange(c, 9000, 1000) for c in range(1000)])  # 1000 runs of 9 ids over a span of 9000
    assert np.array_equal(_sorted_ids(ids, 1000), np.sort(ids, kind="stable"))


@pytest.mark.parametrize("name", ["regnet_y_400mf", "efficientnet_b0"])
def test_selections_are_the_closure_and_list_the_graph_walk(name):
    p = _pruner(name)
    shortcut = 0
    for step in range(2):
        graph = p.DG
        for group in p.graph_groups():
            root, roots = group.root_space, group.root_array  # (lists the group)
            shortcut += _one_channel_units(group.units, roots) and roots.size == root.current_size
            for chosen, validate in ((roots[::3].tolist(), False), (roots[1::2].tolist(), True)):
                sub = group.select(chosen, validate=validate)
                if chosen:  # a selection of a selection whose units were not read yet (they are made on first read)
                    part = sub.root_array[::2].tolist()
                    inner = sub.select(part)
                    inner_cls = unique_ints(graph.classes.of[root.gids(root.alive_idx[np.asarray(part, dtype=np.int64)])])
                    assert inner.units == group_items(graph, closure(graph, root, inner_cls))[1]
                cls = unique_ints(graph.classes.of[root.gids(root.alive_idx[np.asarray(chosen, dtype=np.int64)])])
                want = closure(graph, root, cls)
                assert np.array_equal(sub.classes, want.classes) and np.array_equal(sub._root_orig, want._root_orig)
                assert sub._root_orig.dtype == want._root_orig.dtype == np.int64
                items, units, lay = group_items(graph, want)  # the graph walk
                assert sub.units == units
                assert [it.dep for it in sub.items] == [it.dep for it in items]
                for f in ("space", "bounds", "idx", "root", "keys"):
                    got, expect = getattr(sub.member_layout, f), getattr(lay, f)
                    assert got.dtype == np.int64 and np.array_equal(got, expect)
                assert all(it.idx_array.base is not None for it in sub.items)  # views of the layout's arrays
        p.step()
    assert shortcut
