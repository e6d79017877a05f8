"""Pruning plans: a named, JSON-able record of how many channels each group loses, applied to a model later.

A :class:`PruningPlan` holds one :class:`GroupDecision` per group, keyed by the group's root layer (its qualified
name, plus ``:in`` for a group rooted at a layer's inputs and ``:<kind>`` for attention groups, see
:func:`group_key`): how many *root channels* the group loses (``remove``, out of ``channels``), or a fraction of
them (``ratio``) resolved when the plan is applied. Which channels go is decided at application time by an
importance criterion on the real weights, so a plan made on one copy of a model (or on a ``meta``-device model too
big to load, by a budget solver, in the explorer, or by hand) applies to any model of the same architecture.

Around the decisions a plan keeps what made it: ``target`` and ``kind`` (e.g. ``0.5`` of the ``"macs"``), the
importance's description, the pruner options it assumed (``round_to``, ``max_pruning_ratio``, ignored layers by
name, ``prune_num_heads``...), ``source`` (e.g. the scan it came from), ``base`` (parameters / MACs of the unpruned
model, and its attention blocks' head counts) and ``predicted`` (the same after pruning, and the metric, when
known).

Applying a plan (:func:`apply_plan`) builds a pruner with the plan's options and walks the pruner's groups in its
own order; for each group the plan names, the pruner's :meth:`~prune_explorer.pruner.BasePruner.propose` picks the
lowest-importance whole units so that exactly ``remove`` root channels go while ``round_to``, unit and head ties
and the guards hold. Each group is planned on the model as the earlier groups left it, as in ``pruner.step()``.
Everything is atomic: if a group cannot lose exactly its planned count, or the result does not have the parameter
count (or head counts) the plan predicted, every group pruned so far is undone and :class:`PlanError` is raised.

Modules: :mod:`.decisions` (the data), :mod:`.options` (pruner options by name), :mod:`.walk` (a plan through a
pruner), :mod:`.apply` (:func:`apply_plan`), :mod:`.meta` (planning on the ``meta`` device), :mod:`.record` (plans
from decisions taken, e.g. in the explorer).

Example::

    >>> import torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> x = torch.randn(1, 3, 64, 64)
    >>> plan = pe.PruningPlan([pe.plan.GroupDecision("layer1.0.conv1", channels=64, remove=32)], name="demo")
    >>> _ = pe.apply_plan(model, plan, example_inputs=x)
    >>> model.layer1[0].conv1.out_channels
    32
    >>> pe.PruningPlan.from_json(plan.to_json()) == plan
    True
"""

from .decisions import ATTENTION_KINDS, FORMAT, GroupDecision, PlanError, PruningPlan, group_key
from .options import JSON_OPTIONS, PRUNER_OPTIONS, json_options, options_from_names, options_to_names
from .walk import PlanProposal, plan_proposals, prune_with_plan
from .apply import apply_plan, build_pruner
from .meta import causal_lm_inputs, check_importance, is_meta_model, needs_weights, planning_importance
from .record import attention_sizes, explorer_plan

__all__ = [
    "PruningPlan", "GroupDecision", "PlanError", "PlanProposal", "apply_plan", "prune_with_plan", "plan_proposals",
    "group_key", "options_to_names", "options_from_names", "json_options", "build_pruner", "FORMAT",
    "ATTENTION_KINDS", "JSON_OPTIONS", "PRUNER_OPTIONS", "causal_lm_inputs", "check_importance", "is_meta_model",
    "needs_weights", "planning_importance", "attention_sizes", "explorer_plan",
]
