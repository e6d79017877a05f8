"""A pruning step: visit the proposals, prune them (or hand them to the caller), and keep every step whole.

:class:`PruningSteps` is the part of :class:`~.base_pruner.BasePruner` that runs ``step()`` through the pruner's
driver (:mod:`.driver`, the one pruning path): the driver walks the groups (attention-head groups after the graph's
groups) and the planner makes one :class:`~.proposal.Proposal` per group; ``step()`` hands them to the driver to prune
(``step(interactive=True)`` yields them instead), records the groups it leaves alone in ``pruner.skipped``; the driver
checks the pruned model afterwards (:mod:`.post_check`: a group that breaks it is rolled back and recorded as
skipped) and keeps a step that stops half-way whole: after ``KeyboardInterrupt`` the groups pruned so far stay (each group is atomic), after any other
error the whole step is rolled back. The pruner's configuration, graph and planner live in
:class:`~.base_pruner.BasePruner`, which derives from it.
"""

from __future__ import annotations

import warnings
from typing import Iterator, Optional

from ..errors import PruningError
from . import guards as G
from .guards import SkippedGroup
from .driver import KEEP_ON_INTERRUPT, Cut, batched_applier, sequential_applier
from .post_check import Repair
from .proposal import Proposal

__all__ = ["PruningSteps"]


class PruningSteps:
    """``step()`` and its bookkeeping, for :class:`~.base_pruner.BasePruner` (which provides ``DG``, ``planner``,
    ``options``, ``check``, ``skipped``, ``current_step`` and the head state these methods read)."""

    def step(self, interactive: bool = False):
        """Run the next pruning step. ``interactive=False``: prune every group now. ``interactive=True``: return a
        generator of :class:`~.proposal.Proposal` objects, each made after the previous one was pruned or
        skipped; ``group.prune()`` accepts the proposal, ``group.prune(idxs=[...])`` prunes your own choice,
        doing nothing skips it."""
        self.current_step += 1
        if interactive:
            return self._interactive_step()
        if self._past_last_step():
            return None
        start, n_skipped = len(self.DG.history), len(self.skipped)
        proposals = self._proposals()

        def refused(cut: Cut, exc: PruningError) -> None:  # a layer refused: keep going, and say so
            proposal = cut.target
            proposal.skip_reason, proposal.skip_kind = str(exc), G.ERROR
            self._skip(proposal, G.ERROR, f"pruning failed and was rolled back: {exc}")
            warnings.warn(f"prune_explorer: the group rooted at {proposal.root_name} could not be "
                          f"pruned and was skipped: {exc}")

        def on_abort(exc: BaseException) -> None:
            self._abort_step(proposals, start, n_skipped, exc)

        # decide every graph group, then cut them together (one cut per tensor, one record), unless a custom
        # applier (compensation) prunes cut by cut
        applier = batched_applier if self.driver.applier is sequential_applier else None
        self.driver.apply((Cut(p) for p in proposals), applier=applier, on_error=KEEP_ON_INTERRUPT, refused=refused,
                          on_abort=on_abort, what="pruning step")
        self._warn_config(start)
        return None

    def _interactive_step(self) -> Iterator[Proposal]:
        """``step(interactive=True)``: the proposals, then (when the loop ends or is left) the post-prune check of
        every pruning made during the loop. The caller prunes them (``group.prune()``); the driver checks."""
        start = len(self.DG.history)
        with self.driver.undo_scope(self.post_prune_check):
            try:
                yield from self._proposals()
            finally:
                if self.post_prune_check:
                    self.driver.check(self.DG.history[start:], "pruning step")
                self._warn_config(start)

    def _abort_step(self, proposals, start: int, n_skipped: int, exc: BaseException) -> None:
        """A step stopped by ``exc`` (the driver then rolls back after an ``Exception``, or keeps and checks the
        groups pruned so far after an interrupt: each group is atomic). The step no longer counts (``step()``
        again redoes it) and leaves no skip record."""
        proposals.close()
        del self.skipped[n_skipped:]
        self.current_step -= 1
        if isinstance(exc, Exception):
            return
        for rec in self.DG.history[start:]:  # an interrupt may land between a pruning and its bookkeeping
            self._made_by.setdefault(id(rec), {"step": self.current_step + 1, "scope": None, "pruning_ratio": None})

    def _warn_config(self, start: int) -> None:
        """After a step that pruned something: one warning (per model) when a Hugging Face config can no longer
        describe the model (:func:`~prune_explorer.hf.warn_config_problems`); the Hugging Face code is loaded only for
        a model with a ``config``."""
        if len(self.DG.history) > start and getattr(self.model, "config", None) is not None:
            from .. import hf

            hf.warn_config_problems(self.model)

    def apply_repair(self, repair: Repair) -> None:
        """Bring the pruner's records in line with what a post-prune check rolled back or re-applied: re-applied
        prunings keep their step, scope and ratio; rolled back groups are recorded as skipped (kind ``"check"``,
        the error as reason) and left alone by later steps."""
        for old_id, new in repair.replaced.items():
            if old_id in self._made_by:
                self._made_by[id(new)] = self._made_by[old_id]
        for rec, error in repair.rolled_back:
            made = self._made_by.get(id(rec), {})
            reason = f"the pruned model did not run ({error}); the group was rolled back"
            self._skip_root(rec.root, made.get("step") or self.current_step, G.CHECK, reason,
                            made.get("scope"), made.get("pruning_ratio"))
            space = rec.root_space
            if space is not None:
                self.check_failed[space.index] = reason

    def remember_batch(self, record, targets) -> None:
        """A batched cut (``DG.prune_groups``) of ``targets`` (proposals, or groups pruned outside the proposals):
        the step, scope and ratio behind each of its groups, for :attr:`history`."""
        blank = {"step": None, "scope": None, "pruning_ratio": None}
        made = [{"step": t.step, "scope": t.scope, "pruning_ratio": t.pruning_ratio} if isinstance(t, Proposal)
                else dict(blank) for t in targets]
        self._made_by[id(record)] = dict(made[0], parts=made)

    def record_replaced(self, old, new) -> None:
        """``new`` re-applies ``old`` (same channels): it keeps the step, scope and ratio."""
        if id(old) in self._made_by:
            self._made_by[id(new)] = self._made_by[id(old)]

    def record_split(self, batch, parts) -> None:
        """A batched record split into ``parts`` (one record per group, in order): each keeps its group's step,
        scope and ratio."""
        made = self._made_by.get(id(batch))
        if made is None:
            return
        for k, rec in enumerate(parts):
            self._made_by[id(rec)] = made["parts"][k] if "parts" in made else made

    def _past_last_step(self) -> bool:
        if self.current_step <= self.iterative_steps:
            return False
        warnings.warn(f"pruning past the last step ({self.iterative_steps} iterative_steps): nothing is pruned. "
                      "Fix: call pruner.reset() to start the schedule again, or build the pruner with more steps")
        return True

    def _skip(self, proposal: Proposal, kind: str, reason: str) -> None:
        self._skip_root(proposal.root_name, proposal.step, kind, reason, proposal.scope, proposal.pruning_ratio)

    def _skip_root(self, root: str, step: int, kind: str, reason: str, scope=None, ratio=None) -> None:
        self.skipped.append(SkippedGroup(root=root, step=step, kind=kind, reason=reason, scope=scope, pruning_ratio=ratio))

    def _emit(self, proposal: Proposal) -> Iterator[Proposal]:
        if not proposal.proposed_idxs:
            self._skip(proposal, proposal.skip_kind or G.TARGET, proposal.skip_reason or "nothing proposed")
            return
        try:
            yield proposal
        finally:
            if not proposal.was_pruned and proposal.skip_kind != G.ERROR and not proposal.batched:
                self._skip(proposal, G.NOT_ACCEPTED,
                           "not pruned: the proposal was not accepted (group.prune() was not called)")

    def _proposals(self) -> Iterator[Proposal]:
        step = self.current_step
        if self._past_last_step():
            return
        self._active_step = step
        try:
            self.calibrate()  # with calibration data: one pass for the data-driven criterion
            self._report_unhandled_heads(step)
            budgets = self._step_budgets = self.planner.budgets(step)
            for proposal in self.driver.proposals(step, budgets, on_pruned=self._remember):
                yield from self._emit(proposal)
        finally:
            self._active_step = None
            self._step_budgets = None

    def _report_unhandled_heads(self, step: int) -> None:
        """Declared head layers the pruner does not prune by head: they go through the graph's groups (same offsets
        in every head) when it allows; record what is not done."""
        for m, reason in self._unhandled_heads.items():
            name = self.options.module_names.get(id(m), "?")
            if self.prune_num_heads:
                self._skip_root(name, step, G.HEADS, f"whole heads are not removed: {reason}; the same offsets are "
                                "removed from every declared head instead, where the graph allows")
            if self.DG.prunable_fraction(m) == 0.0:
                self._skip_root(name, step, G.HEADS, f"declared in num_heads but not prunable: {reason}; the graph "
                                f"keeps its outputs fixed ({self.DG.fixed_reason(m)})")
