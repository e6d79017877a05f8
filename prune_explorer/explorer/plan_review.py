"""Reviewing and applying a pruning plan in the explorer's walk (plain Python, no widgets).

:class:`PlanReview` is the part of :class:`~.sensitivity_controller.SensitivityController` that puts a plan (per-group
channel counts, e.g. from :func:`prune_explorer.sensitivity.solve_budget`) into the walk: while a plan is under
review, each group the walk shows is pre-selected with the plan's count through the controller's own ``adjust``, so
accept / adjust / skip / undo work as always; :meth:`PlanReview.apply_plan` accepts every remaining group with its
count at once (all or nothing) and :meth:`PlanReview.undo_plan` undoes that whole step exactly.

It uses only the controller's public interface (``adjust``, ``allowed_counts``, ``apply_counts``, ``undo_since``,
``notify``). The class expects what its host sets up: ``controller`` (the :class:`~.controller.ExplorerController`), ``plan``
(the plan under review or None), ``applied`` (the decisions of the last apply), ``_adjusting`` (True while it adjusts
the walk itself), ``_emit(event)`` and ``current_key()``. See the example in :mod:`.sensitivity_controller`.
"""

from __future__ import annotations

from typing import Any, List, Optional

from ..errors import PruneExplorerError
from ..plan import PruningPlan
from .session import ExplorerError

__all__ = ["PlanReview", "APPLY_STAGE"]

#: progress stage reported to the explorer controller's ``progress(stage, done, total)``
APPLY_STAGE = "applying the plan"


class PlanReview:
    """A plan under review in the explorer's walk: pre-selected counts, apply all at once, undo all at once."""

    # ---- the plan in the walk ------------------------------------------------------------------------------------
    def planned_count(self, key: Optional[str] = None) -> Optional[int]:
        """The count of root channels the plan under review removes from the group on show (or ``key``), snapped
        down to a count the group allows now; None without a plan or for a group the plan does not name."""
        c = self.controller
        key = key or self.current_key()
        if self.plan is None or key is None or key not in self.plan:
            return None
        d = self.plan[key]
        if key != self.current_key():
            return d.count(d.channels or 0)
        now = c.current.root_space.current_size
        n = d.count(now) if d.channels in (None, now) else int(round((d.fraction or 0.0) * now))
        allowed = c.allowed_counts()
        below = [a for a in allowed if a <= n]
        return below[-1] if below else 0

    def review(self, plan: Optional[PruningPlan] = None) -> None:
        """Review ``plan`` (default: the last solved) in the walk: the group on show, and each one after it, is
        pre-selected with the plan's count (``controller.adjust``); accept, adjust or skip as usual."""
        if plan is None:
            plan = self.plan
        if plan is None:
            raise ExplorerError("no plan to review: solve a budget first")
        if not isinstance(plan, PruningPlan):
            raise ExplorerError(f"plan must be a pe.PruningPlan, got {type(plan).__name__}")
        self.plan = plan
        self._preselect()
        self._emit("plan")

    def stop_review(self) -> None:
        """Stop reviewing: the walk proposes with the pruner's ratio again (the selection goes back to it)."""
        self.plan = None
        c = self.controller
        if c.current is not None:
            c.use_proposal()
        self._emit("plan")

    def _preselect(self) -> None:
        c = self.controller
        if self.plan is None or c.current is None:
            return
        n = self.planned_count()
        if n is None:
            return
        self._adjusting = True
        try:
            c.adjust(n=n)
        except PruneExplorerError:
            pass  # the plan's count does not fit this group now: the pruner's proposal stays
        finally:
            self._adjusting = False

    def _on_walk_change(self, event: str) -> None:
        if self._adjusting or event == "adjust":
            return
        if event in ("accept", "skip", "undo", "rollback", "restart", "ignore", "ratio", "rebuild", "options"):
            self._preselect()

    def apply_plan(self, plan: Optional[PruningPlan] = None) -> List[Any]:
        """Accept every remaining group with the plan's count (groups the plan does not name, or that lose nothing,
        are skipped), through the controller's walk. All or nothing: if anything fails or is interrupted, the
        groups it had accepted are undone. Returns the decisions made (:meth:`undo_plan` undoes them)."""
        if plan is not None:
            self.review(plan)
        if self.plan is None:
            raise ExplorerError("no plan to apply: solve a budget first")
        c = self.controller
        if c.current is None:
            raise ExplorerError("every group has been decided: nothing left to apply the plan to")
        self._adjusting = True
        try:
            self.applied = c.apply_counts(lambda: self.planned_count() or 0, APPLY_STAGE)
        except BaseException:
            self._adjusting = False
            self._preselect()  # still reviewing: the group on show gets the plan's count again
            raise
        finally:
            self._adjusting = False
        accepted = [d for d in self.applied if d.action == "accept"]
        c.notify(f"applied plan {self.plan.name!r}: {len(accepted)} groups pruned, {len(self.applied) - len(accepted)} "
                 "left alone. 'Undo plan' restores the model")
        self._emit("apply")
        return self.applied

    def undo_plan(self) -> None:
        """Undo the decisions of the last :meth:`apply_plan` (the model is restored exactly) and walk back to the
        first group it decided."""
        c = self.controller
        if not self.applied:
            raise ExplorerError("nothing to undo: no plan was applied (or it was undone already)")
        first = self.applied[0]
        try:
            start = next(i for i, d in enumerate(c.decisions) if d is first)
        except StopIteration:
            self.applied = []
            raise ExplorerError("the plan's decisions were already undone one by one") from None
        if len(c.decisions) != start + len(self.applied):
            raise ExplorerError("other decisions were taken after the plan was applied: undo them first")
        self.applied = []
        c.undo_since(start)  # the walk's listeners pre-select the plan's count again
        c.notify("undid the plan: the model is as it was before it was applied")
        self._emit("undo_plan")
