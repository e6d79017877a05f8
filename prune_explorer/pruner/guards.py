"""What the pruners refuse to do, and the record they keep of it.

Guards (applied to every group before anything is removed, as in Torch-Pruning's ``BasePruner``):

* **max_pruning_ratio**: a group is skipped when one of its members already has fewer channels than
  ``initial * (1 - max_pruning_ratio)``; otherwise the root layer is not cut below ``int(initial * (1 -
  max_pruning_ratio))`` channels (global pruning included).
* **single channel**: a group is skipped when one of its members is down to one channel, and no layer is ever cut
  below one channel (a group never removes every channel of a member). Torch-Pruning's guard is the first half
  ("never prune a layer that has 1 channel"); the second half is what makes it hold under global ranking too.
* **multiples and units**: removals keep ``round_to`` and each member's ``channel_multiple`` (attention heads,
  GroupNorm groups) satisfied and take whole units (``group.units``: channels a grouped conv or a declared head
  structure ties together); the count is rounded *down* (fewer channels removed) to the nearest feasible one, as
  Torch-Pruning rounds. When rounding down would remove nothing although the target asks for channels (units
  larger than the target, e.g. a depthwise conv with a channel multiplier), the nearest feasible count is taken
  instead, a larger one on a tie (:func:`chosen_prefix`), so a group is only left alone when removing nothing is
  truly the nearest choice.

Every group that a step does not prune is recorded as a :class:`SkippedGroup` in ``pruner.skipped`` with its
reason (a guard, an importance that returned None, a target already reached, a user who did not accept the
proposal in interactive mode...), never silently dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .member_facts import MemberFacts, SpaceFacts

__all__ = ["SkippedGroup", "guard_refusal", "root_limits", "feasible_units", "feasible_prefixes", "chosen_prefix", "Prefixes",
           "GUARD", "IMPORTANCE", "TARGET", "CONSTRAINT", "NOT_ACCEPTED", "HEADS", "ERROR", "CHECK"]

# the kinds of SkippedGroup (why a step left a group alone)
GUARD = "guard"  # max_pruning_ratio / single-channel guard
IMPORTANCE = "importance"  # the criterion returned None for the group
TARGET = "target"  # nothing to remove at this step (the group is at or below its target)
CONSTRAINT = "constraint"  # round_to / multiples / units allow no removal near the target
NOT_ACCEPTED = "user"  # interactive: the user did not call group.prune() (not to be confused with a "user:" scope)
HEADS = "heads"  # attention head structure not handled (prune_head_dims=False, unrecognised block)
ERROR = "error"  # a layer pruner refused the proposal (the group was rolled back; non-interactive step)
CHECK = "check"  # pruned, but the pruned model did not run (post-prune check): the group was rolled back


@dataclass
class SkippedGroup:
    """One group a pruning step left alone: ``root`` (qualified name of the root layer), ``step``, ``kind`` (one of
    the constants of this module), ``reason`` (a sentence), ``scope`` and ``pruning_ratio`` (the target it had)."""

    root: str
    step: int
    kind: str
    reason: str
    scope: Optional[str] = None
    pruning_ratio: Optional[float] = None

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"step {self.step}: {self.root} skipped ({self.kind}): {self.reason}"


def guard_refusal(group, initial_sizes: Dict[int, int], max_pruning_ratio: float,
                  members: Optional[MemberFacts] = None) -> Optional[str]:
    """Why the guards refuse ``group`` (None when it may be pruned), naming its first member that fails.
    ``initial_sizes``: channel space index -> channels when the pruner was built; ``members``: the group's
    :class:`~.member_facts.MemberFacts` when the caller has them (read from ``group`` otherwise)."""
    if members is None:
        members = SpaceFacts(group.graph, initial_sizes).members(group)
    bad = members.below(max_pruning_ratio)  # channel counts as the cuts held for this step leave them
    if not np.count_nonzero(bad):
        return None
    k = int(np.argmax(bad))
    label, cur, init = members.spaces[k].label, int(members.sizes[k]), int(members.initial[k])
    if cur <= 1:
        return f"single-channel guard: {label} has {cur} channel"
    return (f"max_pruning_ratio guard: {label} has {cur} channels, fewer than {init} * (1 - "
            f"{max_pruning_ratio}) = {init * (1 - max_pruning_ratio):g}")


def root_limits(group, initial_sizes: Dict[int, int], max_pruning_ratio: float, round_to: Optional[int],
                keep_one_unit: bool = False) -> Tuple[int, int, Optional[int]]:
    """``(root channels now, fewest root channels the group may keep, round_to)``. ``keep_one_unit``: the group
    must keep a whole unit (an attention group keeps one head group, or one dim in every head; round_to does not
    apply to it)."""
    s = group.root_space
    init = initial_sizes.get(s.index, s.size)
    min_keep = max(1, int(init * (1 - max_pruning_ratio)))
    if keep_one_unit:
        u = group.units
        return s.current_size, max(min_keep, len(u[0]) if u else 1), None
    return s.current_size, min_keep, round_to


def feasible_prefixes(unit_sizes, root_current: int, min_keep: int, round_to, member_counts=()):
    """``(ok, cum)`` for the ranked units: ``cum[k]`` root channels are removed by the first ``k`` units, and
    ``ok[k]`` says whether removing them keeps every constraint (see :func:`feasible_units`; ``ok[0]`` is True)."""
    sizes = unit_sizes if isinstance(unit_sizes, np.ndarray) else np.fromiter(unit_sizes, dtype=np.int64)
    cum = np.zeros(sizes.size + 1, dtype=np.result_type(sizes.dtype, np.int64))
    np.add.accumulate(sizes, out=cum[1:], dtype=cum.dtype)
    remaining = root_current - cum
    ok = remaining >= min_keep
    if round_to and round_to > 1:
        ok &= (remaining % round_to == 0) | (cum == 0)
    for counts, multiple, size in member_counts:
        counts = np.asarray(counts, dtype=np.int64)
        if multiple > 1:
            ok &= counts % multiple == 0
        ok &= counts < size
    ok[0] = True
    return ok, cum


def feasible_units(unit_sizes, n_target: int, root_current: int, min_keep: int, round_to, member_counts=()) -> int:
    """How many of the ranked units (a prefix of ``unit_sizes``) can be removed: the longest prefix that removes
    at most ``n_target`` root channels and keeps every constraint:

    * the root keeps at least ``min_keep`` channels, and a multiple of ``round_to`` when given;
    * for each ``(counts, multiple, size)`` in ``member_counts`` (``counts[k]``: how many of that member's channels
      the first ``k`` units remove), the member loses a multiple of ``multiple`` and keeps at least one channel.

    >>> feasible_units([1, 1, 1, 1], n_target=3, root_current=8, min_keep=1, round_to=2)
    2
    """
    ok, cum = feasible_prefixes(unit_sizes, root_current, min_keep, round_to, member_counts)
    return int(np.flatnonzero(ok & (cum <= n_target))[-1])


def chosen_prefix(ok, cum, n_target: int) -> int:
    """Which prefix of the ranked units to remove for a target of ``n_target`` root channels, given ``(ok, cum)``
    from :func:`feasible_prefixes`: the longest feasible prefix removing at most ``n_target`` (rounded down, as
    Torch-Pruning rounds); if that removes nothing while ``n_target > 0``, the feasible prefix whose count is
    nearest to ``n_target`` (the larger count on a tie). Returns the number of units (0: remove nothing).

    >>> ok = np.array([True, False, True, False, True]); cum = np.array([0, 2, 4, 6, 8])
    >>> chosen_prefix(ok, cum, 5), chosen_prefix(ok, cum, 2), chosen_prefix(ok, cum, 1)
    (2, 2, 0)
    """
    ok, cum = np.asarray(ok, dtype=bool), np.asarray(cum)
    feasible = ok.nonzero()[0]
    down = int(feasible[cum[feasible] <= n_target][-1])
    if down > 0 or n_target <= 0:
        return down
    distance = np.abs(cum[feasible] - n_target)
    best = np.flatnonzero(distance == distance.min())
    return int(feasible[best[-1]])


class Prefixes:
    """The feasible prefixes of a group's ranked units (:func:`feasible_prefixes`) and the choice among them
    (:func:`chosen_prefix`), for one proposal. ``unit_sizes``: the ranked units' channel counts, or None when each
    unit is one root channel (``n_units`` of them); the other arguments as :func:`feasible_prefixes` takes them.

    With one root channel per unit, no ``round_to`` and no member counts (most groups), the feasible prefixes are the
    first ``last + 1`` (``last = max(0, min(n_units, root_current - min_keep))``: the root keeps ``min_keep``) and
    every answer is arithmetic; otherwise they are read from :func:`feasible_prefixes`.

    >>> p = Prefixes(None, 10, root_current=16, min_keep=8, round_to=None, member_counts=[])
    >>> p.max_removable, p.choose(5), p.choose(12), p.down(12), p.removed(5)
    (8, 5, 8, 8, 5)
    """

    __slots__ = ("_last", "ok", "cum", "_feasible")

    def __init__(self, unit_sizes: Optional[np.ndarray], n_units: int, root_current: int, min_keep: int, round_to,
                 member_counts=()):
        if unit_sizes is None and not member_counts and not (round_to and round_to > 1):
            self._last = max(0, min(n_units, root_current - min_keep))
            self.ok = self.cum = self._feasible = None
            return
        if unit_sizes is None:
            unit_sizes = np.ones(n_units, dtype=np.int64)
        self._last = None
        self.ok, self.cum = feasible_prefixes(unit_sizes, root_current, min_keep, round_to, member_counts)
        self._feasible = self.ok.nonzero()[0]

    @property
    def max_removable(self) -> int:
        """The most root channels a feasible prefix removes."""
        return self._last if self.cum is None else int(self.cum[self._feasible[-1]])

    def choose(self, n_target: int) -> int:
        """:func:`chosen_prefix` for ``n_target >= 0`` root channels: how many units to remove."""
        return min(n_target, self._last) if self.cum is None else chosen_prefix(self.ok, self.cum, n_target)

    def down(self, n: int) -> int:
        """:func:`feasible_units` for ``n >= 0`` root channels: the longest feasible prefix removing at most ``n``."""
        if self.cum is None:
            return min(n, self._last)
        return int(self._feasible[self.cum[self._feasible] <= n][-1])

    def removed(self, k: int) -> int:
        """The root channels the first ``k`` units remove."""
        return k if self.cum is None else int(self.cum[k])

    def next_after_none(self) -> Optional[int]:
        """The root channels of the smallest feasible prefix that removes some (None when only removing none is)."""
        if self.cum is None:
            return 1 if self._last else None
        return int(self.cum[self._feasible[1]]) if self._feasible.size > 1 else None
