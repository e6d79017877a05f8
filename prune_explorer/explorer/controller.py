"""The explorer's state machine: walk the pruner's groups one by one and accept, adjust, skip or undo each.

Plain Python, no widgets: :class:`ExplorerController` is what the views call, what the headless demo
(``python -m prune_explorer.demo``) drives and what the tests drive. It is made of four parts, one module each:

:mod:`.session`
    the model, the pruner built with the user's options (``pe.pruner.BasePruner`` by default), layer names, and
    the options that rebuild the pruner: :meth:`~ExplorerController.ignore` and
    :meth:`~ExplorerController.set_ratio` rebuild it on the unpruned model and replay the decisions taken so far
    (by original channel ids, so they stay valid), except those on layers that are now ignored;
:mod:`.walk`
    the walk: for every group the user can :meth:`~ExplorerController.accept` it (the proposed channels, or those
    set by :meth:`~ExplorerController.adjust`), :meth:`~ExplorerController.skip` it,
    :meth:`~ExplorerController.undo` the last accepted group (the model is restored exactly) or
    :meth:`~ExplorerController.accept_all_remaining`;
:mod:`.figures`
    :meth:`~ExplorerController.figures` (header), :meth:`~ExplorerController.card` (the current group),
    :meth:`~ExplorerController.curves` and :meth:`~ExplorerController.sweep` (uniform pruning at p = 0 .. 0.9,
    computed from the group structure without tracing again), as plain dicts and lists;
:mod:`.export`
    the decision log (``history``), the graph's ``pruning_history``, :meth:`~ExplorerController.code` (a script
    that replays the pruning), :meth:`~ExplorerController.save`, :meth:`~ExplorerController.export_onnx` and
    :meth:`~ExplorerController.report` (layer by layer, before and after; :mod:`.finish`);
:mod:`.speed`
    :meth:`~ExplorerController.measure_speed`: latency of the original and the current model, on demand.

Status
    ``status`` (:mod:`.status`) is the one status line: every change replaces it with a sentence describing the
    new state and the action's notices (also in ``message``); :meth:`~ExplorerController.fail` shows a refusal.

Errors
    Bad input raises :class:`ExplorerError` (a :class:`~prune_explorer.PruneExplorerError`) with a message that
    says what to do, and changes nothing.

    >>> import torch, torchvision
    >>> from prune_explorer.explorer import ExplorerController
    >>> c = ExplorerController(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64), pruning_ratio=0.5)
    >>> c.ignored_names, c.current.root_name, len(c.card()["proposed"])
    (['fc'], 'conv1', 32)
    >>> d = c.accept()
    >>> c.figures()["params_now"] < c.figures()["params_original"]
    True
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import torch.nn as nn

from ..importance import MagnitudeImportance
from ..measure.structure import ModelStructure
from ..measure.sweep import SweepResult
from ..plan.meta import meta_aware
from ..plan.record import explorer_plan
from ..pruner import BasePruner
from ..measure import params_per_module
from .export import Export
from .figures import DEFAULT_SWEEP_RATIOS, Figures
from .session import ExplorerError, ProgressFn, Session, check_explorer_ratio, measure_model
from .status import Status, describe
from .speed import Speed
from .walk import AUTO_SKIP_KINDS, Decision, Walk

__all__ = ["ExplorerController", "ExplorerError", "Decision", "DEFAULT_SWEEP_RATIOS", "AUTO_SKIP_KINDS"]


class ExplorerController(Walk, Figures, Export, Speed, Session):
    """State and decisions of one exploration (see the module docstring).

    Args:
        model: the ``nn.Module`` to prune (in place, as the pruner does).
        example_inputs: what the model is called with for tracing (tensor, tuple/list or dict).
        importance: an importance criterion (default ``pe.importance.MagnitudeImportance(p=2)``).
        pruning_ratio: channel ratio each group is proposed to lose, in ``[0, 1)``.
        ignored_layers: modules or qualified names never pruned (their output channels). ``None`` pre-selects
            the final classifier (the last linear/conv layer whose outputs are the model's outputs).
        progress: ``progress(stage, done, total)`` called during long work (build, sweep, accept-all).
        pruner_class: the pruner to build (default ``pe.pruner.BasePruner``).
        **pruner_kwargs: any other ``BasePruner`` option (``round_to``, ``max_pruning_ratio``, ``global_pruning``...).
    """

    @meta_aware(ExplorerError)  # a meta-device model: RandomImportance by default, a clear error for weight-based ones
    def __init__(self, model: nn.Module, example_inputs, importance=None, pruning_ratio: float = 0.5,
                 ignored_layers=None, progress: Optional[ProgressFn] = None, pruner_class=None, **pruner_kwargs):
        if not isinstance(model, nn.Module):
            raise ExplorerError(f"Explorer needs a torch.nn.Module, got {type(model).__name__}")
        self.pruning_ratio = check_explorer_ratio(pruning_ratio)
        self.model = model
        self.example_inputs = example_inputs
        self.progress = progress
        self._listeners: List[Callable[[str], None]] = []
        self.importance = MagnitudeImportance(p=2) if importance is None else importance
        self.pruner_class = BasePruner if pruner_class is None else pruner_class
        self.pruner_kwargs = dict(pruner_kwargs)
        self.pruner_kwargs.pop("pruning_ratio", None)
        self.decisions: List[Decision] = []
        self.current = None  # the group on show, whole (None when the walk is over)
        self._proposal = None  # the pruner's proposal for it (importance, proposed channels, scope, ratio, ...)
        self.current_idxs: List[int] = []
        self.message = ""  # the notices of the last action ("" when it had none), also shown in the status line
        self._notices: List[str] = []
        self.last_undone: Optional[str] = None
        self._latency: Dict[str, Any] = {}  # measured speed (see .speed)
        self._sweep: Optional[SweepResult] = None
        self._cache: Dict[tuple, Any] = {}  # figures of the current state, cleared on every change
        self._modules = dict(model.named_modules())
        self._names = {id(m): n for n, m in self._modules.items()}
        explicit = ignored_layers is not None
        ignored_names = self._resolve_layers(ignored_layers or ()) if explicit else []
        # 1. one forward pass: MACs per layer (and, unless given, which layer is the final classifier)
        self._report("measuring MACs", 0, 4)
        macs, layer_macs, classifier = measure_model(model, example_inputs, self.pruner_kwargs.get("forward_fn"),
                                                     find_classifier=not explicit)
        if not explicit:
            ignored_names = classifier
        # 2. the pruner traces the model
        self._report("tracing", 1, 4)
        self.ignored_names: List[str] = list(ignored_names)
        self.pruner = self._make_pruner(self.ignored_names)
        self.DG = self.pruner.DG
        self.DG.undo_depth = 1 << 30  # every accepted group stays undoable
        # 3. parameter / MAC laws and the group layout (for predictions and the sweep)
        self._report("grouping", 2, 4)
        self._layer_macs = layer_macs
        self._layer_params0 = params_per_module(model)  # as built, per module name (the finish report)
        self.structure = ModelStructure(self.DG, layer_macs, macs)
        self.params0 = self.structure.total_params0
        self.macs0 = macs
        self._layout = self._make_layout(self.ignored_names)
        # 4. the pruner scores the first group
        self._report("scoring", 3, 4)
        self._restart_walk()
        self.status = Status(describe(self, "build"))
        self._report("scoring", 4, 4)

    def __repr__(self) -> str:
        f = self.figures()
        cur = self.current.root_name if self.current is not None else "(finished)"
        return (f"ExplorerController({type(self.model).__name__}: params {f['params_now']:,}/{f['params_original']:,}, "
                f"{f['groups_done']} groups decided, current: {cur})")

    def plan(self, name: Optional[str] = None):
        """The accepted decisions as a :class:`~prune_explorer.plan.PruningPlan`: counts per group (not indices), the
        pruner options, parameters and attention heads before and after. Apply it to another copy of the model (the
        real one behind a meta-device walk) with ``pe.apply_plan`` (see :func:`~prune_explorer.plan.explorer_plan`)."""
        return explorer_plan(self, name)

    def export_plan(self, path, name: Optional[str] = None):
        """Write :meth:`plan` as JSON to ``path`` (read it back with ``pe.PruningPlan.load``) and return it."""
        plan = self.plan(name)
        plan.save(path)
        return plan
