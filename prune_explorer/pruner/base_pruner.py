"""BasePruner: rank channels with an importance criterion and prune groups step by step (Torch-Pruning semantics).

    >>> import torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> pruner = pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 64, 64), pe.importance.MagnitudeImportance(p=2),
    ...                                    pruning_ratio=0.5, ignored_layers=[model.fc])
    >>> pruner.step()                      # every conv keeps half of its output channels
    >>> model.layer1[0].conv1.out_channels
    32

The pieces, one module each: :mod:`.config` checks the options; the graph is traced once
(:class:`~prune_explorer.graph.DependencyGraph`); a step visits the attention-head groups (:mod:`prune_explorer.attention`), then the
graph's groups (lazily, each computed against the model as the earlier groups left it), and for each one the
:class:`~.planning.Planner` makes a :class:`~.proposal.Proposal` (guards in :mod:`.guards`, scopes and ratios in
:mod:`.scope`, units in :mod:`.units`). ``step()`` (:mod:`.stepping`) prunes every proposal;
``step(interactive=True)`` yields them for the caller to prune (``group.prune()``), override
(``group.prune(idxs=[...])``) or skip (do nothing). Groups a step leaves alone are recorded in
:attr:`BasePruner.skipped` with their reason.

After a step, the pruned model runs once on shape-only stand-ins (:mod:`.post_check`); a group that breaks it is
rolled back exactly and recorded as skipped (kind ``"check"``), with one warning: a step never hands back a model
that does not run (``post_prune_check=False`` turns the check off). A step is safe to interrupt: each group is
pruned whole or not at all (``KeyboardInterrupt`` included), the groups finished before the interrupt stay pruned
and in :attr:`BasePruner.history`, and calling ``step()`` again finishes the interrupted step. Any other error in
a step (e.g. an importance that returns NaN scores) rolls the whole step back before it is raised.

Attention is found by the graph, in every common form (:mod:`prune_explorer.attention`): with ``prune_num_heads=True`` its groups lose
whole heads at ``head_pruning_ratio``, otherwise (``prune_head_dims=True``, the default) the same head dims from
every head at ``pruning_ratio``; ``num_heads`` need not be declared.

Three records of what happened, not to be confused: ``pruner.DG.history`` (the graph's undoable
:class:`~prune_explorer.graph.PruneRecord` objects), :attr:`BasePruner.history` (the same prunings as JSON-able
dicts, with the step, scope and ratio of the proposal that made them) and :attr:`BasePruner.skipped`.
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import PruneExplorerError
from ..graph import DEFAULT_ROOT_TYPES, DependencyGraph, Group, model_history
from .config import PrunerConfigError, check_options
from .driver import PruningDriver
from .guards import SkippedGroup
from .post_check import PostPruneCheck
from ..graph.model.group import HEADS_KIND
from .planning import Planner
from .proposal import Proposal
from .report import PruningReport, build_report, parameter_count, zero_groups_warning
from .schedulers import linear_scheduler
from .scope import ScopeRules
from .stepping import PruningSteps

__all__ = ["BasePruner", "PrunerConfigError"]


class _Option:
    """A pruner attribute stored in its checked options (``pruner.options``), so the planner sees later changes."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, objtype=None):
        return self if obj is None else getattr(obj.options, self.name)

    def __set__(self, obj, value) -> None:
        setattr(obj.options, self.name, value)


class BasePruner(PruningSteps):
    """Structural pruner with Torch-Pruning 1.6's options (see the module docstring for what a step does).

    Args:
        model: the model to prune (in place).
        example_inputs: inputs for tracing (tensor, tuple/list of positional inputs, or dict of keyword inputs).
        importance: a criterion ``imp(group) -> scores`` (see :mod:`prune_explorer.importance`).
        global_pruning: rank every group together (one ``global`` scope) instead of each group alone.
        pruning_ratio: fraction of each layer's initial channels removed by the end of the last step, in [0, 1).
        pruning_ratio_dict: ``{module: ratio}`` overrides the ratio of the group rooted at (or containing the outputs
            of) ``module``; ``{(m1, m2, ...): ratio}`` ranks those modules' groups together with that ratio.
        max_pruning_ratio: no layer loses more than this fraction of its initial channels, in (0, 1].
        iterative_steps: number of steps reaching ``pruning_ratio``; ``iterative_pruning_ratio_scheduler(ratio,
            steps)`` gives the cumulative ratio after each step (default: linear).
        ignored_layers: modules (with all their submodules), parameters or their qualified names (``["fc"]``)
            never pruned (their outputs are kept).
        round_to: pruned layers keep a multiple of this many channels (e.g. 8).
        isomorphic: rank groups of identical structure together (isomorphic pruning).
        in_channel_groups / out_channel_groups: ``{module: g}``: that side of the module is ``g`` equal blocks that
            must lose the same offsets.
        num_heads: ``{module: h}`` optional: the graph finds attention heads itself (q / k / v or fused qkv
            projections, ``nn.MultiheadAttention``); a declaration is checked against what it finds, and a declared
            layer whose heads it cannot see loses the same offsets from every head (see :mod:`prune_explorer.attention.proposals`).
        prune_num_heads / head_pruning_ratio / head_pruning_ratio_dict: remove whole heads: that fraction of each
            attention block's heads ({module: ratio} keyed by a q, k or v projection). With grouped-query attention
            a key/value head leaves with the query heads that read it. Head dims are then kept.
        prune_head_dims: remove the same dims from every head at ``pruning_ratio`` (when ``prune_num_heads`` is
            False); False keeps attention projections as they are.
        customized_pruners, unwrapped_parameters, forward_fn, output_transform: passed to
            :meth:`DependencyGraph.build_dependency`.
        root_module_types: layer types whose outputs root the groups.
        post_prune_check: after each step, run the pruned model on shape-only stand-ins and roll back any group
            that breaks it (see :mod:`.post_check`).
        calibration: calibration data (:class:`prune_explorer.calibration.Calibration`, or an iterable of example
            inputs): at the start of each step, one pass feeds a data-driven importance (anything with ``attach`` /
            ``detach``: Taylor, Hessian, activation, OBDC, Wanda, fluctuation), its earlier statistics cleared.
        compensation: a :class:`prune_explorer.compensation.Compensation`: every cut the driver prunes (``step()``,
            the explorer's accepts, plans) is compensated; its statistics come from the same calibration pass
            (so ``calibration`` is needed). ``step(interactive=True)``: call ``compensation.prune(group)`` yourself.
        prune_depth / depth_pruning_ratio / depth_importance: whole residual blocks become groups of the walk too
            (``group.kind == "depth"``, after the width groups; :mod:`prune_explorer.depth.source`): the fraction
            ``depth_pruning_ratio`` of the blocks with the lowest block influence on ``calibration`` (or
            ``depth_importance(model, groups)``) is proposed for removal. ``pruner.depth`` is the source.

    The checked options live in ``pruner.options`` (:class:`~.config.PrunerOptions`); the attributes of the same
    names read and write them.
    """

    importance = _Option()
    pruning_ratio = _Option()
    max_pruning_ratio = _Option()
    iterative_steps = _Option()
    iterative_pruning_ratio_scheduler = _Option()
    round_to = _Option()
    global_pruning = _Option()
    isomorphic = _Option()
    prune_num_heads = _Option()
    prune_head_dims = _Option()
    head_pruning_ratio = _Option()
    root_module_types = _Option()
    ignored_layers = _Option()
    pruning_ratio_dict = _Option()
    in_channel_groups = _Option()
    out_channel_groups = _Option()
    num_heads = _Option()
    head_pruning_ratio_dict = _Option()
    per_step_pruning_ratio = _Option()
    per_step_head_pruning_ratio = _Option()

    def __init__(
        self,
        model: nn.Module,
        example_inputs,
        importance: Callable,
        global_pruning: bool = False,
        pruning_ratio: float = 0.5,
        pruning_ratio_dict: Optional[Dict] = None,
        max_pruning_ratio: float = 1.0,
        iterative_steps: int = 1,
        iterative_pruning_ratio_scheduler: Callable = linear_scheduler,
        ignored_layers: Optional[Iterable] = None,
        round_to: Optional[int] = None,
        isomorphic: bool = False,
        in_channel_groups: Optional[Dict[nn.Module, int]] = None,
        out_channel_groups: Optional[Dict[nn.Module, int]] = None,
        num_heads: Optional[Dict[nn.Module, int]] = None,
        prune_num_heads: bool = False,
        prune_head_dims: bool = True,
        head_pruning_ratio: float = 0.0,
        head_pruning_ratio_dict: Optional[Dict[nn.Module, float]] = None,
        customized_pruners: Optional[Dict] = None,
        unwrapped_parameters=None,
        root_module_types: Sequence[type] = DEFAULT_ROOT_TYPES,
        forward_fn: Optional[Callable] = None,
        output_transform: Optional[Callable] = None,
        post_prune_check: bool = True,
        calibration=None,
        compensation=None,
        prune_depth: bool = False,
        depth_pruning_ratio: float = 0.0,
        depth_importance: Optional[Callable] = None,
    ):
        if not isinstance(post_prune_check, bool):
            raise PrunerConfigError(f"post_prune_check must be True or False, got {post_prune_check!r}")
        if compensation is not None and calibration is None:
            raise PrunerConfigError("compensation= needs calibration= (the data its statistics are gathered on)")
        # nothing touches the model before every option is checked
        self.options = check_options(
            model, importance=importance, global_pruning=global_pruning, pruning_ratio=pruning_ratio,
            pruning_ratio_dict=pruning_ratio_dict, max_pruning_ratio=max_pruning_ratio,
            iterative_steps=iterative_steps, iterative_pruning_ratio_scheduler=iterative_pruning_ratio_scheduler,
            ignored_layers=ignored_layers, round_to=round_to, isomorphic=isomorphic,
            in_channel_groups=in_channel_groups, out_channel_groups=out_channel_groups, num_heads=num_heads,
            prune_num_heads=prune_num_heads, prune_head_dims=prune_head_dims, head_pruning_ratio=head_pruning_ratio,
            head_pruning_ratio_dict=head_pruning_ratio_dict, root_module_types=root_module_types,
        )
        self.model = model
        self.DG = DependencyGraph().build_dependency(
            model, example_inputs=example_inputs, forward_fn=forward_fn, output_transform=output_transform,
            unwrapped_parameters=unwrapped_parameters, customized_pruners=customized_pruners,
            head_pruning="heads" if self.options.prune_num_heads else "dims",
        )
        self.example_inputs = example_inputs
        self.post_prune_check = post_prune_check
        self.calibration = None
        self.compensation = None
        #: the post-prune check of this pruner's graph (:class:`~.post_check.PostPruneCheck`)
        self.check = PostPruneCheck(self.DG, example_inputs, forward_fn)
        #: the one pruning path (:mod:`.driver`): every pruning of this pruner, the explorer, plans and scans
        self.driver = PruningDriver(self)
        self.use_calibration(calibration, compensation)
        #: the depth groups' source (:class:`~prune_explorer.depth.source.DepthSource`) with ``prune_depth=True``
        self.depth = None
        if prune_depth:
            from ..depth.source import attach_depth

            self.depth = attach_depth(self, depth_pruning_ratio, depth_importance)
        #: root space index -> why the post-prune check rolled its group back (later steps leave it alone)
        self.check_failed: Dict[int, str] = {}
        self._head_dims: Optional["HeadDimGroups"] = None
        if self.options.prune_num_heads and self.options.prune_head_dims and any(
                g.kind == HEADS_KIND for g in self.DG.get_all_groups(ignored_layers=self.ignored_layers)):
            # whole heads and narrower heads: a second graph, for head dims, kept in step with the first
            def build_dims_graph():
                return DependencyGraph().build_dependency(
                    model, example_inputs=example_inputs, forward_fn=forward_fn, output_transform=output_transform,
                    unwrapped_parameters=unwrapped_parameters, customized_pruners=customized_pruners,
                    head_pruning="dims")

            from ..attention.proposals import HeadDimGroups
            self._head_dims = HeadDimGroups(self.DG, build_dims_graph, self.ignored_layers)
        self._record_initial_sizes()
        if any(e.get("kind") == "depth" and e.get("mode") == "delete" for e in model_history(model)):
            warnings.warn("prune_explorer: layers of this model's layer stack were deleted by an earlier pruner, so its "
                          "layers were renumbered: the prunings of this new pruner are named after the new numbers, "
                          "which pe.load_pruned / apply_history cannot replay after the earlier ones. Prune widths and "
                          "depth with one pruner (prune_depth=True), or save the model with save_pretrained",
                          stacklevel=2)
        #: the model's parameter count when the pruner was built (see :meth:`report`)
        self.initial_params = parameter_count(model)
        self._check_declared_heads()
        nothing = zero_groups_warning(self)
        if nothing is not None:
            warnings.warn(nothing, stacklevel=2)
        self.scopes = ScopeRules(self.options, self._init_shape, self._init_size)
        self.planner = Planner(self.options, self.DG, self._init_size, self.scopes, self._head_layers,
                               self.estimate_importance, self.graph_groups, self.check_failed)
        # whole-head groups lose head_pruning_ratio of the heads (or key/value groups) they had at first
        self.planner.initial_units = {g.root_space.index: len(g.units) for g in self.graph_groups()
                                      if g.kind == HEADS_KIND}
        self.current_step = 0
        self.skipped: List[SkippedGroup] = []
        self._made_by: Dict[int, dict] = {}  # id(PruneRecord) -> step, scope and ratio of the proposal behind it
        self._active_step: Optional[int] = None
        self._step_budgets = None
        self._reg_groups = None
        self._reg_groups_version = None

    def calibration_collectors(self) -> list:
        """What the calibration pass of a step feeds: the importance, when it gathers data (``attach`` /
        ``detach``), and the compensation."""
        imp = self.importance
        out = [imp] if hasattr(imp, "attach") and hasattr(imp, "detach") else []
        return out + ([self.compensation] if self.compensation is not None else [])

    def use_calibration(self, calibration, compensation=None) -> None:
        """Set :attr:`calibration` (data for the pass at the start of each step) and :attr:`compensation` (every cut
        the driver prunes is compensated: the driver's applier is wrapped once, see
        :meth:`prune_explorer.compensation.Compensation.wrap_applier`). Nothing is run yet (:meth:`calibrate`)."""
        if compensation is not None and calibration is None:
            raise PrunerConfigError("compensation= needs calibration= (the data its statistics are gathered on)")
        self.calibration = calibration
        if compensation is not self.compensation:
            inner = self.driver.applier
            if self.compensation is not None:
                inner = inner.inner
            self.driver.applier = compensation.wrap_applier(inner) if compensation is not None else inner
            self.compensation = compensation

    def calibrate(self) -> int:
        """Run :attr:`calibration` once through the model for :meth:`calibration_collectors` (their earlier
        statistics cleared); returns the number of batches (0 when there is no calibration data or no collector)."""
        collectors = self.calibration_collectors()
        if self.calibration is None or not collectors:
            return 0
        from ..calibration import calibrate

        for c in collectors:
            clear = getattr(c, "clear", None)
            if clear is not None:
                clear()
        return calibrate(self.model, self.calibration, collectors)

    def _record_initial_sizes(self) -> None:
        """The sizes the model has when the pruner is built, read in one pass over the spaces: ``_init_size`` (space
        index -> channels), ``_init_shape`` (space index -> shape of the owner's weight, or of the loose parameter;
        None without one), ``layer_init_out_ch`` / ``layer_init_in_ch`` (layer -> its first output / input space's
        channels)."""
        init_size, init_shape, out_ch, in_ch = {}, {}, {}, {}
        shapes = {}  # id(layer) -> its weight's shape (a layer with two spaces reads it once)
        for s in self.DG.spaces:
            n = init_size[s.index] = s.current_size
            owner = s.owner
            if s.dim is not None:
                init_shape[s.index] = tuple(owner.shape) if isinstance(owner, torch.Tensor) else None
                continue
            key = id(owner)
            shape = shapes.get(key, shapes)
            if shape is shapes:
                w = getattr(owner, "weight", None)
                shape = shapes[key] = tuple(w.shape) if isinstance(w, torch.Tensor) else None
            init_shape[s.index] = shape
            if s.passthrough:
                out_ch.setdefault(owner, n)
                in_ch.setdefault(owner, n)
            elif s.side == "out":
                out_ch.setdefault(owner, n)
            elif s.side == "in":
                in_ch.setdefault(owner, n)
        self._init_size, self._init_shape = init_size, init_shape
        self.layer_init_out_ch, self.layer_init_in_ch = out_ch, in_ch

    def _check_declared_heads(self) -> None:
        """``num_heads`` checked against the heads the graph found (see
        :func:`~prune_explorer.attention.proposals.declared_heads`)."""
        self._head_layers, self._unhandled_heads = {}, {}
        if self.num_heads:
            from ..attention.proposals import declared_heads
            self._head_layers, self._unhandled_heads = declared_heads(self.DG, self.num_heads,
                                                                      self.options.module_names)

    @property
    def attention_blocks(self) -> list:
        """The attention blocks of the model as it is now (:class:`~prune_explorer.attention.heads.AttentionHeads`: heads,
        key-value heads, head size, and which heads / head dims were removed), from the graph."""
        return self.DG.attention_blocks()

    # ==================================================================================================================
    # groups, sizes, scores
    # ==================================================================================================================
    @property
    def group_ignored_layers(self) -> List:
        """What the pruner passes to ``DG.get_all_groups``: ``ignored_layers``."""
        return list(self.ignored_layers)

    def graph_groups(self) -> Iterator[Group]:
        """The graph's groups as the model is now (lazily), with :attr:`group_ignored_layers` left out."""
        return self.DG.get_all_groups(ignored_layers=self.group_ignored_layers, root_module_types=self.root_module_types)

    @property
    def head_dim_groups(self) -> Optional["HeadDimGroups"]:
        """The head-dim groups next to whole heads (:class:`~prune_explorer.attention.proposals.HeadDimGroups`), when
        both are pruned."""
        return self._head_dims

    def get_all_groups(self) -> Iterator[Group]:
        """Every group a step considers, as the model is now: the graph's groups (with :attr:`group_ignored_layers`
        left out; attention groups have ``group.kind`` ``"attention-heads"`` or ``"attention-dims"``), then, when
        whole heads and head dims are both pruned, the head-dim groups
        (:class:`~prune_explorer.attention.proposals.HeadDimGroups`); the walk of
        :meth:`driver.groups <.driver.PruningDriver.groups>`."""
        return self.driver.groups()

    def report(self) -> PruningReport:
        """What pruning did so far and what stays: per group its root, root channels before / after, members and
        why a step left it alone; per fixed width the graph's reason (see :mod:`.report`). Prints as tables."""
        return build_report(self)

    def initial_channels(self, layer, side: str = "out") -> Optional[int]:
        """The channel count ``layer`` (a module or loose parameter) had when the pruner was built (``side``:
        ``"out"`` or ``"in"``); None when it has no such channels."""
        for s in self.DG.spaces_of(layer):
            if s.side == side or s.passthrough:
                return self._init_size.get(s.index, s.size)
        return None

    def estimate_importance(self, group) -> Optional[torch.Tensor]:
        """``importance(group)``, checked: one float per channel of ``group.root_idxs`` (or None)."""
        imp = self.importance(group)
        if imp is None:
            return None
        if not isinstance(imp, torch.Tensor):
            imp = torch.as_tensor(imp)
        plain = (type(imp) is torch.Tensor and imp.dtype == torch.float32 and imp.is_cpu and imp.dim() == 1
                 and not imp.requires_grad)  # (what the criteria return: read as it is, its NaN test in numpy)
        if not plain:
            imp = imp.detach().to("cpu", torch.float32).reshape(-1) if imp.dim() <= 1 else imp
        n = len(group.root_idxs)
        if imp.dim() != 1 or imp.numel() != n:
            raise PruneExplorerError(
                f"{type(self.importance).__name__} returned scores of shape {tuple(imp.shape)} for the group rooted at "
                f"{group.root_name}, which covers {n} channels; an importance must return one score per channel of "
                "group.root_idxs"
            )
        if plain:  # a NaN anywhere makes the minimum NaN
            has_nan = n > 0 and bool(np.isnan(np.minimum.reduce(imp.numpy())))
        else:
            has_nan = bool(torch.isnan(imp).any())
        if has_nan:
            nan = torch.isnan(imp)
            raise PruneExplorerError(
                f"{type(self.importance).__name__} returned NaN scores for {int(nan.sum())} of the {n} channels of the "
                f"group rooted at {group.root_name}, so they cannot be ranked. The usual cause is NaN or infinite "
                "weights or gradients (e.g. a diverged training step, or a Taylor/Hessian importance used before "
                "any backward pass). Fix the weights (check torch.isfinite(p).all() for every parameter) or the "
                "criterion, then step again; the model was left as it was before this step"
            )
        return imp

    @property
    def history(self) -> List[dict]:
        """What this pruner's graph actually pruned, in order (undone prunings are gone): JSON-able dicts
        ``{"root", "root_fn", "members": [{"name", "fn", "side", "idxs", ...}], "step", "scope", "pruning_ratio"}``
        (the last three are None for prunings made outside the pruner's proposals, e.g. a direct ``group.prune()``).
        ``pe.graph.model_history(model)`` holds the same entries without them."""
        blank = {"step": None, "scope": None, "pruning_ratio": None}
        out = []
        for rec in self.DG.history:
            made = self._made_by.get(id(rec), blank)
            per_group = made.get("parts")  # a batched cut: what each of its groups was pruned for
            for k, entry in enumerate(rec.entries()):
                out.append(dict(entry, **(per_group[k] if per_group else made)))
        return out

    def pruning_history(self) -> List[dict]:
        """Same as :attr:`history` (Torch-Pruning's method name)."""
        return self.history

    def reset(self) -> None:
        """Start the schedule again from step 0 (the model stays as it is)."""
        self.current_step = 0

    # ==================================================================================================================
    # proposals
    # ==================================================================================================================
    def max_removable(self, group) -> int:
        """The most root channels the guards and constraints let this group (or proposal) lose now (0 if a guard
        refuses it)."""
        if getattr(group, "kind", None) == "depth":
            return len(group.root_idxs) if hasattr(group, "block") else group.max_removable
        return self.planner.max_removable(group)

    def propose(self, group, n_remove: int) -> List[int]:
        """The root channels (current indices, sorted) to remove so the group loses about ``n_remove`` channels:
        the lowest-importance whole units, the count rounded down to keep ``round_to`` / member multiples / the
        guards, and clipped to :meth:`max_removable`. Given a :class:`~.proposal.Proposal`, reuses its scores.
        A depth group: ``[0]`` (the block) when ``n_remove > 0``."""
        if getattr(group, "kind", None) == "depth":
            return [0] if n_remove > 0 and self.max_removable(group) else []
        return self.planner.choose(group, n_remove)

    def proposal(self, group, step: Optional[int] = None) -> Proposal:
        """The :class:`~.proposal.Proposal` a step would make for ``group`` (a group from :meth:`get_all_groups` or
        ``pruner.DG.get_all_groups(...)``, or a proposal, standing for its group). Nothing is pruned. ``step``
        defaults to the step in progress, or else the next one."""
        if step is None:
            step = self._active_step if self._active_step is not None else \
                max(1, min(self.current_step + 1, self.iterative_steps))
        if self._active_step == step and self._step_budgets is not None:
            budgets = self._step_budgets  # inside a step: the shares the step decided at its start
        else:
            budgets = self.planner.budgets(step, cached=True)
        return self.driver.propose(group, step, budgets, on_pruned=self._remember)

    #: the former name of :meth:`proposal`, kept for code written against it (``pe.plan`` is another thing: per-group
    #: channel counts applied later)
    plan = proposal

    def _remember(self, proposal: Proposal, record) -> None:
        if record is not None:
            self._made_by[id(record)] = {"step": proposal.step, "scope": proposal.scope,
                                         "pruning_ratio": proposal.pruning_ratio}

    # ==================================================================================================================
    # regularization hooks (see algorithms.py)
    # ==================================================================================================================
    def update_regularizer(self) -> None:
        """Re-list the groups the regularizer works on (call after pruning; done automatically when the graph
        changed)."""
        self._reg_groups = list(self.get_all_groups())
        self._reg_groups_version = self.DG.version

    def _regularizer_groups(self) -> List[Group]:
        if self._reg_groups is None or self._reg_groups_version != self.DG.version:
            self.update_regularizer()
        return self._reg_groups

    def regularize(self, model: nn.Module = None, *args, **kwargs) -> None:
        """No regularization in the base pruner (see BNScalePruner, GroupNormPruner)."""
        return None

    def __repr__(self) -> str:
        mode = "isomorphic" if self.isomorphic else ("global" if self.global_pruning else "local")
        return (f"{type(self).__name__}({type(self.model).__name__}, {mode}, pruning_ratio={self.pruning_ratio}, "
                f"step {self.current_step}/{self.iterative_steps}, importance={self.importance!r})")
