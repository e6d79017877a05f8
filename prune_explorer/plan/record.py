"""Plans recorded from pruning already done: a walk's accepted decisions as counts per group (:func:`walk_plan`,
called by the explorer with what it holds), and the attention blocks' head counts (:func:`attention_sizes`) that a
plan predicts and checks.

A recorded plan keeps counts, not indices, so it can be made on one copy of a model (typically a ``meta``-device
model too big to load, walked with ``RandomImportance``) and applied to another, where the importance ranks the
real weights (:func:`~.apply.apply_plan`).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from .decisions import GroupDecision, PlanError, PruningPlan
from .meta import is_meta_model
from .options import JSON_OPTIONS, json_options, options_to_names

__all__ = ["attention_sizes", "explorer_plan", "walk_plan", "pruner_options"]


def attention_sizes(graph, initial: bool = False) -> Dict[str, Dict[str, int]]:
    """``{block name: {"num_heads", "num_key_value_heads", "head_dim"}}`` of every attention block ``graph`` (a
    :class:`~prune_explorer.DependencyGraph`) found, as the model is now (or as it was when the graph was built,
    with ``initial=True``). Empty for models without attention, or graphs that do not report blocks."""
    blocks = getattr(graph, "attention_blocks", None)
    if blocks is None:
        return {}
    out = {}
    for b in blocks():
        pre = "initial_" if initial else ""
        out[b.name] = {k: int(getattr(b, pre + k)) for k in ("num_heads", "num_key_value_heads", "head_dim")}
    return out


def pruner_options(model, options: dict) -> dict:
    """The JSON-able part of pruner ``options`` with modules replaced by their names in ``model`` (what a plan
    records; see :data:`~.options.JSON_OPTIONS`)."""
    kept = {k: v for k, v in options.items() if k in JSON_OPTIONS}
    return json_options(options_to_names(model, **kept))


def _decision_key(d) -> str:
    key = getattr(d, "key", "")
    if key:
        return key
    side = d.root_label.rpartition(".")[2] if d.root_label else "out"
    return d.root if side == "out" else f"{d.root}:{side}"


def walk_plan(decisions: Sequence, model, options: dict, graph, params: Tuple[int, int],
              macs: Optional[Tuple[float, float]] = None, importance=None, pruning_ratio: Optional[float] = None,
              name: Optional[str] = None) -> "PruningPlan":
    """The accepted decisions of a walk as a plan (what the explorer's ``controller.plan()`` returns).

    Args:
        decisions: the walk's decisions in order (each with ``action``, ``idxs``, ``channels`` and ``key`` or
            ``root`` / ``root_label``): one :class:`~.decisions.GroupDecision` per accepted group, with the root
            channels it had and the number it lost (not which ones).
        model: the model walked; options: the pruner options it used (modules or names; ``ignored_layers`` too).
        graph: its :class:`~prune_explorer.DependencyGraph` (each attention block's head counts, before and now).
        params: parameters ``(before, now)``; macs: MACs ``(before, now)``, or None when they cannot be counted.
        importance: the criterion that ranked the channels (recorded unless the model is on the meta device).
        pruning_ratio: the walk's ratio (recorded in ``plan.source``).

    Applied to another copy of the same architecture with :func:`~.apply.apply_plan`, it removes the same counts,
    ranked by the importance given there, and reaches exactly ``plan.predicted["params"]``.
    """
    accepted = [d for d in decisions if d.action == "accept" and d.idxs]
    groups = [GroupDecision(_decision_key(d), channels=int(d.channels), remove=len(d.idxs)) for d in accepted]
    try:
        recorded = pruner_options(model, dict(options))
    except PlanError as exc:
        raise PlanError(f"the explorer's pruner options cannot be stored in a plan: {exc}") from None
    on_meta = is_meta_model(model)
    base = {"params": int(params[0])}
    predicted = {"params": int(params[1])}
    if macs is not None and macs[0] is not None:
        base["macs"], predicted["macs"] = int(macs[0]), int(round(macs[1]))
    heads_before, heads_now = attention_sizes(graph, initial=True), attention_sizes(graph)
    if heads_before:
        base["attention"], predicted["attention"] = heads_before, heads_now
    source = {"algorithm": "explorer", "pruning_ratio": pruning_ratio, "planned_on": "meta" if on_meta else "weights",
              "groups_accepted": len(groups), "model": type(model).__name__}
    return PruningPlan(groups, name=name or f"explorer ({type(model).__name__})",
                       importance=None if on_meta else repr(importance), options=recorded, source=source, base=base,
                       predicted=predicted)


def explorer_plan(controller, name: Optional[str] = None) -> "PruningPlan":
    """``controller.plan(name)``: the accepted decisions of an explorer walk
    (:class:`~prune_explorer.explorer.ExplorerController`) as a plan (see :func:`walk_plan`, which the controller
    calls with its decisions, options and figures)."""
    return controller.plan(name)
