"""Groups built by hand: members and units listed explicitly, pruned exactly as listed with the graph's machinery
(validation, rollback, history, undo). The pruner's head-dim groups (:mod:`prune_explorer.attention.proposals`) are
such groups.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ...errors import PruningError
from .group import Group, GroupItem

__all__ = ["ExplicitGroup", "force_prune"]


class ExplicitGroup(Group):
    """A group whose members and units are listed explicitly instead of derived from the graph's channel classes.

    It behaves like a :class:`~prune_explorer.graph.Group` (iteration, ``root_idxs``, ``units``, ``details()``);
    ``select(idxs)`` keeps the given root channels plus their whole units, and ``prune()`` removes the listed
    channels of every member with :func:`force_prune`.
    """

    def __init__(self, graph, root_space, items: List[GroupItem], units: List[List[int]], kind: str = "explicit"):
        super().__init__(graph, root_space, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        self._explicit_items = items
        self._explicit_units = units
        self.kind = kind
        self.on_pruned = None  # callback(group, record) set by the owner (e.g. to update head counts)
        #: ``group -> [(AttributeRef, old, new)]``: size attributes pruning this group rewrites (set by the owner)
        self.attribute_updates = None

    @property
    def items(self) -> List[GroupItem]:
        return self._explicit_items

    @property
    def units(self) -> List[List[int]]:
        return self._explicit_units

    def select(self, idxs: Sequence[int], validate: bool = True) -> "ExplicitGroup":
        wanted = {int(i) for i in (idxs.tolist() if hasattr(idxs, "tolist") else idxs)}
        cand = set(self.root_idxs)
        bad = sorted(wanted - cand)
        if bad:
            raise PruningError(
                f"channels {bad[:5]} of {self.root_space.label} are not candidates of this {self.kind} group "
                f"(candidates: {len(cand)} channels; see group.root_idxs)"
            )
        chosen = set()
        for u in self.units:
            if any(i in wanted for i in u):
                chosen.update(u)
        items = []
        for it in self.items:
            keep = [(i, r) for i, r in zip(it.idxs, it.root_idxs) if r in chosen]
            if keep or it is self.items[0]:
                items.append(GroupItem(it.dep, [i for i, _ in keep], [r for _, r in keep]))
        units = [u for u in self.units if set(u) <= chosen]
        sub = ExplicitGroup(self._graph, self.root_space, items, units, kind=self.kind)
        sub.on_pruned = self.on_pruned
        sub.attribute_updates = self.attribute_updates
        return sub

    def prune(self, idxs: Optional[Sequence[int]] = None, record_history: bool = True):
        group = self if idxs is None else self.select(idxs)
        rec = force_prune(self._graph, group, record_history=record_history)
        if group.on_pruned is not None:
            group.on_pruned(group, rec)
        return rec


def force_prune(graph, group: Group, record_history: bool = True):
    """Remove exactly the channels listed in ``group``'s items, atomically, and keep the graph in step.

    ``DG.prune_group(group, exact=True)``: the graph validates every member, prunes them all or none, marks exactly
    the listed channels as removed, records the history and makes the record undoable (``DG.undo()`` revives them).
    """
    updates = getattr(group, "attribute_updates", None)
    attributes = updates(group) if updates is not None else None
    return graph.prune_group(group, record_history=record_history, exact=True, attributes=attributes)
