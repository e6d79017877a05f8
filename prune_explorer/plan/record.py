"""Plans recorded from pruning already done: the explorer's accepted decisions (:func:`explorer_plan`) as counts per
group, and the attention blocks' head counts (:func:`attention_sizes`) that a plan predicts and checks.

A recorded plan keeps counts, not indices, so it can be made on one copy of a model (typically a ``meta``-device
model too big to load, walked with ``RandomImportance``) and applied to another, where the importance ranks the
real weights (:func:`~.apply.apply_plan`).
"""

from __future__ import annotations

from typing import Dict, Optional

from .decisions import GroupDecision, PlanError, PruningPlan
from .meta import is_meta_model
from .options import JSON_OPTIONS, json_options, options_to_names

__all__ = ["attention_sizes", "explorer_plan", "pruner_options"]


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


def explorer_plan(controller, name: Optional[str] = None) -> "PruningPlan":
    """The accepted decisions of an explorer walk (:class:`~prune_explorer.explorer.ExplorerController`) as a plan:
    one :class:`~.decisions.GroupDecision` per accepted group with the root channels it had and the number it lost
    (not which ones), in walk order; the pruner options the walk used (ignored layers by name, ``round_to``,
    ``prune_num_heads``...); the parameters (and MACs) before and now, and each attention block's head counts.

    Applied to another copy of the same architecture with :func:`~.apply.apply_plan`, it removes the same counts,
    ranked by the importance given there, and reaches exactly ``plan.predicted["params"]``.
    """
    c = controller
    accepted = [d for d in c.decisions if d.action == "accept" and d.idxs]
    decisions = [GroupDecision(_decision_key(d), channels=int(d.channels), remove=len(d.idxs)) for d in accepted]
    options = dict(c.pruner_kwargs)
    options["ignored_layers"] = list(c.ignored_names)
    try:
        recorded = pruner_options(c.model, options)
    except PlanError as exc:
        raise PlanError(f"the explorer's pruner options cannot be stored in a plan: {exc}") from None
    on_meta = is_meta_model(c.model)
    base = {"params": int(c.params0)}
    predicted = {"params": int(c.params_now())}
    if c.macs0 is not None:
        base["macs"], predicted["macs"] = int(c.macs0), int(round(c.macs_now()))
    heads_before, heads_now = attention_sizes(c.DG, initial=True), attention_sizes(c.DG)
    if heads_before:
        base["attention"], predicted["attention"] = heads_before, heads_now
    importance = None if on_meta else repr(c.importance)
    source = {"algorithm": "explorer", "pruning_ratio": c.pruning_ratio, "planned_on": "meta" if on_meta else "weights",
              "groups_accepted": len(decisions), "model": type(c.model).__name__}
    return PruningPlan(decisions, name=name or f"explorer ({type(c.model).__name__})", importance=importance,
                       options=recorded, source=source, base=base, predicted=predicted)
