"""Pruning a group and undoing it: the all-or-nothing execution, the :class:`PruneRecord` it leaves, the history.

:func:`prune_group` validates every member with its pruner first, snapshots the members (references, not copies:
pruning assigns new tensors, see :mod:`.snapshot`), prunes them all, and on any error puts every member back and
raises. Then it marks the group's channels dead in the graph's alive mask, records a :class:`PruneRecord` (JSON-able
entry appended to the model's history, :func:`model_history`) and keeps the snapshot for :func:`undo` while the
graph's ``undo_depth`` allows.

All of it is atomic against any exception, ``KeyboardInterrupt`` included: an interrupt landing anywhere in
:func:`prune_group` puts the model, the alive mask and the histories back as they were before it re-raises, and the
rollback itself runs to completion even if a second interrupt lands in it (:func:`prune_explorer._atomic.finish`);
:func:`undo` likewise. :func:`redo` prunes the very channels of an undone record again (the post-prune check re-applies
the groups it keeps that way), and :func:`keep_undoable` makes every pruning undoable for a while (a pruner's step).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterable, Iterator, List, Optional

import numpy as np
import torch
import torch.nn as nn

from ..._atomic import finish
from ..._index import concat_ranges
from ...errors import OutputShapeWarning, PruningError
from ...layers.base import BasePruningFunc, CheckedIndices, composes_cuts
from ...layers.batch_cut import cut_layers
from ...layers.edits import ComposedCuts, composed_cuts, index_array
from ..model.channel_space import SIDE_IN, SIDE_OUT, ChannelSpace
from ..model.group import Group, GroupItem, fn_name
from ..model.group_members import MemberLayout, layout_of
from .output_changes import output_changes_message
from .attribute_sizes import attribute_updates
from .lint import lint_enabled
from .model_edits import EditRecord, record_edit, redo_edit, undo_edit
from .snapshot import changed_since, restore_modules, restore_own, snapshot_modules, snapshot_own
from .tied import held_tensors, retie, tied_modules

__all__ = ["HISTORY_ATTR", "model_history", "PruneRecord", "prune_group", "prune_groups", "split_record", "undo",
           "redo", "keep_undoable", "sync_model", "apply_edit", "EditRecord"]

HISTORY_ATTR = "_prune_explorer_history"


def model_history(model: nn.Module) -> List[dict]:
    """The JSON-able pruning history stored on a model (a plain list attribute, not a buffer).

    Each entry: ``{"root": name, "root_fn": fn name, "members": [{"name", "fn", "side", "idxs"}]}`` with the
    channel indices as they were when that group was pruned; replaying the entries in order on a fresh model
    rebuilds the pruned architecture.

    >>> model_history(nn.Linear(2, 2))
    []
    """
    hist = model.__dict__.get(HISTORY_ATTR)
    if hist is None:
        hist = []
        model.__dict__[HISTORY_ATTR] = hist
    return hist


class PruneRecord:
    """What one ``group.prune()`` changed; JSON-able via :meth:`as_dict`, reversible with :meth:`undo`."""

    def __init__(self, graph, group_root: str, root_fn: str, members, killed: np.ndarray, snapshot,
                 attributes: Optional[List[tuple]] = None):
        self.graph = graph
        #: ``(AttributeRef, old value, new value)`` for every size attribute this pruning rewrote
        self.attributes = list(attributes or ())
        self.root = group_root
        self.root_fn = root_fn
        # [{"name", "fn", "side", "idxs"}] with current indices at pruning time (see :attr:`members`); or the plan
        # ``[(space, checked indices)]`` they are listed from when first read
        self._members = members
        self._killed = killed
        self._snapshot = snapshot
        self.undone = False
        self.exact = False  # True for a hand-built group pruned with prune_group(exact=True)
        self.root_space: Optional[ChannelSpace] = None  # the group's root channel space
        #: ``(space index, original ids its pruner removed)`` per member, in pruning order, on iteration
        self._plan: Iterable[tuple] = []
        #: for a batched cut (:func:`prune_groups`): one dict per group, ``{"entry": its history entry as if the
        #: groups had been pruned one after another, "root_space", "killed", "plan"}``; None for one group
        self.parts: Optional[List[dict]] = None

    @property
    def members(self) -> List[dict]:
        """``[{"name", "fn", "side", "idxs"}]`` (plus ``"dim"`` for a loose parameter): each member space this pruning
        cut and the current indices it removed, at pruning time (listed on first read: a batched cut of thousands of
        members is often never asked)."""
        members = self._members
        if isinstance(members, _Plan):
            members = self._members = [_member_entry(s, idxs) for s, idxs in zip(members.spaces, members.idxs)]
        return members

    @members.setter
    def members(self, value: List[dict]) -> None:
        self._members = value

    def entries(self) -> List[dict]:
        """The history entries this record stands for: :meth:`as_dict` for one group; for a batched cut, one entry
        per group, with the indices each would have had if the groups had been pruned one after another (so that
        replaying them in order rebuilds the same model)."""
        if self.parts is None:
            return [self.as_dict()]
        return [p["entry"] for p in self.parts]

    @property
    def roots(self) -> List[str]:
        """The root names of the groups this record pruned (one name unless it is a batched cut)."""
        return [self.root] if self.parts is None else [p["entry"]["root"] for p in self.parts]

    def as_dict(self) -> dict:
        d = {"root": self.root, "root_fn": self.root_fn, "members": self.members}
        if self.attributes:
            d["attributes"] = [dict(ref.as_dict(), value=int(new)) for ref, _, new in self.attributes]
        return d

    @property
    def removed_ids(self) -> np.ndarray:
        """Global channel ids this pruning removed (what :meth:`undo` brings back)."""
        return self._killed

    def undo(self) -> None:
        """Restore the model and the graph exactly as they were before this pruning (last record first)."""
        self.graph.undo(self)

    def redo(self) -> "PruneRecord":
        """Prune the very same channels again after :meth:`undo`; returns the new record."""
        return self.graph.redo(self)

    def __repr__(self):
        n = sum(len(m["idxs"]) for m in self.members)
        more = f", groups={len(self.parts)}" if self.parts is not None else ""
        return f"PruneRecord(root={self.root}{more}, members={len(self.members)}, channels={n})"


def checked_idxs(s: ChannelSpace, item: GroupItem):
    """The member's indices as its pruner validates them (raises :class:`PruningError` if it refuses them)."""
    return checked_array(s, item.idx_array)


def checked_array(s: ChannelSpace, idx: np.ndarray, sorted_unique: bool = False):
    """:func:`checked_idxs` for indices given as an ``int64`` array (a batched cut's union of one space's indices;
    ``sorted_unique``: known to be sorted and duplicate-free, which a pruner's ``check_sorted`` need not read again)."""
    pruner = s.pruner
    check = getattr(pruner, "check_sorted" if sorted_unique and isinstance(pruner, BasePruningFunc) else "check", None)
    if check is None:
        return idx.tolist()
    try:
        return check(s.owner, idx, SIDE_IN if s.side == SIDE_IN else SIDE_OUT)
    except PruningError:
        raise
    except Exception:
        if type(s.pruner).__module__.startswith("prune_explorer."):
            raise
        # a user's pruner whose channel count cannot be read (Torch-Pruning never asks for it): the graph's
        # indices are already checked against the traced size
        return idx.tolist()


def _snapshot(graph, spaces: List[ChannelSpace]):
    params = []
    for s in spaces:
        if s.dim is not None:
            owner, attr = graph.state.param_attr[id(s.owner)]
            params.append((owner, attr, s.owner, [o for o in graph.spaces if o.owner is s.owner]))
    modules = [s.owner for s in spaces if s.dim is None]
    modules += tied_modules(graph.tied, modules)  # users of a tied parameter follow (retie)
    # the third list: what the sync after the cut rewrote (:func:`sync_model`, filled once the cut is recorded)
    return snapshot_modules(modules), params, []


def _restore(snapshot) -> None:
    mods, params, synced = snapshot
    restore_own(synced)  # first: back to the cut model as it was before its sync, then before the cut
    restore_modules(mods)
    for owner, attr, param, spaces in params:
        setattr(owner, attr, param)
        for s in spaces:
            s.owner = param


def _prune_member(graph, s: ChannelSpace, idxs: list) -> None:
    if s.dim is None:
        s.handler(s.owner, idxs)
        return
    # a loose parameter: the pruner returns a new Parameter, installed where the old one was
    owner, attr = graph.state.param_attr[id(s.owner)]
    new = s.handler(s.owner, idxs)
    old_id = id(s.owner)
    setattr(owner, attr, new)
    graph.state.param_attr[id(new)] = (owner, attr)
    for other in graph.spaces:
        if id(other.owner) == old_id:
            other.owner = new


def prune_group(graph, group: Group, record_history: bool = True, exact: bool = False,
                attributes: Optional[List[tuple]] = None) -> PruneRecord:
    """See :meth:`DependencyGraph.prune_group <prune_explorer.graph.dependency_graph.DependencyGraph.prune_group>`."""
    items = group.items
    label = group.root_space.label
    if not items or not items[0].idx_array.size:
        raise PruningError(f"the group rooted at {label} has no channel to remove")
    listed = [it.dep.space.gids(it.dep.space.alive_idx[it.idx_array]) for it in items] if exact else []
    plan = []
    for it in items:
        s = it.dep.space
        try:
            idxs = checked_idxs(s, it)
        except PruningError as exc:
            raise PruningError(f"cannot prune group rooted at {label}: member {s.label}: {exc}") from None
        plan.append((s, idxs if isinstance(idxs, list) else list(idxs)))
    killed = graph.classes.members(group.classes, graph.alive_mask)
    if exact:
        killed = np.unique(np.concatenate([killed] + listed))
    given = list(attributes) if attributes else []
    attributes = attribute_updates(graph, killed, label)  # size attributes (self.hidden_dim...) the pruning rewrites
    done = {(id(r.obj), r.name, r.index) for r, _, _ in attributes}
    attributes += [a for a in given if (id(a[0].obj), a[0].name, a[0].index) not in done]
    return _apply_plan(graph, group.root_space, plan, killed, exact, record_history, attributes)


def redo(graph, record: PruneRecord) -> PruneRecord:
    """See :meth:`DependencyGraph.redo <prune_explorer.graph.dependency_graph.DependencyGraph.redo>`."""
    if record.graph is not graph or not record.undone:
        raise PruningError("only a pruning of this graph that was undone can be redone")
    if isinstance(record, EditRecord):
        new = redo_edit(graph, record)
        _after_edit(graph)
        return new
    killed = np.asarray(record._killed, dtype=np.int64)
    if not graph.alive_mask[killed].all():
        raise PruningError(f"cannot redo the pruning rooted at {record.root}: some of its channels were removed "
                           "since (by another pruning)")
    plan = []
    for index, ids in record._plan:
        s = graph.spaces[index]
        cur = s.rank[ids - s.offset]
        plan.append((s, list(checked_idxs(s, GroupItem(None, cur, cur)))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutputShapeWarning)  # said when it was first pruned
        return _apply_plan(graph, record.root_space, plan, killed, record.exact, True, record.attributes,
                           parts=record.parts)


def prune_groups(graph, groups: List[Group]) -> PruneRecord:
    """See :meth:`DependencyGraph.prune_groups <prune_explorer.graph.dependency_graph.DependencyGraph.prune_groups>`.

    Every group's indices are read on the model as it is now; each member space is cut once, with the union of
    what the groups remove from it (a space several groups share, such as the input of a layer after a
    concatenation, is copied once instead of once per group). The members of all the groups are laid out once
    in flat arrays (:class:`_BatchMembers`), so the unions, their checks and the groups' history entries cost a few
    numpy calls per batch, not per member."""
    groups = list(groups)
    if len(groups) == 1:
        return prune_group(graph, groups[0])
    if not groups:
        raise PruningError("prune_groups needs at least one group")
    layouts: List[MemberLayout] = []  # each group's members as flat arrays (:class:`~..model.group_members.MemberLayout`)
    parts: List[dict] = []
    killed_all = []
    alive = graph.alive_mask
    for group in groups:
        items = group.items
        if not items or not items[0].idx_array.size:
            raise PruningError(f"the group rooted at {group.root_space.label} has no channel to remove")
        layouts.append(layout_of(group, items))
        killed = graph.classes.members(group.classes, alive)
        killed_all.append(killed)
        parts.append({"killed": killed, "root_space": group.root_space, "members": len(items)})
    killed = np.concatenate(killed_all)
    if not _distinct_ids(killed, alive.size):
        raise PruningError("prune_groups: the groups share channels; prune them one at a time")
    batch = _BatchMembers(graph.spaces, layouts)
    plan = []
    for k, (s, union) in enumerate(batch.unions()):
        if k == batch.first_repeat:
            raise PruningError(f"prune_groups: the groups remove the same channels of {s.label}; prune them one at a "
                               "time")
        try:
            idxs = checked_array(s, union, sorted_unique=True)
        except PruningError as exc:
            raise PruningError(f"cannot prune these {len(groups)} groups together: member {s.label}: {exc}") from None
        plan.append((s, idxs if isinstance(idxs, list) else list(idxs)))
    attributes = attribute_updates(graph, killed, _batch_label(parts))
    _describe_parts(graph, parts, batch)
    return _apply_plan(graph, parts[0]["root_space"], plan, killed, False, True, attributes, parts=parts)


def _distinct_ids(ids: np.ndarray, n: int) -> bool:
    """Whether the channel ids ``ids`` (each in ``0 .. n - 1``) are all different: marked in a mask of ``n``, in
    linear time (a sort of the tens of thousands of ids a DenseNet step removes costs more)."""
    mark = np.zeros(n, dtype=bool)
    mark[ids] = True
    return int(np.count_nonzero(mark)) == ids.size


class _BatchMembers:
    """The members of the groups of a batched cut as flat arrays.

    A *pair* is one member of one group (its channel space and the current indices it loses), in group order then
    item order: ``spaces[p]``, and its indices, sorted, ``values[start[p]:start[p + 1]]`` (``int64``). The member
    spaces are *merged* in order of first appearance (:meth:`unions`: each space's union of the indices its pairs
    remove). :meth:`sequential` gives each pair's indices as they would be had the pairs been cut one after
    another: minus, for each index, the indices below it that earlier pairs of the same space remove. A space whose
    pairs remove ascending runs (each pair's indices above every earlier pair's, as a DenseNet's concatenations
    have it) takes one subtraction per pair; any other is worked out pair by pair."""

    def __init__(self, graph_spaces: List[ChannelSpace], layouts: List[MemberLayout]):
        index = np.concatenate([lay.space for lay in layouts])  # pair -> its space's index in ``graph_spaces``
        n = index.size
        self.spaces = [graph_spaces[k] for k in index.tolist()]
        spaces = self.spaces
        lengths = np.concatenate([np.diff(lay.bounds) for lay in layouts])
        start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=start[1:])
        values = np.concatenate([lay.idx for lay in layouts]).astype(np.int64, copy=False)
        pair = np.repeat(np.arange(n), lengths)
        if values.size > 1:
            down = values[1:] < values[:-1]
            cut = start[1:-1]
            down[cut[(cut > 0) & (cut < values.size)] - 1] = False  # (a pair may start below the last one's end)
            if down.any():  # some pair lists its indices unsorted: sort every pair's (pairs stay in their blocks)
                values = values[np.lexsort((values, pair))]
        self.lengths, self.start, self.values, self.pair = lengths, start, values, pair
        uniq, first, inverse = np.unique(index, return_index=True, return_inverse=True)
        by_first = np.argsort(first, kind="stable")
        merged_rank = np.empty(uniq.size, dtype=np.int64)
        merged_rank[by_first] = np.arange(uniq.size)
        self.merged = [spaces[p] for p in first[by_first].tolist()]  # the member spaces, in order of first appearance
        self.rank = merged_rank[inverse.reshape(-1)]  # pair -> its space's merged rank
        # the pairs grouped by merged space (in pair order within a space), and their indices laid out that way
        order = np.argsort(self.rank, kind="stable")
        lens = lengths[order]
        laid = values[concat_ranges(start[order], lens)]
        space_lens = np.bincount(self.rank, weights=lengths, minlength=uniq.size).astype(np.int64)
        space_start = np.zeros(uniq.size + 1, dtype=np.int64)
        np.cumsum(space_lens, out=space_start[1:])
        # a space is "runs" when its laid-out indices strictly increase: no repeat, each pair above the earlier ones
        rank_laid = np.repeat(self.rank[order], lens)
        bad = (laid[1:] <= laid[:-1]) & (rank_laid[1:] == rank_laid[:-1])
        self.mixed = np.zeros(uniq.size, dtype=bool)
        self.mixed[rank_laid[1:][bad]] = True
        self.laid, self.space_start, self.order = laid, space_start, order
        self.first_repeat = -1  # merged rank of the first space whose union repeats an index (-1: none)
        self._unions: List[np.ndarray] = []
        for k in range(uniq.size):
            union = laid[space_start[k]:space_start[k + 1]]
            if self.mixed[k]:
                union = np.sort(union)
                if self.first_repeat < 0 and not bool((union[1:] != union[:-1]).all()):
                    self.first_repeat = k
            self._unions.append(union)

    def unions(self):
        """``(space, sorted indices its pairs remove)`` per merged space, in order of first appearance (``int64``;
        duplicate-free in every space before :attr:`first_repeat`)."""
        return zip(self.merged, self._unions)

    def sequential(self) -> np.ndarray:
        """Every pair's indices as if the pairs were cut one after another (laid out like :attr:`values`)."""
        n = len(self.spaces)
        lens = self.lengths[self.order]
        earlier = np.concatenate(([0], np.cumsum(lens)[:-1])) - self.space_start[self.rank[self.order]]
        below = np.empty(n, dtype=np.int64)
        below[self.order] = earlier  # runs: every index of the earlier pairs of its space lies below
        seq = self.values - np.repeat(below, self.lengths)
        if self.mixed.any():
            removed: dict = {}  # merged rank -> sorted indices earlier pairs remove
            for p in np.flatnonzero(self.mixed[self.rank]).tolist():
                k = int(self.rank[p])
                arr = self.values[self.start[p]:self.start[p + 1]]
                before = removed.get(k)
                seq[self.start[p]:self.start[p + 1]] = arr if before is None else arr - np.searchsorted(before, arr)
                removed[k] = arr if before is None else np.sort(np.concatenate([before, arr]))
        return seq

    def original_ids(self, graph) -> np.ndarray:
        """Every pair's indices as global channel ids (laid out like :attr:`values`): ``s.gids(s.alive_idx[idx])``."""
        alive_ids = np.flatnonzero(graph.alive_mask)
        merged = self.merged  # read per merged space, then spread to the pairs
        offsets = np.fromiter((s.offset for s in merged), dtype=np.int64, count=len(merged))
        sizes = np.fromiter((s.size for s in merged), dtype=np.int64, count=len(merged))
        base = np.searchsorted(alive_ids, offsets)
        count = (np.searchsorted(alive_ids, offsets + sizes) - base)[self.rank]
        base = base[self.rank]
        full = self.lengths > 0
        lo = self.values[self.start[:-1][full]]
        hi = self.values[self.start[1:][full] - 1]
        if (lo < 0).any() or (hi >= count[full]).any():  # not checked by a pruner: each pair on its own
            return np.concatenate([s.gids(s.alive_idx[self.values[a:b]]) for s, a, b in
                                   zip(self.spaces, self.start[:-1].tolist(), self.start[1:].tolist())])
        return alive_ids[np.repeat(base, self.lengths) + self.values]


def _describe_parts(graph, parts: List[dict], batch: _BatchMembers) -> None:
    """Fill each part of a batched cut with its history entry (indices as if the groups were pruned one after
    another, in order) and its plan in original ids, from the flat layout of the batch's members."""
    seq = batch.sequential().tolist()
    ids = batch.original_ids(graph)
    bounds = batch.start.tolist()
    # (name, fn name, side, dim) of the entries of each merged space's members, then of each pair's
    heads = [(s.name, fn_name(s.handler), s.side, None if s.dim is None else int(s.dim)) for s in batch.merged]
    loose = any(h[3] is not None for h in heads)
    heads = [heads[r] for r in batch.rank.tolist()]
    cumulative = np.zeros(0, dtype=np.int64)
    p = 0
    for part in parts:
        n = part.pop("members")
        members = [{"name": h[0], "fn": h[1], "side": h[2], "idxs": seq[a:b]}
                   for h, a, b in zip(heads[p:p + n], bounds[p:p + n], bounds[p + 1:p + n + 1])]
        if loose:  # a loose parameter: the tensor dim that shrank
            for entry, h in zip(members, heads[p:p + n]):
                if h[3] is not None:
                    entry["dim"] = h[3]
        # the plan in original ids, as flat arrays (listed when a split needs it)
        plan_ids = _PartPlan(batch.spaces[p:p + n], ids[bounds[p]:bounds[p + n]], batch.start[p:p + n + 1] - bounds[p])
        p += n
        root = part["root_space"]
        entry = {"root": root.name, "root_fn": fn_name(root.handler), "members": members}
        if graph.state.attr_spaces:  # the size attributes' values once this group and the ones before it are pruned
            cumulative = np.concatenate([cumulative, part["killed"]])
            updates = attribute_updates(graph, cumulative, root.label)
            if updates:  # only those this group changes (as its own record would list them), at their values now
                own = _attributes_hit(graph, part["killed"])
                updates = [u for u in updates if id(u[0]) in own]
            if updates:
                entry["attributes"] = [dict(ref.as_dict(), value=int(new)) for ref, _, new in updates]
        part["entry"], part["plan"] = entry, plan_ids


class _PartPlan:
    """A plan in original ids (a record's, or one part's of a batched cut): ``(space index, original ids its pruner
    removes)`` per member, in member order, listed on iteration from flat arrays (``ids[bounds[k]:bounds[k + 1]]`` for
    ``spaces[k]``): a batch of thousands of members keeps a few arrays, not a tuple per member."""

    __slots__ = ("spaces", "ids", "bounds")

    def __init__(self, spaces: List[ChannelSpace], ids: np.ndarray, bounds: np.ndarray):
        self.spaces, self.ids, self.bounds = spaces, ids, bounds

    def __iter__(self):
        b = self.bounds.tolist()
        ids = self.ids
        return iter([(s.index, ids[lo:hi]) for s, lo, hi in zip(self.spaces, b, b[1:])])

    def __len__(self) -> int:
        return len(self.spaces)


def _attributes_hit(graph, killed: np.ndarray) -> set:
    """``id`` of each size attribute (its ``AttributeRef``) that removing channel ids ``killed`` changes."""
    killed = np.sort(killed)
    hit = set()
    for s in graph.state.attr_spaces:
        lo, hi = np.searchsorted(killed, (s.offset, s.offset + s.size))
        if np.count_nonzero(graph.alive_mask[killed[lo:hi]]):
            hit.add(id(s.owner.ref))
    return hit


def _batch_label(parts: List[dict]) -> str:
    names = [p["root_space"].label for p in parts[:3]]
    more = f" and {len(parts) - 3} more" if len(parts) > 3 else ""
    return ", ".join(names) + more


def split_record(graph, record: PruneRecord) -> List[PruneRecord]:
    """Turn the last record, a batched cut, into one record per group (the same channels, the same model): undo
    it, then prune its groups again one after another. Returns the new records (``[record]`` unchanged when it is
    not a batched cut). Used when a post-prune check must find which of the groups breaks the model."""
    if record.parts is None:
        return [record]
    parts = record.parts
    undo(graph, record)
    done: List[PruneRecord] = []
    ok = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutputShapeWarning)  # said when the batch was pruned
            for part in parts:
                plan = []
                for index, ids in part["plan"]:
                    s = graph.spaces[index]
                    cur = s.rank[ids - s.offset]
                    plan.append((s, list(checked_idxs(s, GroupItem(None, cur, cur)))))
                killed = np.asarray(part["killed"], dtype=np.int64)
                space = part["root_space"]
                attributes = attribute_updates(graph, killed, space.label)
                rec = _apply_plan(graph, space, plan, killed, False, True, attributes)
                rec.root_space = space
                done.append(rec)
        ok = True
    finally:
        if not ok:  # put the batch back as it was
            for rec in reversed(done):
                finish(_undo_if_last, graph, rec)
            record.undone = False
            finish(_reapply, graph, record)
    return done


def _undo_if_last(graph, rec: PruneRecord) -> None:
    if graph.history and graph.history[-1] is rec and not rec.undone:
        undo(graph, rec)


def _reapply(graph, record: PruneRecord) -> None:
    record.undone = True
    new = redo(graph, record)
    # the caller still holds ``record``: let it stand for the re-applied cut
    graph.history[-1] = record
    record.undone, record._snapshot, record._killed = False, new._snapshot, new._killed
    graph.state.undoable = [record if r is new else r for r in graph.state.undoable]


def _apply_plan(graph, root: ChannelSpace, plan: list, killed: np.ndarray, exact: bool,
                record_history: bool, attributes: List[tuple], parts: Optional[List[dict]] = None) -> PruneRecord:
    """Run every member's pruner, set the size ``attributes`` (``(AttributeRef, old, new)``), mark ``killed``
    removed and record it: all of it, or (on any exception, an interrupt included) none of it. ``parts``: the
    groups of a batched cut (:func:`prune_groups`), recorded with it."""
    label = root.label if parts is None else _batch_label(parts)
    snapshot = _snapshot(graph, [s for s, _ in plan])
    before = (len(graph.history), len(model_history(graph.model)), graph.state.version, torch.is_grad_enabled())
    plan_ids = _plan_ids(graph, plan)
    classes = graph.classes
    changed_outputs = output_changes_message(graph, killed) if classes.at_output[classes.of[killed]].any() else None
    done = False
    tied = graph.tied
    originals = held_tensors(tied)
    specified, rest = _split_cuts(plan)
    cuts = ComposedCuts(_cut_twice(rest))  # a layer cut on both sides: each tensor copied once
    try:
        try:
            cut_layers(specified)  # first, on the layers the plan's checks saw: each tensor copied once
            with composed_cuts(cuts):
                for s, idxs in rest:
                    _prune_member(graph, s, idxs)
                cuts.flush()
            retie(tied, originals, label)  # a tied parameter stays one tensor
            for ref, _, new in attributes:
                ref.set(new)
        except Exception as exc:
            raise PruningError(f"pruning the group rooted at {label} failed ({type(exc).__name__}: {exc}); the model "
                               "was restored unchanged") from exc
        graph.alive_mask[killed] = False
        for s in [s for s, _ in plan] + graph.state.attr_spaces:  # size attributes: hidden members, counts changed too
            s.invalidate()
        graph.state.version += 1
        rec = PruneRecord(graph, root.name, fn_name(root.handler), _Plan(plan), killed, snapshot, attributes)
        rec.exact, rec.root_space, rec._plan, rec.parts = exact, root, plan_ids, parts
        if record_history:
            graph.history.append(rec)
            model_history(graph.model).extend(rec.entries())
        else:
            graph.state.unrecorded_prunings += 1
        done = True
    finally:
        if not done:
            finish(_roll_back, graph, snapshot, killed, [s for s, _ in plan] + graph.state.attr_spaces, before, attributes,
                   cuts)
    _keep_record(graph, rec, record_history)
    sync_model(graph, record=snapshot[2] if rec._snapshot is not None else None)
    if lint_enabled():
        graph.lint()
    if changed_outputs:
        warnings.warn(f"prune_explorer: pruning the group rooted at {label} changes the model's outputs: "
                      f"{changed_outputs}. Code that relies on their sizes must follow.", OutputShapeWarning,
                      stacklevel=5)
    return rec


#: the base class's ``prune_out_channels`` / ``prune_in_channels`` (check, then remove): the side each one cuts
_BASE_SIDES = {BasePruningFunc.prune_out_channels: "out", BasePruningFunc.prune_in_channels: "in"}


def _split_cuts(plan: list) -> tuple:
    """``(specified, rest)``: the cuts :func:`~prune_explorer.layers.batch_cut.cut_layers` makes from their pruners'
    specs, as ``(layer, pruner, side, checked indices)`` (a module's member whose handler is its pruner's base
    ``prune_out_channels`` / ``prune_in_channels``, the pruner's own class declaring ``COMPOSABLE_CUTS``, its
    indices checked by that pruner); the other members ``(space, indices)`` in plan order (with every member of a
    layer one of them cuts: a layer is cut one way)."""
    sides = []
    for s, idxs in plan:
        side = None
        if s.dim is None and type(idxs) is CheckedIndices:
            pruner, handler = s.pruner, s.handler
            if getattr(handler, "__self__", None) is pruner and composes_cuts(pruner):
                side = _BASE_SIDES.get(handler.__func__)
        sides.append(side)
    if None in sides:
        plain = {id(s.owner) for (s, _), side in zip(plan, sides) if side is None}
        sides = [None if side is None or id(s.owner) in plain else side for (s, _), side in zip(plan, sides)]
    specified = [(s.owner, s.pruner, side, idxs) for (s, idxs), side in zip(plan, sides) if side is not None]
    return specified, [member for member, side in zip(plan, sides) if side is None]


def _plan_ids(graph, plan: list) -> "_PartPlan":
    """The plan in original ids, ``(space index, s.gids(s.alive_idx[idxs]))`` per member on iteration, worked out for
    every member at once from the global alive mask (one member at a time where a pruner left indices unchecked)."""
    spaces = [s for s, _ in plan]
    arrays = [index_array(idxs) for _, idxs in plan]
    n = len(arrays)
    lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=n)
    bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=bounds[1:])
    values = np.concatenate(arrays) if n else np.zeros(0, dtype=np.int64)
    alive_ids = np.flatnonzero(graph.alive_mask)
    offsets = np.fromiter((s.offset for s in spaces), dtype=np.int64, count=n)
    sizes = np.fromiter((s.size for s in spaces), dtype=np.int64, count=n)
    base = np.searchsorted(alive_ids, offsets)
    count = np.searchsorted(alive_ids, offsets + sizes) - base
    if values.size and (int(values.min()) < 0 or bool((values >= np.repeat(count, lengths)).any())):
        ids = np.concatenate([s.gids(s.alive_idx[a]) for s, a in zip(spaces, arrays)])
    else:
        ids = alive_ids[np.repeat(base, lengths) + values]
    return _PartPlan(spaces, ids, bounds)


def _cut_twice(plan: list) -> set:
    """The ids of the layers the plan cuts through two or more of their channel spaces (a conv's output channels
    for one group, its input channels for another), when their pruners compose cuts
    (:func:`~prune_explorer.layers.base.composes_cuts`): their tensors are copied once, with every cut composed."""
    count: dict = {}
    refused = set()
    for s, _ in plan:
        if s.dim is None:
            key = id(s.owner)
            count[key] = count.get(key, 0) + 1
            if not (composes_cuts(s.pruner) and getattr(s.handler, "__self__", None) is s.pruner):
                refused.add(key)
    return {key for key, n in count.items() if n > 1 and key not in refused}


def _roll_back(graph, snapshot, killed: np.ndarray, spaces: List[ChannelSpace], before: tuple,
               attributes: List[tuple], cuts: Optional[ComposedCuts] = None) -> None:
    """Put the model and the graph back as they were before a pruning that did not complete (idempotent)."""
    if cuts is not None:
        cuts.close()  # (an interrupt in the exit of its context may have left it active)
    n_history, n_model_history, version, grad_enabled = before
    torch.set_grad_enabled(grad_enabled)  # an interrupt between a ``with torch.no_grad()`` body and its exit skips the exit
    _restore(snapshot)
    for ref, old, _ in attributes:
        ref.set(old)
    graph.alive_mask[killed] = True
    for s in spaces:
        s.invalidate()
    del graph.history[n_history:]
    del model_history(graph.model)[n_model_history:]
    graph.state.version = max(graph.state.version, version) + 1


class _Plan:
    """A pruning's plan, kept by its record until :attr:`PruneRecord.members` is read: the member spaces and the
    indices each lost (the pruners' checked lists, or their ``int64`` arrays where they carry one: arrays are no
    work for the cyclic garbage collector; neither is changed afterwards)."""

    __slots__ = ("spaces", "idxs")

    def __init__(self, plan: list):
        self.spaces = [s for s, _ in plan]
        self.idxs = [i.array if type(i) is CheckedIndices and i.array is not None else i for _, i in plan]


def _member_entry(s: ChannelSpace, idxs) -> dict:
    entry = {"name": s.name, "fn": fn_name(s.handler), "side": s.side,
             "idxs": list(idxs) if isinstance(idxs, CheckedIndices) else
             (idxs.tolist() if isinstance(idxs, np.ndarray) else [int(i) for i in idxs])}
    if s.dim is not None:
        entry["dim"] = int(s.dim)  # a loose parameter: the tensor dim that shrank
    return entry


def _keep_record(graph, rec: PruneRecord, record_history: bool) -> None:
    """Keep the replaced tensors only for the last ``graph.undo_depth`` records (they would double the memory of a
    large model), or all of them inside :func:`keep_undoable`."""
    if not record_history or _undo_limit(graph) <= 0:
        rec._snapshot = None
    graph.state.undoable = [r for r in graph.state.undoable if r._snapshot is not None and not r.undone]
    if rec._snapshot is not None:
        graph.state.undoable.append(rec)
    _trim_undoable(graph)


def _undo_limit(graph) -> int:
    return 1 << 62 if graph.state.keep_undo else graph.undo_depth


def _trim_undoable(graph) -> None:
    while len(graph.state.undoable) > max(0, _undo_limit(graph)):
        graph.state.undoable.pop(0)._snapshot = None


@contextlib.contextmanager
def keep_undoable(graph, keep: bool = True) -> Iterator:
    """See :meth:`DependencyGraph.undoable <prune_explorer.graph.dependency_graph.DependencyGraph.undoable>`."""
    if not keep:
        yield graph
        return
    graph.state.keep_undo += 1
    try:
        yield graph
    finally:
        graph.state.keep_undo -= 1
        if not graph.state.keep_undo:
            _trim_undoable(graph)


def undo(graph, record: Optional[PruneRecord] = None) -> None:
    """See :meth:`DependencyGraph.undo <prune_explorer.graph.dependency_graph.DependencyGraph.undo>`."""
    if not graph.history:
        raise PruningError("nothing to undo: no group was pruned with record_history=True")
    if record is None:
        record = graph.history[-1]
    if record.undone:
        raise PruningError("this pruning was already undone")
    if record is not graph.history[-1]:
        raise PruningError("only the most recent pruning can be undone (undo later ones first)")
    if isinstance(record, EditRecord):
        undo_edit(graph, record)
        _after_edit(graph)
        return
    if record._snapshot is None:
        raise PruningError(
            "this pruning cannot be undone: set DG.undo_depth = N (N > 0) before pruning to keep what undo needs"
        )
    hist = model_history(graph.model)
    entries = record.entries()
    n = len(entries)
    lengths = (len(graph.history) - 1, len(hist) - n if len(hist) >= n and hist[len(hist) - n:] == entries else len(hist))
    finish(_undo, graph, record, lengths)  # all of it, even if an interrupt lands in the middle
    sync_model(graph)
    if lint_enabled():
        graph.lint()


def _undo(graph, record: PruneRecord, lengths: tuple) -> None:
    _restore(record._snapshot)
    for ref, old, _ in record.attributes:
        ref.set(old)
    graph.alive_mask[record._killed] = True
    for s in graph.spaces:
        s.invalidate()
    graph.state.version += 1
    record.undone = True
    del graph.history[lengths[0]:]
    del model_history(graph.model)[lengths[1]:]


def apply_edit(graph, edit) -> EditRecord:
    """Apply a model edit that is not a channel cut (:mod:`.model_edits`) and record it in the graph's history."""
    rec = record_edit(graph, edit)
    _after_edit(graph)
    return rec


def _after_edit(graph) -> None:
    sync_model(graph)
    if lint_enabled():
        graph.lint()


def sync_model(graph, record: Optional[list] = None) -> None:
    """Keep what depends on module sizes in step after a pruning or an undo: attention modules' head counts, and a
    Hugging Face model's config (a stale config only warns: a valid pruning is never undone for its sake). A model
    whose trace met no attention product and that has no ``config`` attribute has neither: :mod:`prune_explorer.hf`
    and :mod:`prune_explorer.attention` are not used for it.

    ``record``: a list that receives the prior state of every object the sync changed (:func:`.snapshot.snapshot_own`
    entries), for undo. The sync is not its own inverse (a temperature folded into a query projection, a config's
    LongRoPE factors stay once written), so undo restores what it changed instead of syncing back."""
    model = graph.model
    has_config = getattr(model, "config", None) is not None
    attention = graph.head_splits or graph.has_attention_products
    hf = None
    if has_config:
        from ... import hf as _hf

        hf = _hf if _hf.is_hf_model(model) else None
    if attention:
        from ...attention.head_bookkeeping import attention_candidates

        if graph.state.attention_candidates is None:  # the module tree never changes with pruning: looked for once
            graph.state.attention_candidates = attention_candidates(model)
    if hf is not None and graph.state.hf_modules is None:  # likewise, scanned once per graph
        try:
            graph.state.hf_modules = hf.scan_modules(model)
        except Exception:
            pass
    before = None
    if record is not None and (attention or hf is not None):
        targets = [m for _, m in (graph.state.attention_candidates or ())]  # head counts: their own attributes
        if hf is not None and graph.state.hf_modules is not None:
            targets += hf.sync_targets(model, graph.state.hf_modules)
        before = snapshot_own(targets)
    try:
        _sync(graph, model, attention, hf)
    finally:
        if before is not None:
            record.extend(changed_since(before))


def _sync(graph, model, attention: bool, hf) -> None:
    if attention:
        from ...attention.head_bookkeeping import sync_attention_modules

        sync_attention_modules(model, graph.read_attributes, graph.state.attention_candidates)
    if hf is not None:
        try:
            if graph.state.hf_modules is None:
                graph.state.hf_modules = hf.scan_modules(model)
            hf.sync_config(model, graph.read_attributes, graph.state.hf_modules)
        except Exception as exc:
            warnings.warn(f"prune_explorer: model.config could not be updated after pruning "
                          f"({type(exc).__name__}: {exc}); check it with pe.hf.check_config_round_trip(model)")
