"""BasePruner: rank channels with an importance criterion and prune groups step by step (Torch-Pruning semantics).

    >>> import torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> pruner = pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 224, 224), pe.importance.MagnitudeImportance(p=2),
    ...                                    pruning_ratio=0.5, ignored_layers=[model.fc])
    >>> pruner.step()                      # every conv keeps half of its output channels

What a step does, group by group (groups come lazily from ``DG.get_all_groups``, each computed against the model
as the earlier groups left it):

1. **guards** (:mod:`.guards`): skip the group when a member already has fewer than ``initial * (1 -
   max_pruning_ratio)`` channels or is down to 1 channel;
2. **importance**: ``importance(group)``, one score per root channel (``None``: skipped);
3. **target**: the group's scope (:mod:`.scope`) and ratio for this step. A local scope removes
   ``current - int(initial * (1 - ratio))`` root channels; a shared scope (global, isomorphic, a tuple key of
   ``pruning_ratio_dict``) ranked all its groups before the first one was pruned and gives each its share;
4. **proposal** (:meth:`BasePruner.propose`): the lowest-scored whole units (``group.units``, plus the same offsets
   in every block of layers listed in ``in_channel_groups`` / ``out_channel_groups`` / ``num_heads``) whose count
   keeps ``round_to``, each member's ``channel_multiple`` and the guards satisfied (rounded down);
5. ``group.select(proposed).prune()``, or, in interactive mode, the group is yielded for the caller to prune,
   override (``group.prune(idxs=[...])``) or skip (do nothing).

Attention blocks with separate q/k/v/o layers declared in ``num_heads`` are pruned first, by the pruner itself
(:mod:`.heads`): head dims (``prune_head_dims``) and whole heads (``prune_num_heads``, ``head_pruning_ratio``).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import defaultdict
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..errors import PruneExplorerError, PruningError
from ..graph import DEFAULT_ROOT_TYPES, DependencyGraph, Group
from ..importance.base import root_positions
from . import guards as G
from .guards import SkippedGroup, feasible_prefixes, feasible_units
from .heads import AttentionBlock, ExplicitGroup, find_attention_blocks
from .schedulers import linear_scheduler
from .scope import GLOBAL, ISOMORPHIC, LOCAL, USER, rank_scope, structural_signature

__all__ = ["BasePruner", "PrunerConfigError", "PlannedGroup", "PlannedExplicitGroup"]


class PrunerConfigError(PruneExplorerError, ValueError):
    """An option of a pruner is invalid; the message names the option and the fix. The model is untouched."""


# ----------------------------------------------------------------------------------------------------------------------
# planned groups: what step(interactive=True) yields and plan() returns
# ----------------------------------------------------------------------------------------------------------------------
class _Planned:
    """Mixin for a group with a pruning proposal attached (see :meth:`BasePruner.plan`).

    Attributes: ``importance`` (one score per channel of ``candidate_idxs``), ``candidate_idxs`` (every root channel
    the full group covers), ``prune_units`` (the candidate channels grouped as the pruner removes them: the graph's
    units merged with declared head / channel-group ties), ``proposed_idxs`` (the root channels the pruner proposes to remove; this group's own
    members are that selection), ``scope``, ``pruning_ratio``, ``step``, ``n_target`` (channels the target asks
    for), ``max_removable``, ``skip_reason`` (why nothing is proposed, or None) and, once pruned, ``record``.
    ``prune()`` removes the proposal; ``prune(idxs=[...])`` removes your own choice of candidate root channels
    (whole units) instead; not calling it skips the group.
    """

    def _init_plan(self, full, pruner, **attrs):
        self._full = full
        self._pruner = pruner
        self.record = None
        for k, v in attrs.items():
            setattr(self, k, v)

    @property
    def full_group(self):
        """The whole group (every candidate channel), e.g. to ``select`` another subset."""
        return self._full

    def select(self, idxs, validate: bool = True):
        return self._full.select(idxs, validate=validate)

    def prune(self, idxs=None, record_history: bool = True):
        if idxs is None:
            if not self.proposed_idxs:
                return None
            rec = super().prune(None, record_history=record_history)
            chosen = list(self.proposed_idxs)
        else:
            target = self._full.select(idxs)
            chosen = list(target.root_idxs)
            rec = target.prune(record_history=record_history)
        self.record = rec
        self._pruner._after_prune(self, chosen, rec)
        return rec

    @property
    def was_pruned(self) -> bool:
        return self.record is not None

    def details(self, max_idxs: int = 8) -> str:
        n_cand = len(self.candidate_idxs)
        shown = ", ".join(str(i) for i in list(self.proposed_idxs)[:max_idxs])
        more = ", ..." if len(self.proposed_idxs) > max_idxs else ""
        head = (
            f"Plan (step {self.step}, scope {self.scope}, ratio {self.pruning_ratio:.3f}): remove "
            f"{len(self.proposed_idxs)} of {n_cand} candidate channels [{shown}{more}]"
        )
        if self.skip_reason:
            head += f"\n  nothing proposed: {self.skip_reason}"
        if not self.proposed_idxs:
            return head
        return head + "\n" + super().details(max_idxs)


class PlannedGroup(_Planned, Group):
    """A graph :class:`~prune_explorer.graph.Group` restricted to the proposal, with the plan attached."""


class PlannedExplicitGroup(_Planned, ExplicitGroup):
    """An attention-head group restricted to the proposal, with the plan attached."""


def _as_planned(sub, full, pruner, **attrs):
    sub.__class__ = PlannedExplicitGroup if isinstance(sub, ExplicitGroup) else PlannedGroup
    sub._init_plan(full, pruner, **attrs)
    return sub


# ----------------------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------------------
def _is_ratio(x, hi_open=True) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return False
    return 0.0 <= x < 1.0 if hi_open else 0.0 < x <= 1.0


def _check_ratio(name: str, x) -> float:
    if not _is_ratio(x):
        raise PrunerConfigError(
            f"{name}={x!r} must be a number in [0, 1) (the fraction of each layer's channels to remove). "
            f"Fix: pass e.g. {name}=0.5"
        )
    return float(x)


class BasePruner:
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
        ignored_layers: modules (with all their submodules) or parameters never pruned (their outputs are kept).
        round_to: pruned layers keep a multiple of this many channels (e.g. 8).
        isomorphic: rank groups of identical structure together (isomorphic pruning).
        in_channel_groups / out_channel_groups: ``{module: g}``: that side of the module is ``g`` equal blocks that
            must lose the same offsets.
        num_heads: ``{module: h}`` declares attention heads: separate q/k/v Linear layers (their parent's block is
            pruned by head, see :mod:`.heads`) or an ``nn.MultiheadAttention`` / fused projection (the same offsets
            are removed from every head).
        prune_num_heads / head_pruning_ratio / head_pruning_ratio_dict: remove whole heads ({module: ratio} keyed by
            a declared q, k or v layer).
        prune_head_dims: remove dims inside heads (False keeps the head size of declared layers).
        customized_pruners, unwrapped_parameters, forward_fn, output_transform: passed to
            :meth:`DependencyGraph.build_dependency`.
        root_module_types: layer types whose outputs root the groups.
    """

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
    ):
        # ---- validation (nothing touches the model before everything is checked) --------------------------------
        if not isinstance(model, nn.Module):
            raise PrunerConfigError(f"model must be an nn.Module, got {type(model).__name__}")
        if not callable(importance):
            raise PrunerConfigError(
                f"importance must be a callable criterion, got {importance!r}. "
                "Fix: pass e.g. importance=pe.importance.MagnitudeImportance(p=2)"
            )
        if getattr(importance, "group_reduction", "mean") is None:
            raise PrunerConfigError(
                "importance has group_reduction=None, which returns one row per member; the pruner needs one score "
                "per channel. Fix: use group_reduction='mean' (or 'sum', 'max', ...)"
            )
        self.model = model
        self.importance = importance
        self.pruning_ratio = _check_ratio("pruning_ratio", pruning_ratio)
        if not _is_ratio(max_pruning_ratio, hi_open=False):
            raise PrunerConfigError(
                f"max_pruning_ratio={max_pruning_ratio!r} must be a number in (0, 1] (the most any layer may lose). "
                "Fix: pass e.g. max_pruning_ratio=0.9, or leave the default 1.0"
            )
        self.max_pruning_ratio = float(max_pruning_ratio)
        if isinstance(iterative_steps, bool) or not isinstance(iterative_steps, int) or iterative_steps < 1:
            raise PrunerConfigError(f"iterative_steps={iterative_steps!r} must be an int >= 1. Fix: pass e.g. iterative_steps=5")
        self.iterative_steps = iterative_steps
        if not callable(iterative_pruning_ratio_scheduler):
            raise PrunerConfigError("iterative_pruning_ratio_scheduler must be callable(ratio, steps) -> list of ratios")
        self.iterative_pruning_ratio_scheduler = iterative_pruning_ratio_scheduler
        if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
            raise PrunerConfigError(f"round_to={round_to!r} must be None or an int >= 1. Fix: pass e.g. round_to=8")
        self.round_to = round_to
        self.global_pruning = bool(global_pruning)
        self.isomorphic = bool(isomorphic)
        self.prune_num_heads = bool(prune_num_heads)
        self.prune_head_dims = bool(prune_head_dims)
        self.head_pruning_ratio = _check_ratio("head_pruning_ratio", head_pruning_ratio)
        self.root_module_types = tuple(root_module_types) if root_module_types else DEFAULT_ROOT_TYPES
        for t in self.root_module_types:
            if not isinstance(t, type):
                raise PrunerConfigError(f"root_module_types must hold layer types (classes), got {t!r}")

        modules = {id(m): n for n, m in model.named_modules()}
        self._names = dict(modules)
        params = {id(p): n for n, p in model.named_parameters()}

        def where(obj, option):
            if isinstance(obj, nn.Parameter):
                if id(obj) not in params:
                    raise PrunerConfigError(f"{option}: a Parameter of shape {tuple(obj.shape)} is not a parameter of the model. "
                                            "Fix: pass parameters from model.parameters()")
                return params[id(obj)]
            if isinstance(obj, nn.Module):
                if id(obj) not in modules:
                    raise PrunerConfigError(f"{option}: {type(obj).__name__} {obj!r:.80} is not a submodule of the model. "
                                            "Fix: pass modules from model.modules() (of the model being pruned, not a copy)")
                return modules[id(obj)] or "<model>"
            raise PrunerConfigError(f"{option}: expected a module (or parameter), got {type(obj).__name__} {obj!r:.80}")

        # ignored layers, expanded to submodules as in Torch-Pruning
        self.ignored_layers: List = []
        seen = set()
        for obj in list(ignored_layers or []):
            where(obj, "ignored_layers")
            for m in (obj.modules() if isinstance(obj, nn.Module) else [obj]):
                if id(m) not in seen:
                    seen.add(id(m))
                    self.ignored_layers.append(m)

        # pruning_ratio_dict: module or tuple of modules -> ratio
        self.pruning_ratio_dict: Dict = {}
        self._ratio_key_of: Dict[int, object] = {}
        for key, ratio in (pruning_ratio_dict or {}).items():
            mods = tuple(key) if isinstance(key, (tuple, list)) else (key,)
            if not mods:
                raise PrunerConfigError("pruning_ratio_dict: an empty tuple is not a valid key. Fix: list the modules")
            label = ", ".join(where(m, "pruning_ratio_dict key") for m in mods)
            if not all(isinstance(m, nn.Module) for m in mods):
                raise PrunerConfigError(f"pruning_ratio_dict key ({label}) must be a module or a tuple of modules")
            _check_ratio(f"pruning_ratio_dict[{label}]", ratio)
            k = tuple(mods) if isinstance(key, (tuple, list)) else key
            for m in mods:
                if id(m) in self._ratio_key_of:
                    raise PrunerConfigError(f"pruning_ratio_dict: {where(m, '')} appears in two keys. Fix: list each module once")
                self._ratio_key_of[id(m)] = k
            self.pruning_ratio_dict[k] = float(ratio)
        # as in Torch-Pruning, a container key (e.g. model.layer4) sets the ratio of every layer inside it;
        # a key naming an inner layer explicitly wins
        for k in list(self.pruning_ratio_dict):
            if not isinstance(k, tuple):
                for sub in k.modules():
                    self._ratio_key_of.setdefault(id(sub), k)

        def module_int_dict(d, option):
            out = {}
            for m, v in (d or {}).items():
                where(m, option)
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise PrunerConfigError(f"{option}[{where(m, option)}]={v!r} must be an int >= 1")
                out[m] = v
            return out

        self.in_channel_groups = module_int_dict(in_channel_groups, "in_channel_groups")
        self.out_channel_groups = module_int_dict(out_channel_groups, "out_channel_groups")
        self.num_heads = module_int_dict(num_heads, "num_heads")
        for m, h in self.num_heads.items():
            n = m.out_features if isinstance(m, nn.Linear) else getattr(m, "embed_dim", None)
            if n is not None and n % h:
                raise PrunerConfigError(
                    f"num_heads[{where(m, '')}]={h} does not divide its {n} output features. Fix: give the head count "
                    "of that layer (for grouped-query attention, k and v have num_key_value_heads)"
                )
        self.head_pruning_ratio_dict = {}
        for m, r in (head_pruning_ratio_dict or {}).items():
            where(m, "head_pruning_ratio_dict")
            self.head_pruning_ratio_dict[m] = _check_ratio(f"head_pruning_ratio_dict[{where(m, '')}]", r)

        # schedules
        self.per_step_pruning_ratio = self._schedule(self.pruning_ratio, "pruning_ratio")
        self._schedules = {k: self._schedule(r, f"pruning_ratio_dict[{k!r:.40}]") for k, r in self.pruning_ratio_dict.items()}
        self.per_step_head_pruning_ratio = self._schedule(self.head_pruning_ratio, "head_pruning_ratio")
        self._head_schedules = {id(m): self._schedule(r, "head_pruning_ratio_dict") for m, r in self.head_pruning_ratio_dict.items()}

        # ---- the graph -------------------------------------------------------------------------------------------
        self.DG = DependencyGraph().build_dependency(
            model, example_inputs=example_inputs, forward_fn=forward_fn, output_transform=output_transform,
            unwrapped_parameters=unwrapped_parameters, customized_pruners=customized_pruners,
        )
        self.example_inputs = example_inputs
        self._init_size = {s.index: s.current_size for s in self.DG.spaces}
        self._init_shape = {}
        for s in self.DG.spaces:
            w = s.owner if s.dim is not None else getattr(s.owner, "weight", None)
            self._init_shape[s.index] = tuple(w.shape) if isinstance(w, torch.Tensor) else None
        self.layer_init_out_ch = {}
        self.layer_init_in_ch = {}
        for s in self.DG.spaces:
            if s.dim is not None:
                continue
            if s.side == "out" or s.passthrough:
                self.layer_init_out_ch.setdefault(s.owner, s.current_size)
            if s.side == "in" or s.passthrough:
                self.layer_init_in_ch.setdefault(s.owner, s.current_size)

        # attention blocks handled here (separate q/k/v/o declared in num_heads)
        self.attention_blocks: List[AttentionBlock] = []
        self._unhandled_heads: Dict[nn.Module, str] = {}
        if self.num_heads:
            blocks, unhandled = find_attention_blocks(self.DG, model, self.num_heads)
            ignored_ids = {id(m) for m in self.ignored_layers}
            self.attention_blocks = [b for b in blocks if not any(id(m) in ignored_ids for m in (b.q, b.k, b.v, b.o))]
            self._unhandled_heads = dict(unhandled)
            for m in self.num_heads:
                if not isinstance(m, nn.Linear):
                    self._unhandled_heads[m] = f"{type(m).__name__} is not a separate q/k/v Linear projection"
        self._attn_modules = [m for b in self.attention_blocks for m in b.modules]
        self._head_layers = {id(m): h for m, h in self.num_heads.items() if not any(m is x for x in self._attn_modules)}

        self.current_step = 0
        self.skipped: List[SkippedGroup] = []
        self._record_info: Dict[int, dict] = {}
        self._active_step: Optional[int] = None
        self._iso_names: Dict[tuple, str] = {}
        self._budget_cache = None
        self._step_budgets = None
        self._imp_cache: Dict[int, tuple] = {}
        self._reg_groups = None
        self._reg_groups_version = None

    # ==================================================================================================================
    # small public helpers
    # ==================================================================================================================
    def _schedule(self, ratio: float, what: str) -> List[float]:
        sched = list(self.iterative_pruning_ratio_scheduler(ratio, self.iterative_steps))
        if len(sched) < self.iterative_steps + 1 or not all(_is_ratio(r) for r in sched[: self.iterative_steps + 1]):
            raise PrunerConfigError(
                f"iterative_pruning_ratio_scheduler({what}={ratio}, steps={self.iterative_steps}) returned {sched!r:.120}; "
                f"it must return {self.iterative_steps + 1} ratios in [0, 1) (the cumulative ratio after each step, "
                "starting with 0)"
            )
        return [float(r) for r in sched]

    @property
    def group_ignored_layers(self) -> List:
        """What the pruner passes to ``DG.get_all_groups``: ``ignored_layers`` plus the attention layers it prunes
        by head itself (their channels are handled by :attr:`attention_blocks`)."""
        return list(self.ignored_layers) + list(self._attn_modules)

    def get_all_groups(self) -> Iterator[Group]:
        """Every group a step considers, as the model is now: the attention-head groups (one per block and mode)
        and the graph's groups (with :attr:`group_ignored_layers` left out)."""
        for g in self._attention_groups():
            if isinstance(g, ExplicitGroup):
                yield g
        yield from self.DG.get_all_groups(ignored_layers=self.group_ignored_layers, root_module_types=self.root_module_types)

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
        imp = imp.detach().to("cpu", torch.float32).reshape(-1) if imp.dim() <= 1 else imp
        n = len(group.root_idxs)
        if imp.dim() != 1 or imp.numel() != n:
            raise PruneExplorerError(
                f"{type(self.importance).__name__} returned scores of shape {tuple(imp.shape)} for the group rooted at "
                f"{group.root_name}, which covers {n} channels; an importance must return one score per channel of "
                "group.root_idxs"
            )
        return imp

    @property
    def history(self) -> List[dict]:
        """What this pruner's graph actually pruned, in order (undone prunings are gone): JSON-able dicts
        ``{"root", "root_fn", "members": [{"name", "fn", "side", "idxs", ...}], "step", "scope", "pruning_ratio"}``
        (the last three are None for prunings made outside the pruner's plans, e.g. a direct ``group.prune()``).
        ``pe.graph.model_history(model)`` holds the same entries without them."""
        blank = {"step": None, "scope": None, "pruning_ratio": None}
        return [dict(rec.as_dict(), **self._record_info.get(id(rec), blank)) for rec in self.DG.history]

    def pruning_history(self) -> List[dict]:
        """Same as :attr:`history` (Torch-Pruning's method name)."""
        return self.history

    def reset(self) -> None:
        """Start the schedule again from step 0 (the model stays as it is)."""
        self.current_step = 0

    # ==================================================================================================================
    # guards, scopes, units
    # ==================================================================================================================
    def _guard(self, group) -> Optional[str]:
        """Why the guards refuse this group (None when it may be pruned)."""
        for it in group.items:
            s = it.dep.space
            cur = s.current_size
            init = self._init_size.get(s.index, s.size)
            if cur <= 1:
                return f"single-channel guard: {s.label} has {cur} channel"
            if cur < init * (1 - self.max_pruning_ratio):
                return (f"max_pruning_ratio guard: {s.label} has {cur} channels, fewer than {init} * (1 - "
                        f"{self.max_pruning_ratio}) = {init * (1 - self.max_pruning_ratio):g}")
        return None

    def _ratio_key(self, group):
        if not self._ratio_key_of:
            return None
        key = self._ratio_key_of.get(id(group.root_module))
        if key is not None:
            return key
        for it in group.items:
            if it.dep.side == "out" or it.dep.space.passthrough:
                key = self._ratio_key_of.get(id(it.dep.layer))
                if key is not None:
                    return key
        return None

    def _scope(self, group, step: int) -> Tuple[str, float]:
        """``(scope name, cumulative target ratio at step)`` of a graph group."""
        key = self._ratio_key(group)
        if isinstance(key, tuple):
            names = ",".join(self._names.get(id(m), "?") for m in key)
            return f"{USER}:{names}", self._schedules[key][step]
        if key is not None:
            return f"{LOCAL}:{group.root_name}", self._schedules[key][step]
        ratio = self.per_step_pruning_ratio[step]
        if self.isomorphic:
            sig = structural_signature(group, self._init_shape, self._init_size)
            name = self._iso_names.get(sig)
            if name is None:
                name = self._iso_names[sig] = f"{ISOMORPHIC}:{len(self._iso_names)}"
            return name, ratio
        if self.global_pruning:
            return GLOBAL, ratio
        return f"{LOCAL}:{group.root_name}", ratio

    def _head_units(self, group) -> Optional[List[List[int]]]:
        """The group's units, merged with the same-offset ties of in/out_channel_groups and declared heads."""
        units = group.units
        ties = []
        for it in group.items:
            s = it.dep.space
            lid = id(it.dep.layer)
            g = None
            if (s.side == "out" or s.passthrough) and it.dep.layer in self.out_channel_groups:
                g = self.out_channel_groups[it.dep.layer]
            elif (s.side == "in" or s.passthrough) and it.dep.layer in self.in_channel_groups:
                g = self.in_channel_groups[it.dep.layer]
            elif (s.side == "out" or s.passthrough) and lid in self._head_layers:
                g = self._head_layers[lid]
            if not g or g <= 1:
                continue
            n = s.current_size
            if n % g:
                continue
            per = n // g
            by_off = defaultdict(list)
            for i, r in zip(it.idxs, it.root_idxs):
                by_off[i % per].append(r)
            ties.extend(v for v in by_off.values() if len(v) > 1)
        if not ties:
            return units
        parent = {}

        def find(x):
            while parent.get(x, x) != x:
                parent[x] = parent.get(parent[x], parent[x])
                x = parent[x]
            return x

        for u in list(units) + ties:
            r0 = find(u[0])
            for x in u[1:]:
                rx = find(x)
                if rx != r0:
                    parent[rx] = r0
        merged = defaultdict(list)
        for r in group.root_idxs:
            merged[find(r)].append(r)
        return sorted(merged.values())

    def _member_constraints(self, group, unit_order: List[List[int]]):
        """Per constrained member: (removed count after each prefix of units, channel multiple, member size)."""
        out = []
        root = group.root_array
        root_size = group.root_space.current_size
        _, pos_of = root_positions(group)
        sizes = np.fromiter(map(len, unit_order), dtype=np.int64, count=len(unit_order))
        unit_of = np.zeros(root.size, dtype=np.int64)  # root position -> its unit's rank in unit_order
        if unit_order:
            unit_of[pos_of(list(itertools.chain.from_iterable(unit_order))).numpy()] = \
                np.repeat(np.arange(len(unit_order)), sizes)
        for it in group.items:
            s = it.dep.space
            mult = 1
            pr = s.pruner
            if s.dim is None and hasattr(pr, "channel_multiple"):
                try:
                    mult = int(pr.channel_multiple(s.owner, "in" if s.side == "in" else "out"))
                except Exception:
                    mult = 1
            full = it.idx_array.size >= s.current_size
            if mult <= 1 and not full:
                continue
            if mult <= 1 and s.current_size == root_size and np.array_equal(it.root_array, root):
                continue  # one channel per root channel: the root's own guard (keep >= 1) already covers it
            per_unit = np.bincount(unit_of[pos_of(it.root_array).numpy()], minlength=len(unit_order))
            counts = np.concatenate([[0], np.cumsum(per_unit)])
            out.append((counts, mult, s.current_size))
        return out

    # ==================================================================================================================
    # planning a group
    # ==================================================================================================================
    def _ranked_units(self, group, imp: Optional[torch.Tensor], units) -> Tuple[List[List[int]], torch.Tensor]:
        if imp is None or not units:
            return units, torch.zeros(len(units))
        root = group.root_array
        if len(units) == root.size and (root.size < 2 or bool((root[1:] > root[:-1]).all())):
            # one channel per unit, root channels ascending (as groups list them): units[k] == [root[k]]
            order = torch.argsort(imp.float(), stable=True)
            return [units[i] for i in order.tolist()], imp.float()[order]
        _, pos_of = root_positions(group)
        pos = pos_of(list(itertools.chain.from_iterable(units)))
        unit_id = np.repeat(np.arange(len(units)), [len(u) for u in units])
        uid = torch.from_numpy(unit_id)
        sums = torch.zeros(len(units), dtype=torch.float32).index_add_(0, uid, imp.float()[pos])
        scores = sums / torch.bincount(uid, minlength=len(units)).float()
        order = torch.argsort(scores, stable=True).tolist()
        return [units[i] for i in order], scores[order]

    def _limits(self, group) -> Tuple[int, int, Optional[int]]:
        """``(root current channels, min channels the root keeps, round_to)`` for a group."""
        s = group.root_space
        cur = s.current_size
        init = self._init_size.get(s.index, s.size)
        min_keep = max(1, int(init * (1 - self.max_pruning_ratio)))
        if isinstance(group, ExplicitGroup):  # attention: keep one unit (a head group / one dim in every head)
            u = group.units
            min_keep = max(min_keep, len(u[0]) if u else 1)
            return cur, min_keep, None
        return cur, min_keep, self.round_to

    def _solve(self, group, ranked_units, n_target: int) -> int:
        """How many of ``ranked_units`` (a prefix) to remove for about ``n_target`` root channels."""
        cur, min_keep, round_to = self._limits(group)
        return feasible_units(map(len, ranked_units), n_target, cur, min_keep, round_to,
                              self._member_constraints(group, ranked_units))

    @staticmethod
    def _full_and_importance(group):
        """A planned group stands for its full group (and carries that group's importance)."""
        if isinstance(group, _Planned):
            return group.full_group, group.importance
        imp = getattr(group, "importance", None)
        return group, (imp if imp is not None and len(imp) == len(group.root_idxs) else None)

    def max_removable(self, group) -> int:
        """The most root channels the guards and constraints let this group lose now (0 if a guard refuses it)."""
        group, imp = self._full_and_importance(group)
        if self._guard(group) is not None:
            return 0
        units = self._units_of(group)
        ranked, _ = self._ranked_units(group, imp, units)
        k = self._solve(group, ranked, 1 << 62)
        return sum(len(u) for u in ranked[:k])

    def _units_of(self, group):
        return group.units if isinstance(group, ExplicitGroup) else self._head_units(group)

    def propose(self, group, n_remove: int) -> List[int]:
        """The root channels (current indices, sorted) to remove so the group loses about ``n_remove`` channels:
        the lowest-importance whole units, the count rounded down to keep ``round_to`` / member multiples / the
        guards, and clipped to :meth:`max_removable`. Uses ``group.importance`` when set, else computes it."""
        group, imp = self._full_and_importance(group)
        if self._guard(group) is not None or n_remove <= 0:
            return []
        if imp is None:
            imp = self.estimate_importance(group)
        units = self._units_of(group)
        ranked, _ = self._ranked_units(group, imp, units)
        k = self._solve(group, ranked, int(n_remove))
        return sorted(r for u in ranked[:k] for r in u)

    def _current_step_for_plan(self) -> int:
        if self._active_step is not None:
            return self._active_step
        return max(1, min(self.current_step + 1, self.iterative_steps))

    def plan(self, group, step: Optional[int] = None):
        """The proposal a step would make for ``group`` (a group from :meth:`get_all_groups` or
        ``pruner.DG.get_all_groups(...)``): the group restricted to the proposed channels, with ``importance``,
        ``candidate_idxs``, ``proposed_idxs``, ``scope``, ``pruning_ratio``, ``n_target``, ``max_removable``,
        ``skip_reason`` and ``step`` attached (see :class:`PlannedGroup`). Nothing is pruned. ``step`` defaults to
        the step in progress, or else the next one."""
        step = self._current_step_for_plan() if step is None else step
        if self._active_step == step and self._step_budgets is not None:
            budgets = self._step_budgets  # inside a step: the shares the step decided at its start
        else:
            budgets = self._budgets(step, cached=True)
        return self._plan(group, step, budgets)

    def _plan(self, group, step: int, budgets: Dict) -> "_Planned":
        full = group
        if isinstance(group, _Planned):
            full = group.full_group
        attrs = dict(step=step, candidate_idxs=list(full.root_idxs), importance=None, scope=None, prune_units=None,
                     pruning_ratio=0.0, n_target=0, max_removable=0, skip_reason=None, skip_kind=None)

        def done(proposed):
            sub = full.select(proposed, validate=False)  # the pruner's own choice of candidates: valid
            return _as_planned(sub, full, self, proposed_idxs=list(proposed), **attrs)

        if isinstance(full, ExplicitGroup):
            blk, mode = self._block_of(full)
            attrs["scope"] = f"attention:{blk.parent_name or '<model>'}:{mode}"
            ratio, target_units = self._attention_target(blk, full, mode, step)
            attrs["pruning_ratio"] = ratio
            per_unit = len(full.units[0]) if full.units else 0
            n_target = target_units * per_unit
        else:
            if not self.prune_head_dims and any(id(it.dep.layer) in self._head_layers for it in full.items):
                attrs.update(skip_kind=G.HEADS, skip_reason="prune_head_dims=False keeps the head size of declared attention layers")
                return done([])
            scope, ratio = self._scope(full, step)
            attrs["scope"], attrs["pruning_ratio"] = scope, ratio
            n_target = None
        reason = self._guard(full)
        if reason is not None:
            attrs.update(skip_kind=G.GUARD, skip_reason=reason)
            return done([])
        imp = self._importance(full)
        attrs["importance"] = imp
        if imp is None:
            attrs.update(skip_kind=G.IMPORTANCE,
                         skip_reason=f"{type(self.importance).__name__} returned None for this group (it cannot score it)")
            return done([])
        units = self._units_of(full)
        attrs["prune_units"] = units
        ranked, _ = self._ranked_units(full, imp, units)
        cur, min_keep, round_to = self._limits(full)
        ok, cum = feasible_prefixes(map(len, ranked), cur, min_keep, round_to, self._member_constraints(full, ranked))
        feasible = np.flatnonzero(ok)
        attrs["max_removable"] = int(cum[feasible[-1]])
        if n_target is None:
            if attrs["scope"].startswith(LOCAL + ":"):
                s = full.root_space
                init = self._init_size.get(s.index, s.size)
                n_target = s.current_size - int(init * (1 - attrs["pruning_ratio"]))
            else:
                n_target = budgets.get(full.root_space.index, 0)
        attrs["n_target"] = max(0, int(n_target))
        if attrs["n_target"] <= 0:
            attrs.update(skip_kind=G.TARGET, skip_reason=f"nothing to remove at step {step}: the target ratio "
                         f"{attrs['pruning_ratio']:.3f} is already reached in scope {attrs['scope']}")
            return done([])
        k = int(feasible[cum[feasible] <= attrs["n_target"]][-1])
        proposed = sorted(itertools.chain.from_iterable(ranked[:k]))
        if not proposed:
            attrs.update(skip_kind=G.CONSTRAINT, skip_reason=(
                f"the target asks for {attrs['n_target']} channels, but no removal up to that count keeps the "
                f"constraints (units of {sorted({len(u) for u in units})} channels, round_to={self.round_to}, "
                f"member multiples, at least {self._limits(full)[1]} channel(s) kept)"))
        return done(proposed)

    @staticmethod
    def _signature(group) -> tuple:
        return tuple((it.dep.space.index, it.dep.space.current_size, it.idx_array.size) for it in group.items)

    def _importance(self, group, store: bool = False):
        """``estimate_importance``, reusing the score of the ranking pass while the group's members are unchanged."""
        key = group.root_space.index
        cached = self._imp_cache.get(key) if not isinstance(group, ExplicitGroup) else None
        sig = self._signature(group) if (store or cached is not None) else None
        if cached is not None and cached[0] == sig:
            return cached[1]
        imp = self.estimate_importance(group)
        if store:
            self._imp_cache[key] = (sig, imp)
        return imp

    # ---- shared scopes --------------------------------------------------------------------------------------------
    def _budgets(self, step: int, cached: bool = False) -> Dict[int, int]:
        """For groups in shared scopes: root space index -> root channels to remove at ``step``."""
        if not (self.global_pruning or self.isomorphic or any(isinstance(k, tuple) for k in self.pruning_ratio_dict)):
            return {}
        key = (step, getattr(self.DG, "_version", None), len(self.DG.history))
        if cached and self._budget_cache is not None and self._budget_cache[0] == key:
            return self._budget_cache[1]
        self._imp_cache = {}
        scopes = defaultdict(list)
        ratios = {}
        for group in self.DG.get_all_groups(ignored_layers=self.group_ignored_layers, root_module_types=self.root_module_types):
            scope, ratio = self._scope(group, step)
            if scope.startswith(LOCAL + ":"):
                continue
            ratios[scope] = ratio
            s = group.root_space
            init = self._init_size.get(s.index, s.size)
            entry = [group, s.current_size, init, None]
            if self._guard(group) is None and not (
                    not self.prune_head_dims and any(id(it.dep.layer) in self._head_layers for it in group.items)):
                imp = self._importance(group, store=True)
                if imp is not None:
                    ranked, scores = self._ranked_units(group, imp, self._units_of(group))
                    k = self._solve(group, ranked, 1 << 62)
                    cap = sum(len(u) for u in ranked[:k])
                    entry[3] = (scores, torch.tensor([len(u) for u in ranked], dtype=torch.long), cap)
            scopes[scope].append(entry)
        budgets: Dict[int, int] = {}
        for scope, entries in scopes.items():
            ratio = ratios[scope]
            current = sum(e[1] for e in entries)
            initial = sum(e[2] for e in entries)
            n_total = current - int(initial * (1 - ratio))
            ranked = [(e[0].root_space.index, e[3][0], e[3][1], e[3][2]) for e in entries if e[3] is not None]
            for (idx, *_), n in zip(ranked, rank_scope(ranked, n_total)):
                budgets[idx] = n
        self._budget_cache = (key, budgets)
        return budgets

    # ---- attention ------------------------------------------------------------------------------------------------
    def _block_of(self, group: ExplicitGroup):
        mode = group.kind.split("-", 1)[1]
        for blk in self.attention_blocks:
            if group.root_module is blk.q:
                return blk, mode
        raise PruneExplorerError(f"no attention block is rooted at {group.root_name}")

    def _attention_target(self, blk: AttentionBlock, group, mode: str, step: int) -> Tuple[float, int]:
        """``(ratio, units to remove)`` for an attention group at ``step``."""
        if mode == "heads":
            sched = None
            for m in (blk.q, blk.k, blk.v):
                sched = sched or self._head_schedules.get(id(m))
            ratio = (sched or self.per_step_head_pruning_ratio)[step]
            keep = max(1, int(blk.init_h_kv * (1 - ratio)))
            return ratio, blk.h_kv - keep
        key = None
        for m in (blk.q, blk.k, blk.v, blk.parent):
            key = key or self._ratio_key_of.get(id(m))
        ratio = (self._schedules[key] if key is not None else self.per_step_pruning_ratio)[step]
        d, dv = blk.head_dims(self.DG)
        keep = max(1, int(blk.init_head_dim * (1 - ratio)))
        return ratio, d - keep

    def _attention_groups(self) -> Iterator[Union[ExplicitGroup, Tuple[AttentionBlock, str]]]:
        """The attention groups of this step, or ``(block, reason)`` for a mode that cannot be planned."""
        for blk in self.attention_blocks:
            blk.sync()
            if self.prune_num_heads:
                yield blk.group(self.DG, "heads")
            if self.prune_head_dims:
                d, dv = blk.head_dims(self.DG)
                if d != dv:
                    yield blk, f"head dims of q/k ({d}) and v ({dv}) differ, so dims cannot be removed in pairs"
                else:
                    yield blk.group(self.DG, "dims")

    # ==================================================================================================================
    # stepping
    # ==================================================================================================================
    def step(self, interactive: bool = False):
        """Run the next pruning step. ``interactive=False``: prune every group now. ``interactive=True``: return a
        generator of planned groups (:class:`PlannedGroup`), each computed after the previous one was pruned or
        skipped; ``group.prune()`` accepts the proposal, ``group.prune(idxs=[...])`` prunes your own choice,
        doing nothing skips it."""
        self.current_step += 1
        gen = self._prune()
        if interactive:
            return gen
        if self.current_step > self.iterative_steps:
            warnings.warn(f"pruning past the last step ({self.iterative_steps} iterative_steps): nothing is pruned. "
                          "Fix: call pruner.reset() to start the schedule again, or build the pruner with more steps")
            return None
        for group in gen:
            try:
                group.prune()
            except PruningError as exc:  # a layer refused: keep going, and say so
                group.skip_reason, group.skip_kind = str(exc), G.ERROR
                self._skip(group.root_name, group.step, G.ERROR, f"pruning failed and was rolled back: {exc}",
                           group.scope, group.pruning_ratio)
                warnings.warn(f"prune_explorer: the group rooted at {group.root_name} could not be pruned and was "
                              f"skipped: {exc}")
        return None

    def _skip(self, root: str, step: int, kind: str, reason: str, scope=None, ratio=None) -> None:
        self.skipped.append(SkippedGroup(root=root, step=step, kind=kind, reason=reason, scope=scope, pruning_ratio=ratio))

    def _after_prune(self, planned, chosen: List[int], rec) -> None:
        if rec is not None:
            self._record_info[id(rec)] = {"step": planned.step, "scope": planned.scope,
                                          "pruning_ratio": planned.pruning_ratio}

    def _emit(self, planned) -> Iterator:
        if not planned.proposed_idxs:
            self._skip(planned.root_name, planned.step, planned.skip_kind or G.TARGET,
                       planned.skip_reason or "nothing proposed", planned.scope, planned.pruning_ratio)
            return
        try:
            yield planned
        finally:
            if not planned.was_pruned and planned.skip_kind != G.ERROR:
                self._skip(planned.root_name, planned.step, G.USER,
                           "not pruned: the proposal was not accepted (group.prune() was not called)",
                           planned.scope, planned.pruning_ratio)

    def _prune(self) -> Iterator:
        step = self.current_step
        if step > self.iterative_steps:
            warnings.warn(f"pruning past the last step ({self.iterative_steps} iterative_steps): nothing is pruned. "
                          "Fix: call pruner.reset() to start the schedule again, or build the pruner with more steps")
            return
        self._active_step = step
        try:
            for g in self._attention_groups():
                if not isinstance(g, ExplicitGroup):
                    blk, reason = g
                    self._skip(blk.names["q"], step, G.HEADS, reason, f"attention:{blk.parent_name}:dims", None)
                    continue
                yield from self._emit(self._plan(g, step, {}))
            for m, reason in self._unhandled_heads.items():
                # these layers go through the graph's groups below (same offsets in every head) when it allows
                name = self._names.get(id(m), "?")
                if self.prune_num_heads:
                    self._skip(name, step, G.HEADS, f"whole heads are not removed: {reason} (only blocks of separate "
                               "q/k/v/o Linear layers lose whole heads; head dims are pruned through the graph)")
                if self.DG.prunable_fraction(m) == 0.0:
                    self._skip(name, step, G.HEADS,
                               f"declared in num_heads but not prunable: {reason}; the graph keeps its outputs fixed "
                               f"({self.DG.fixed_reason(m)})")
            budgets = self._step_budgets = self._budgets(step)
            for group in self.DG.get_all_groups(ignored_layers=self.group_ignored_layers,
                                                root_module_types=self.root_module_types):
                yield from self._emit(self._plan(group, step, budgets))
        finally:
            self._active_step = None
            self._step_budgets = None

    # ==================================================================================================================
    # regularization hooks (see algorithms.py)
    # ==================================================================================================================
    def update_regularizer(self) -> None:
        """Re-list the groups the regularizer works on (call after pruning; done automatically when the graph
        changed)."""
        self._reg_groups = list(self.get_all_groups())
        self._reg_groups_version = (getattr(self.DG, "_version", None), len(self.DG.history))

    def _regularizer_groups(self) -> List[Group]:
        if self._reg_groups is None or self._reg_groups_version != (getattr(self.DG, "_version", None), len(self.DG.history)):
            self.update_regularizer()
        return self._reg_groups

    def regularize(self, model: nn.Module = None, *args, **kwargs) -> None:
        """No regularization in the base pruner (see BNScalePruner, GroupNormPruner)."""
        return None

    def __repr__(self) -> str:
        mode = "isomorphic" if self.isomorphic else ("global" if self.global_pruning else "local")
        return (f"{type(self).__name__}({type(self.model).__name__}, {mode}, pruning_ratio={self.pruning_ratio}, "
                f"step {self.current_step}/{self.iterative_steps}, importance={self.importance!r})")
