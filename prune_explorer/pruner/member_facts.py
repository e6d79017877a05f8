"""A group's members as arrays: what the guards and the member constraints read, without a rule call per member.

:class:`SpaceFacts` keeps, for the channel spaces of one graph (arrays indexed by ``space.index``), each space's
channel count when the pruner was built and its channel multiple (:func:`channel_multiple`, cached while
``graph.version`` is unchanged). :meth:`SpaceFacts.members` gives a group's :class:`MemberFacts`, one entry per
member in item order: its space, the channels it loses, its channel count now (as the cuts held for this step leave
it: :func:`~prune_explorer.importance.held.current_size`), its initial count and its multiple. A proposal reads them
once; :func:`~.guards.guard_refusal`, :func:`~.units.member_constraints` and :func:`~.units.tied_units` compare
them as arrays.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..graph.model.group_members import layout_of
from ..importance.held import active

__all__ = ["SpaceFacts", "MemberFacts", "channel_multiple"]


def channel_multiple(space) -> int:
    """The multiple a member's channel count must keep (attention heads, GroupNorm groups...); 1 when none."""
    pruner = space.pruner
    if space.dim is None and hasattr(pruner, "channel_multiple"):
        try:
            return int(pruner.channel_multiple(space.owner, "in" if space.side == "in" else "out"))
        except Exception:  # noqa: BLE001 - a layer that cannot say has no multiple
            return 1
    return 1


class MemberFacts:
    """One group's members, in item order (``n`` members; every array is ``int64 [n]``):

    * ``spaces``: their channel spaces (a list); ``index``: the spaces' indices;
    * ``lost``: how many channels each member loses (``len(item.idxs)``);
    * ``sizes``: each space's channel count now (held cuts applied), in channels;
    * ``multiples``: each space's channel multiple (1: none);
    * ``initial``: each space's channel count when the pruner was built (read on demand).
    """

    __slots__ = ("spaces", "index", "lost", "sizes", "multiples", "facts")

    def __init__(self, spaces: List, index: np.ndarray, lost: np.ndarray, sizes: np.ndarray, multiples: np.ndarray,
                 facts: "SpaceFacts"):
        self.spaces, self.index, self.lost, self.sizes, self.multiples = spaces, index, lost, sizes, multiples
        self.facts = facts  # the graph's SpaceFacts they were read from

    @property
    def initial(self) -> np.ndarray:
        return self.facts.initial[self.index]

    def below(self, max_pruning_ratio: float) -> np.ndarray:
        """``bool [n]``: the member has one channel or fewer, or fewer than ``initial * (1 - max_pruning_ratio)``
        (the guards' two tests, as one comparison: for an integer count, ``c <= 1`` is ``c < 2``)."""
        return self.sizes < self.facts.floors(max_pruning_ratio)[self.index]

    def signature(self) -> bytes:
        """What an importance score depends on besides the weights: each member's space, size and channel count."""
        return np.stack([self.index, self.sizes, self.lost]).tobytes()


class SpaceFacts:
    """Per channel space of ``graph``: initial channel counts (``initial_sizes``: space index -> channels when the
    pruner was built; a space it lacks counts ``space.size``), channel counts and channel multiples (filled on first
    use, kept while ``graph.version`` is unchanged)."""

    def __init__(self, graph, initial_sizes: Dict[int, int]):
        self.graph = graph
        spaces = graph.spaces
        self.initial = np.fromiter((initial_sizes.get(s.index, s.size) for s in spaces), dtype=np.int64,
                                   count=len(spaces))
        self._seen_version = None
        self._table = None  # [n_spaces, 2] int64: (channel count, channel multiple), -1: not read yet at this version
        self._floors = (None, None)  # (max_pruning_ratio, floors)

    def floors(self, max_pruning_ratio: float) -> np.ndarray:
        """``float64 [n_spaces]``: ``max(2, initial * (1 - max_pruning_ratio))``, the channel count a space must
        keep for the guards to let its group be pruned (kept while the ratio is the same)."""
        if self._floors[0] != max_pruning_ratio:
            self._floors = (max_pruning_ratio, np.fmax(2.0, self.initial * (1 - max_pruning_ratio)))
        return self._floors[1]

    def read(self, index: np.ndarray) -> np.ndarray:
        """``int64 [n, 2]``: the channel count (held cuts not applied) and the channel multiple of the graph's
        spaces ``index`` (``space.index`` values), each read once per graph version."""
        version = self.graph.version
        if version != self._seen_version:
            self._table = np.full((self.initial.size, 2), -1, dtype=np.int64)
            self._seen_version = version
        table = self._table
        out = table[index]
        missing = (out[:, 1] < 0).nonzero()[0]  # rows not read yet at this version (both columns -1)
        if missing.size:
            spaces = self.graph.spaces
            for k in missing.tolist():
                s = spaces[int(index[k])]
                table[index[k]] = out[k] = (s.current_size, channel_multiple(s))
        return out

    def members(self, group) -> MemberFacts:
        """The :class:`MemberFacts` of ``group`` (a group of this graph) as the model and the held cuts are now."""
        layout = layout_of(group)  # a Group's members as flat arrays (no loop over items)
        items, index, bounds = layout.items, layout.space, layout.bounds
        lost = bounds[1:] - bounds[:-1]
        spaces = [it.dep.space for it in items]
        facts = self.read(index)
        held = active()
        if held:  # a space's held cuts change with every group held: read each (held.current_size)
            sizes = np.fromiter(map(held.current_size, spaces), dtype=np.int64, count=len(spaces))
        else:
            sizes = facts[:, 0]
        return MemberFacts(spaces, index, lost, sizes, facts[:, 1], self)
