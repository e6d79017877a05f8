"""Pruning a group and undoing it: the all-or-nothing execution, the :class:`PruneRecord` it leaves, the history.

:func:`prune_group` validates every member with its pruner first, snapshots the members (references, not copies:
pruning assigns new tensors, see :mod:`.snapshot`), prunes them all, and on any error puts every member back and
raises. Then it marks the group's channels dead in the graph's alive mask, records a :class:`PruneRecord` (JSON-able
entry appended to the model's history, :func:`model_history`) and keeps the snapshot for :func:`undo` while the
graph's ``undo_depth`` allows.
"""

from __future__ import annotations

import warnings
from typing import List, Optional

import numpy as np
import torch.nn as nn

from ..errors import OutputShapeWarning, PruningError
from ..layers.base import CheckedIndices
from .channel_space import SIDE_IN, SIDE_OUT, ChannelSpace
from .group import Group, GroupItem, fn_name
from .output_changes import output_changes_message
from .snapshot import restore_modules, snapshot_modules

__all__ = ["HISTORY_ATTR", "model_history", "PruneRecord", "prune_group", "undo"]

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

    def __init__(self, graph, group_root: str, root_fn: str, members: List[dict], killed: np.ndarray, snapshot):
        self.graph = graph
        self.root = group_root
        self.root_fn = root_fn
        self.members = members  # [{"name", "fn", "side", "idxs"}] with current indices at pruning time
        self._killed = killed
        self._snapshot = snapshot
        self.undone = False
        self.exact = False  # True for a hand-built group pruned with prune_group(exact=True)

    def as_dict(self) -> dict:
        return {"root": self.root, "root_fn": self.root_fn, "members": self.members}

    @property
    def removed_ids(self) -> np.ndarray:
        """Global channel ids this pruning removed (what :meth:`undo` brings back)."""
        return self._killed

    def undo(self) -> None:
        """Restore the model and the graph exactly as they were before this pruning (last record first)."""
        self.graph.undo(self)

    def __repr__(self):
        n = sum(len(m["idxs"]) for m in self.members)
        return f"PruneRecord(root={self.root}, members={len(self.members)}, channels={n})"


def checked_idxs(s: ChannelSpace, item: GroupItem):
    """The member's indices as its pruner validates them (raises :class:`PruningError` if it refuses them)."""
    check = getattr(s.pruner, "check", None)
    if check is None:
        return item.idxs
    try:
        return check(s.owner, item.idx_array, SIDE_IN if s.side == SIDE_IN else SIDE_OUT)
    except PruningError:
        raise
    except Exception:
        if type(s.pruner).__module__.startswith("prune_explorer."):
            raise
        # a user's pruner whose channel count cannot be read (Torch-Pruning never asks for it): the graph's
        # indices are already checked against the traced size
        return item.idxs


def _snapshot(graph, spaces: List[ChannelSpace]):
    params = []
    for s in spaces:
        if s.dim is not None:
            owner, attr = graph._param_attr[id(s.owner)]
            params.append((owner, attr, s.owner, [o for o in graph.spaces if o.owner is s.owner]))
    return snapshot_modules(s.owner for s in spaces if s.dim is None), params


def _restore(snapshot) -> None:
    mods, params = snapshot
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
    owner, attr = graph._param_attr[id(s.owner)]
    new = s.handler(s.owner, idxs)
    old_id = id(s.owner)
    setattr(owner, attr, new)
    graph._param_attr[id(new)] = (owner, attr)
    for other in graph.spaces:
        if id(other.owner) == old_id:
            other.owner = new


def prune_group(graph, group: Group, record_history: bool = True, exact: bool = False) -> PruneRecord:
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
    snapshot = _snapshot(graph, [s for s, _ in plan])
    try:
        for s, idxs in plan:
            _prune_member(graph, s, idxs)
    except Exception as exc:
        _restore(snapshot)
        raise PruningError(
            f"pruning the group rooted at {label} failed ({type(exc).__name__}: {exc}); the model was restored unchanged"
        ) from exc
    classes = graph.classes
    killed = classes.members(group.classes, graph.alive_mask)
    if exact:
        killed = np.unique(np.concatenate([killed] + listed))
    changed_outputs = output_changes_message(graph, killed) if classes.at_output[classes.of[killed]].any() else None
    graph.alive_mask[killed] = False
    for s, _ in plan:
        s.invalidate()
    graph._version += 1
    rec = PruneRecord(graph, group.root_space.name, fn_name(group.root_space.handler),
                      [_member_entry(s, idxs) for s, idxs in plan], killed, snapshot)
    rec.exact = exact
    _keep_record(graph, rec, record_history)
    if changed_outputs:
        warnings.warn(f"prune_explorer: pruning the group rooted at {label} changes the model's outputs: "
                      f"{changed_outputs}. Code that relies on their sizes must follow.", OutputShapeWarning,
                      stacklevel=4)
    return rec


def _member_entry(s: ChannelSpace, idxs) -> dict:
    entry = {"name": s.name, "fn": fn_name(s.handler), "side": s.side,
             "idxs": list(idxs) if isinstance(idxs, CheckedIndices) else [int(i) for i in idxs]}
    if s.dim is not None:
        entry["dim"] = int(s.dim)  # a loose parameter: the tensor dim that shrank
    return entry


def _keep_record(graph, rec: PruneRecord, record_history: bool) -> None:
    """Append ``rec`` to the history; keep the replaced tensors only for the last ``graph.undo_depth`` records (they
    would double the memory of a large model)."""
    if record_history:
        graph.history.append(rec)
        model_history(graph.model).append(rec.as_dict())
    if not record_history or graph.undo_depth <= 0:
        rec._snapshot = None
    graph._undoable = [r for r in graph._undoable if r._snapshot is not None and not r.undone]
    if rec._snapshot is not None:
        graph._undoable.append(rec)
    while len(graph._undoable) > max(0, graph.undo_depth):
        graph._undoable.pop(0)._snapshot = None


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
    if record._snapshot is None:
        raise PruningError(
            "this pruning cannot be undone: set DG.undo_depth = N (N > 0) before pruning to keep what undo needs"
        )
    _restore(record._snapshot)
    graph.alive_mask[record._killed] = True
    for s in graph.spaces:
        s.invalidate()
    graph._version += 1
    record.undone = True
    graph.history.pop()
    hist = model_history(graph.model)
    if hist and hist[-1] == record.as_dict():
        hist.pop()
