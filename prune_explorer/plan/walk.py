"""Walking a plan through a pruner: each group the plan names, in the pruner's order, proposed on the model as the
earlier groups left it (:func:`plan_proposals`), and the whole plan applied atomically (:func:`prune_with_plan`),
both through the pruner's driver (:mod:`prune_explorer.pruner.driver`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional

from ..pruner.driver import ROLLBACK, Cut, batched_applier, sequential_applier
from .decisions import GroupDecision, PlanError, PruningPlan, group_key

__all__ = ["PlanProposal", "plan_proposals", "plan_cuts", "prune_with_plan"]


@dataclass
class PlanProposal:
    """One group of a plan as the pruner sees it now: ``group`` (the pruner's group), its ``decision``, and
    ``idxs``, the root channels (current indices, sorted) that :meth:`accept` removes. ``n_planned`` is the count
    the plan asks for; ``len(idxs)`` can be smaller when the constraints do not allow that count now."""

    key: str
    group: Any
    decision: GroupDecision
    idxs: List[int]
    n_planned: int
    record: Any = None
    driver: Any = field(default=None, repr=False)  # the pruner's driver, which prunes it

    @property
    def n(self) -> int:
        return len(self.idxs)

    @property
    def exact(self) -> bool:
        """Whether the proposal removes exactly the planned count."""
        return len(self.idxs) == self.n_planned

    def accept(self):
        """Remove ``idxs`` from the group (atomically); returns the prune record (None when nothing is removed)."""
        if not self.idxs:
            return None
        self.record = self.driver.prune(self.group, self.idxs)
        return self.record


def plan_proposals(pruner, plan: PruningPlan) -> Iterator[PlanProposal]:
    """The plan's groups in the order of ``pruner``'s groups, each proposed right before it is yielded.

    For the group each decision names, ``pruner.propose(group, n)`` picks the lowest-importance whole units for
    ``n`` root channels (rounded down to what ``round_to``, unit/head ties and the guards allow), on the model as
    the earlier proposals left it. Call :meth:`PlanProposal.accept` to prune it, or do nothing to skip it (as in
    ``pruner.step(interactive=True)``). Groups the plan does not name are passed over.
    """
    for group in pruner.get_all_groups():
        key = group_key(group)
        d = plan.get(key)
        if d is None:
            continue
        current = len(group.root_idxs)
        n = d.count(current)
        # decided as group-by-group pruning would: through the cuts a batched applier holds (driver.decide)
        idxs = list(pruner.driver.decide(group, lambda: pruner.propose(group, n))) if n > 0 else []
        yield PlanProposal(key=key, group=group, decision=d, idxs=idxs, n_planned=n, driver=pruner.driver)


def prune_with_plan(pruner, plan: PruningPlan, strict: bool = True,
                    verify: Optional[Callable[[], None]] = None) -> List[Any]:
    """Apply ``plan`` through an existing pruner (built on the model to prune); returns the prune records.

    ``strict=True`` (default): every key of the plan must name one of the pruner's groups (checked before anything
    is pruned), and every group with a planned count (``remove``) must lose exactly that (a ``ratio`` is rounded
    down to a feasible count, as the pruner does); otherwise everything pruned so far is undone
    and :class:`PlanError` is raised. ``strict=False`` skips unknown keys and accepts counts rounded down.
    ``verify()``, when given, runs once everything is pruned; if it raises, everything is undone too.
    """
    keys = [group_key(g) for g in pruner.get_all_groups()]
    missing = [k for k in plan.keys() if k not in set(keys)]
    if missing and strict:
        import difflib

        hints = {k: difflib.get_close_matches(k, keys, n=1) for k in missing[:3]}
        hint = "; ".join(f"{k!r}: did you mean {v[0]!r}?" for k, v in hints.items() if v)
        raise PlanError(f"plan {plan.name!r} names {len(missing)} group(s) this model/pruner does not have: "
                        f"{missing[:5]}{' (' + hint + ')' if hint else ''}. Groups here: {keys[:6]}... Fix: apply the "
                        "plan to the architecture it was made for, with the same ignored_layers")
    # every group decided on the model as it is, then cut once per tensor (as pruner.step() does), unless a custom
    # applier (compensation) prunes cut by cut
    applier = batched_applier if pruner.driver.applier is sequential_applier else None
    applied = pruner.driver.apply(plan_cuts(pruner, plan, strict), applier=applier, check=False, on_error=ROLLBACK,
                                  on_pruned=_accepted, verify=verify, what="plan")
    return applied.records


def plan_cuts(pruner, plan: PruningPlan, strict: bool = True) -> Iterator[Cut]:
    """The plan's groups as the pruner's driver takes them (:class:`~prune_explorer.pruner.driver.Cut`, each
    tagged with its :class:`PlanProposal`), each proposed after the earlier ones were pruned. ``strict``: a group
    with a planned count (``remove``) that cannot lose exactly that raises :class:`PlanError`."""
    for prop in plan_proposals(pruner, plan):
        if strict and prop.decision.remove is not None and not prop.exact:
            here, there = len(prop.group.root_idxs), prop.decision.channels
            other = (f" It has {here} root channels here but had {there} where the plan was made: is this the "
                     "architecture (and config) the plan was made for?" if there is not None and there != here else "")
            raise PlanError(
                f"plan {plan.name!r}: group {prop.key} can lose {prop.n} root channels, not the planned "
                f"{prop.n_planned}, under round_to={pruner.round_to}, max_pruning_ratio={pruner.max_pruning_ratio} "
                f"and its unit/head ties (max removable now: {pruner.max_removable(prop.group)}).{other} Fix: apply "
                "with the options the plan was made with (plan.options), or pass strict=False to round down")
        if prop.idxs:
            yield Cut(prop.group, prop.idxs, tag=prop)


def _accepted(cut: Cut) -> None:
    cut.tag.record = cut.record
