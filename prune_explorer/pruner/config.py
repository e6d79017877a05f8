"""The options of a pruner, checked and normalised before anything touches the model.

:func:`check_options` turns :class:`~.base_pruner.BasePruner`'s arguments into :class:`PrunerOptions`: every ratio
in range, every module or parameter one of the model's own, ``ignored_layers`` expanded to submodules, container
keys of ``pruning_ratio_dict`` spread to the layers inside them, and each ratio turned into its schedule (the
cumulative ratio after each step). A bad option raises :class:`PrunerConfigError`, naming the option and the fix.

    >>> import torch.nn as nn
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3))
    >>> opts = check_options(model, importance=abs, pruning_ratio=0.5, iterative_steps=2,
    ...                      pruning_ratio_dict={model[1]: 0.25})
    >>> opts.per_step_pruning_ratio, opts.ratio_schedules[model[1]]
    ([0.0, 0.25, 0.5], [0.0, 0.125, 0.25])
    >>> check_options(model, importance=abs, pruning_ratio=1.5)
    Traceback (most recent call last):
    ...
    prune_explorer.pruner.config.PrunerConfigError: pruning_ratio=1.5 must be a number in [0, 1) ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch.nn as nn

from ..errors import PruneExplorerError
from ..graph import DEFAULT_ROOT_TYPES
from ..graph.trace.tracing import named_modules_of
from ..validation import check_ratio, check_ratios, is_ratio, resolve_layers
from .schedulers import linear_scheduler

__all__ = ["PrunerConfigError", "PrunerOptions", "check_options"]


class PrunerConfigError(PruneExplorerError, ValueError):
    """An option of a pruner is invalid; the message names the option and the fix. The model is untouched."""


def _check_ratio(name: str, x) -> float:
    return check_ratio(name, x, error=PrunerConfigError)


@dataclass
class PrunerOptions:
    """The checked options of a pruner (see :func:`check_options`; the names are :class:`BasePruner`'s)."""

    importance: Callable
    pruning_ratio: float = 0.5
    max_pruning_ratio: float = 1.0
    iterative_steps: int = 1
    iterative_pruning_ratio_scheduler: Callable = linear_scheduler
    round_to: Optional[int] = None
    global_pruning: bool = False
    isomorphic: bool = False
    prune_num_heads: bool = False
    prune_head_dims: bool = True
    head_pruning_ratio: float = 0.0
    root_module_types: Tuple[type, ...] = DEFAULT_ROOT_TYPES
    ignored_layers: List = field(default_factory=list)  # expanded: every submodule of an ignored module
    pruning_ratio_dict: Dict = field(default_factory=dict)  # module or tuple of modules -> ratio
    in_channel_groups: Dict[nn.Module, int] = field(default_factory=dict)
    out_channel_groups: Dict[nn.Module, int] = field(default_factory=dict)
    num_heads: Dict[nn.Module, int] = field(default_factory=dict)
    head_pruning_ratio_dict: Dict[nn.Module, float] = field(default_factory=dict)
    # derived
    module_names: Dict[int, str] = field(default_factory=dict)  # id(module) -> qualified name
    ratio_key_of: Dict[int, object] = field(default_factory=dict)  # id(module) -> its key in pruning_ratio_dict
    per_step_pruning_ratio: List[float] = field(default_factory=list)  # schedule of pruning_ratio
    ratio_schedules: Dict[object, List[float]] = field(default_factory=dict)  # pruning_ratio_dict key -> schedule
    per_step_head_pruning_ratio: List[float] = field(default_factory=list)
    head_schedules: Dict[int, List[float]] = field(default_factory=dict)  # id(declared q/k/v layer) -> schedule


class _ModelIndex:
    """Qualified names of the model's modules and parameters, for checking that options name the model's own."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.modules = {id(m): n for n, m in named_modules_of(model)}
        self._params: Optional[Dict[int, str]] = None  # made on the first parameter an option names

    @property
    def params(self) -> Dict[int, str]:
        """``id(parameter) -> qualified name`` (``model.named_parameters()``), made once, when first read."""
        if self._params is None:
            self._params = {id(p): n for n, p in self.model.named_parameters()}
        return self._params

    def name(self, obj, option: str) -> str:
        if isinstance(obj, nn.Parameter):
            params = self.params
            if id(obj) not in params:
                raise PrunerConfigError(f"{option}: a Parameter of shape {tuple(obj.shape)} is not a parameter of the "
                                        "model. Fix: pass parameters from model.parameters()")
            return params[id(obj)]
        if isinstance(obj, nn.Module):
            if id(obj) not in self.modules:
                raise PrunerConfigError(f"{option}: {type(obj).__name__} {obj!r:.80} is not a submodule of the model. "
                                        "Fix: pass modules from model.modules() (of the model being pruned, not a copy)")
            return self.modules[id(obj)] or "<model>"
        raise PrunerConfigError(f"{option}: expected a module (or parameter), got {type(obj).__name__} {obj!r:.80}")

    def int_dict(self, d, option: str) -> Dict[nn.Module, int]:
        """``{module: int >= 1}``, checked."""
        out = {}
        for m, v in (d or {}).items():
            self.name(m, option)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise PrunerConfigError(f"{option}[{self.name(m, option)}]={v!r} must be an int >= 1")
            out[m] = v
        return out


def _check_scalars(o: PrunerOptions) -> None:
    if not callable(o.importance):
        raise PrunerConfigError(f"importance must be a callable criterion, got {o.importance!r}. "
                                "Fix: pass e.g. importance=pe.importance.MagnitudeImportance(p=2)")
    if getattr(o.importance, "group_reduction", "mean") is None:
        raise PrunerConfigError(
            "importance has group_reduction=None, which returns one row per member; the pruner needs one score "
            "per channel. Fix: use group_reduction='mean' (or 'sum', 'max', ...)"
        )
    o.pruning_ratio = _check_ratio("pruning_ratio", o.pruning_ratio)
    o.max_pruning_ratio = check_ratio("max_pruning_ratio", o.max_pruning_ratio, error=PrunerConfigError,
                                      low_open=True, high_open=False, example=0.9,
                                      meaning="the most any layer may lose; the default 1.0 sets no limit")
    steps = o.iterative_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PrunerConfigError(f"iterative_steps={steps!r} must be an int >= 1. Fix: pass e.g. iterative_steps=5")
    if not callable(o.iterative_pruning_ratio_scheduler):
        raise PrunerConfigError("iterative_pruning_ratio_scheduler must be callable(ratio, steps) -> list of ratios")
    r = o.round_to
    if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
        raise PrunerConfigError(f"round_to={r!r} must be None or an int >= 1. Fix: pass e.g. round_to=8")
    o.global_pruning, o.isomorphic = bool(o.global_pruning), bool(o.isomorphic)
    o.prune_num_heads, o.prune_head_dims = bool(o.prune_num_heads), bool(o.prune_head_dims)
    o.head_pruning_ratio = _check_ratio("head_pruning_ratio", o.head_pruning_ratio)
    o.root_module_types = tuple(o.root_module_types) if o.root_module_types else DEFAULT_ROOT_TYPES
    for t in o.root_module_types:
        if not isinstance(t, type):
            raise PrunerConfigError(f"root_module_types must hold layer types (classes), got {t!r}")


def _ignored_layers(model: nn.Module, index: _ModelIndex, layers: Iterable) -> List:
    """``layers`` (modules, parameters or qualified names) expanded to submodules (as in Torch-Pruning), each once, in
    order."""
    out, seen = [], set()
    for obj in resolve_layers(model, layers, "ignored_layers", PrunerConfigError):
        index.name(obj, "ignored_layers")
        for m in (obj.modules() if isinstance(obj, nn.Module) else [obj]):
            if id(m) not in seen:
                seen.add(id(m))
                out.append(m)
    return out


def _ratio_dict(index: _ModelIndex, ratios) -> Tuple[Dict, Dict[int, object]]:
    """``(pruning_ratio_dict, ratio_key_of)``: keys are modules or tuples of modules (a shared scope)."""
    checked: Dict = {}
    key_of: Dict[int, object] = {}
    for key, ratio in (ratios or {}).items():
        mods = tuple(key) if isinstance(key, (tuple, list)) else (key,)
        if not mods:
            raise PrunerConfigError("pruning_ratio_dict: an empty tuple is not a valid key. Fix: list the modules")
        label = ", ".join(index.name(m, "pruning_ratio_dict key") for m in mods)
        if not all(isinstance(m, nn.Module) for m in mods):
            raise PrunerConfigError(f"pruning_ratio_dict key ({label}) must be a module or a tuple of modules")
        _check_ratio(f"pruning_ratio_dict[{label}]", ratio)
        k = tuple(mods) if isinstance(key, (tuple, list)) else key
        for m in mods:
            if id(m) in key_of:
                raise PrunerConfigError(f"pruning_ratio_dict: {index.name(m, '')} appears in two keys. "
                                        "Fix: list each module once")
            key_of[id(m)] = k
        checked[k] = float(ratio)
    # as in Torch-Pruning, a container key (e.g. model.layer4) sets the ratio of every layer inside it;
    # a key naming an inner layer explicitly wins
    for k in list(checked):
        if not isinstance(k, tuple):
            for sub in k.modules():
                key_of.setdefault(id(sub), k)
    return checked, key_of


def _check_heads(index: _ModelIndex, o: PrunerOptions, head_ratios) -> None:
    for m, h in o.num_heads.items():
        n = m.out_features if isinstance(m, nn.Linear) else getattr(m, "embed_dim", None)
        if n is not None and n % h:
            raise PrunerConfigError(
                f"num_heads[{index.name(m, '')}]={h} does not divide its {n} output features. Fix: give the head "
                "count of that layer (for grouped-query attention, k and v have num_key_value_heads)"
            )
    for m in head_ratios or {}:
        index.name(m, "head_pruning_ratio_dict")
    o.head_pruning_ratio_dict = check_ratios("head_pruning_ratio_dict", head_ratios or {},
                                             label=lambda m: index.name(m, ""), error=PrunerConfigError)


def _schedule(o: PrunerOptions, ratio: float, what: str) -> List[float]:
    steps = o.iterative_steps
    sched = list(o.iterative_pruning_ratio_scheduler(ratio, steps))
    if len(sched) < steps + 1 or not all(is_ratio(r) for r in sched[: steps + 1]):
        raise PrunerConfigError(
            f"iterative_pruning_ratio_scheduler({what}={ratio}, steps={steps}) returned {sched!r:.120}; "
            f"it must return {steps + 1} ratios in [0, 1) (the cumulative ratio after each step, starting with 0)"
        )
    return [float(r) for r in sched]


def check_options(model: nn.Module, *, importance: Callable, ignored_layers: Optional[Iterable] = None,
                  pruning_ratio_dict: Optional[Dict] = None, in_channel_groups: Optional[Dict] = None,
                  out_channel_groups: Optional[Dict] = None, num_heads: Optional[Dict] = None,
                  head_pruning_ratio_dict: Optional[Dict] = None,
                  root_module_types: Sequence[type] = DEFAULT_ROOT_TYPES, **scalars) -> PrunerOptions:
    """Check and normalise a pruner's options (``scalars``: the other :class:`PrunerOptions` fields by name).

    Raises :class:`PrunerConfigError` on the first bad option; nothing is changed."""
    if not isinstance(model, nn.Module):
        raise PrunerConfigError(f"model must be an nn.Module, got {type(model).__name__}")
    o = PrunerOptions(importance=importance, root_module_types=root_module_types, **scalars)
    _check_scalars(o)
    index = _ModelIndex(model)
    o.module_names = dict(index.modules)
    o.ignored_layers = _ignored_layers(model, index, ignored_layers)
    o.pruning_ratio_dict, o.ratio_key_of = _ratio_dict(index, pruning_ratio_dict)
    o.in_channel_groups = index.int_dict(in_channel_groups, "in_channel_groups")
    o.out_channel_groups = index.int_dict(out_channel_groups, "out_channel_groups")
    o.num_heads = index.int_dict(num_heads, "num_heads")
    _check_heads(index, o, head_pruning_ratio_dict)
    o.per_step_pruning_ratio = _schedule(o, o.pruning_ratio, "pruning_ratio")
    o.ratio_schedules = {k: _schedule(o, r, f"pruning_ratio_dict[{k!r:.40}]") for k, r in o.pruning_ratio_dict.items()}
    o.per_step_head_pruning_ratio = _schedule(o, o.head_pruning_ratio, "head_pruning_ratio")
    o.head_schedules = {id(m): _schedule(o, r, "head_pruning_ratio_dict") for m, r in o.head_pruning_ratio_dict.items()}
    return o
