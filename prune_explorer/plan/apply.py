"""Applying a plan to a model: :func:`apply_plan` builds a pruner with the plan's options (:func:`build_pruner`) and
prunes every group the plan names, atomically, checking the parameter count the plan predicted.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch.nn as nn

from ..errors import TracingError
from .decisions import DEPTH_KIND, PlanError, PruningPlan
from .meta import meta_trace_hint, planning_importance
from .options import options_from_names
from .record import attention_sizes
from .walk import prune_with_plan

__all__ = ["apply_plan", "build_pruner"]


def apply_plan(model: nn.Module, plan: PruningPlan, example_inputs=None, importance: Optional[Callable] = None,
               pruner=None, strict: bool = True, calibration=None, compensation=None,
               **pruner_options) -> nn.Module:
    """Prune ``model`` in place as ``plan`` says and return it.

    Args:
        model: the model to prune (same architecture as the plan's).
        plan: a :class:`PruningPlan`.
        example_inputs: inputs for tracing (not needed when ``pruner`` is given).
        importance: ranks the channels on the model's weights (default ``MagnitudeImportance(p=2)``; on a
            ``meta``-device model, which has no weights to rank, ``RandomImportance()``: see :mod:`.meta`).
        pruner: an existing :class:`~prune_explorer.pruner.BasePruner` on ``model`` to apply the plan through
            (e.g. the explorer's); its options are used as they are.
        strict: see :func:`prune_with_plan`. Also checks that the parameter count reached equals
            ``plan.predicted["params"]``, and every attention block's heads, key-value heads and head size equal
            ``plan.predicted["attention"]``, when the plan predicts them for this model (same unpruned figures).
        calibration: calibration data for a data-driven ``importance`` (one pass before the plan is applied) and for
            ``compensation`` (a :class:`prune_explorer.compensation.Compensation`: every cut is compensated).
        **pruner_options: override the plan's recorded pruner options (``ignored_layers``, ``round_to``,
            ``max_pruning_ratio``, ``num_heads``, ...; see :class:`~prune_explorer.pruner.BasePruner`).

    Raises:
        PlanError: the plan does not fit the model; nothing is pruned (or everything is undone).
    """
    if not isinstance(model, nn.Module):
        raise PlanError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(plan, PruningPlan):
        raise PlanError(f"plan must be a PruningPlan, got {type(plan).__name__}. Fix: PruningPlan.load(path) or "
                        "PruningPlan.from_dict(d)")
    from ..measure import count_params

    if compensation is not None and calibration is None:
        raise PlanError("apply_plan: compensation= needs calibration= (the data its statistics are gathered on)")
    depth = any(d.kind == DEPTH_KIND for d in plan)
    if pruner is None:
        if example_inputs is None:
            raise PlanError("apply_plan needs example_inputs (to trace the model) when no pruner is given")
        options = {**options_from_names(model, plan.options), **pruner_options}
        if depth:  # the plan removes whole blocks: the pruner lists the depth groups too
            options["prune_depth"] = True
        pruner = build_pruner(model, example_inputs, importance, options)
    elif getattr(pruner, "model", None) is not model:
        raise PlanError("pruner was built on another model. Fix: pass the pruner of the model being pruned")
    elif depth and getattr(pruner, "depth", None) is None:
        from ..depth.source import attach_depth

        pruner.depth = attach_depth(pruner)
    if calibration is not None:
        pruner.use_calibration(calibration, compensation)
        pruner.calibrate()
    before = count_params(model)
    want = plan.predicted.get("params")
    want_heads = plan.predicted.get("attention")
    check_params = want is not None and plan.base.get("params") == before
    check_heads = bool(want_heads) and plan.base.get("attention") == attention_sizes(pruner.DG)

    def verify():
        got = count_params(model)
        if check_params and got != want:
            raise PlanError(f"plan {plan.name!r} predicted {want:,} parameters but applying it gives {got:,}; the model "
                            "was restored unchanged. Fix: apply with the pruner options in plan.options")
        heads = attention_sizes(pruner.DG) if check_heads else {}
        wrong = [b for b in want_heads or {} if check_heads and heads.get(b) != want_heads[b]]
        if wrong:
            raise PlanError(f"plan {plan.name!r} predicted {wrong[0]} to have {want_heads[wrong[0]]} but applying it "
                            f"gives {heads.get(wrong[0])} ({len(wrong)} attention block(s) differ); the model was "
                            "restored unchanged. Fix: apply with the pruner options in plan.options (prune_num_heads, "
                            "prune_head_dims)")

    check = strict and (check_params or check_heads)
    prune_with_plan(pruner, plan, strict=strict, verify=verify if check else None)
    return model


def build_pruner(model: nn.Module, example_inputs, importance: Optional[Callable] = None,
                 options: Optional[Mapping] = None):
    """A :class:`~prune_explorer.pruner.BasePruner` on ``model`` with resolved ``options`` (modules, not names),
    used to list groups and propose channels (its ratio and schedule are not used). ``importance`` defaults to
    :func:`~.meta.planning_importance`'s choice; one that reads weights is refused on a meta-device model."""
    from ..pruner import BasePruner

    importance = planning_importance(model, importance)
    try:
        return BasePruner(model, example_inputs, importance, **dict(options or {}))
    except TracingError as exc:
        hint = meta_trace_hint(exc, model)
        if hint is None:
            raise
        raise TracingError(f"{exc}. On the meta device: {hint}") from exc
