"""What a pruner proposes for one group: the group, the scores, the channels to remove, and why.

A :class:`Proposal` belongs to the pruner. It wraps a group of the dependency graph (or an attention-head group of
:mod:`prune_explorer.attention.proposals`) without changing it: the graph's objects never carry pruner state. It is what
``pruner.step(interactive=True)`` yields and what :meth:`BasePruner.proposal <.base_pruner.BasePruner.proposal>`
returns, and it behaves like the group restricted to the proposed channels, as Torch-Pruning's interactive groups
do::

    for group in pruner.step(interactive=True):
        print(group)                  # the proposal's header, then the members' table (group.details())
        for dep, idxs in group:       # every member and the channels it would lose
            ...
        group.prune()                 # accept; group.prune(idxs=[...]) prunes your own choice; not calling it skips

What it holds (all in root channels, i.e. channel indices of the group's root layer as it is now):

=================  ======================================================================================
``group``          the whole group: every candidate channel (``full_group`` is the same object)
``candidate_idxs`` every root channel the group covers (``group.root_idxs``)
``importance``     one score per candidate, in ``candidate_idxs`` order (a float32 tensor), or None
``prune_units``    candidates that can only go together: the graph's units merged with the ties of declared heads
                   and ``in/out_channel_groups`` (see :mod:`.units`)
``proposed_idxs``  the root channels the pruner proposes to remove (sorted; empty when it proposes nothing)
``scope``          the ranking scope (:mod:`.scope`), e.g. ``"local:layer1.0.conv1"`` or ``"global"``
``pruning_ratio``  the cumulative ratio of initial channels the scope aims at after ``step``
``step``           the pruning step this proposal is for (1-based)
``n_target``       root channels the target asks for; ``max_removable``: the most the guards allow
``skip_kind``      why nothing is proposed, as a kind of :mod:`.guards` (None when something is); ``skip_reason``
                   says it in a sentence
``record``         once pruned, the graph's record of it (``None`` before, or when the proposal was skipped)
=================  ======================================================================================
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

import torch

__all__ = ["Proposal"]

#: group attributes that a selection shares with its whole group
_SAME_AS_WHOLE_GROUP = frozenset({"root_space", "root_name", "root_module", "root", "pruning_fn"})


@dataclass(eq=False, repr=False)
class Proposal:
    """The pruner's proposal for one group (see the module docstring). Nothing is pruned until :meth:`prune`.

    Iteration, indexing, ``len``, ``items``, ``root_idxs``, ``units``, ``details()`` and every other attribute of a
    group refer to the *selection*: the group restricted to :attr:`proposed_idxs` (computed on first use).
    ``on_pruned(proposal, record)`` is called after each :meth:`prune` (the pruner records the step, scope and
    ratio behind the pruning).
    """

    group: Any
    step: int
    scope: Optional[str]
    pruning_ratio: float
    importance: Optional[torch.Tensor] = None
    prune_units: Optional[List[List[int]]] = None
    proposed_idxs: List[int] = field(default_factory=list)
    n_target: int = 0
    max_removable: int = 0
    skip_kind: Optional[str] = None
    skip_reason: Optional[str] = None
    on_pruned: Optional[Callable[["Proposal", object], None]] = None
    candidate_idxs: List[int] = field(init=False)
    record: Any = field(init=False, default=None)
    #: set by a non-interactive step that cuts this proposal together with others (``DG.prune_groups``)
    batched: bool = field(init=False, default=False)
    _selection: Any = field(init=False, default=None)

    def __post_init__(self):
        self.candidate_idxs = list(self.group.root_idxs)
        self.proposed_idxs = list(self.proposed_idxs)

    # ---- the group and the selection ----------------------------------------------------------------------------
    @property
    def full_group(self):
        """The whole group (every candidate channel), e.g. to ``select`` another subset; same as :attr:`group`."""
        return self.group

    @property
    def selection(self):
        """The group restricted to :attr:`proposed_idxs` (a group of the same kind as :attr:`group`)."""
        if self._selection is None:
            # the pruner's own choice among the group's candidates: valid by construction
            self._selection = self.group.select(self.proposed_idxs, validate=False)
        return self._selection

    def select(self, idxs: Sequence[int], validate: bool = True):
        """The whole group restricted to root channels ``idxs`` (see ``Group.select``)."""
        return self.group.select(idxs, validate=validate)

    @property
    def items(self):
        return self.selection.items

    def __iter__(self):
        return iter(self.selection.items)

    def __len__(self) -> int:
        return len(self.selection.items)

    def __getitem__(self, k):
        return self.selection.items[k]

    def __getattr__(self, name: str):
        # the rest of the group interface (root_idxs, units, layers(), ...) is the selection's; the root is the
        # same for the whole group (no selection needed); private names are not forwarded
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.group if name in _SAME_AS_WHOLE_GROUP else self.selection, name)

    # ---- acting on it ----------------------------------------------------------------------------------------------
    def prune(self, idxs: Optional[Sequence[int]] = None, record_history: bool = True):
        """Remove the proposed channels (``idxs=None``; nothing happens when nothing is proposed) or your own choice
        of candidate root channels ``idxs`` (completed to whole units), from every member, atomically.

        Returns the graph's record (``None`` when nothing was pruned)."""
        if idxs is None:
            if not self.proposed_idxs:
                return None
            record = self.selection.prune(record_history=record_history)
        else:
            record = self.group.select(idxs).prune(record_history=record_history)
        self.record = record
        if self.on_pruned is not None:
            self.on_pruned(self, record)
        return record

    def __call__(self):
        """``group()`` is ``group.prune()`` (Torch-Pruning's spelling)."""
        return self.prune()

    def exec(self):
        """Deprecated spelling of :meth:`prune` (kept from Torch-Pruning)."""
        warnings.warn("Group.exec() is deprecated; use group.prune()", DeprecationWarning, stacklevel=2)
        return self.prune()

    @property
    def was_pruned(self) -> bool:
        return self.record is not None

    # ---- printing --------------------------------------------------------------------------------------------------
    def details(self, max_idxs: int = 8) -> str:
        shown = ", ".join(str(i) for i in self.proposed_idxs[:max_idxs])
        more = ", ..." if len(self.proposed_idxs) > max_idxs else ""
        head = (
            f"Proposal (step {self.step}, scope {self.scope}, ratio {self.pruning_ratio:.3f}): remove "
            f"{len(self.proposed_idxs)} of {len(self.candidate_idxs)} candidate channels [{shown}{more}]"
        )
        if self.skip_reason:
            head += f"\n  nothing proposed: {self.skip_reason}"
        if not self.proposed_idxs:
            return head
        return head + "\n" + self.selection.details(max_idxs)

    def __repr__(self) -> str:
        return self.details()

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(self.details()) + "</pre>"
