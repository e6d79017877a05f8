"""Named plans side by side: parameters, MACs, latency, the metric before fine-tuning and the layer widths.

:func:`compare_plans` applies each :class:`~prune_explorer.plan.PruningPlan` to its own deep copy of the model (the
model itself is never modified), measures it and returns a :class:`PlanComparison`, which prints as a table and
converts to dicts or a pandas DataFrame; ``pe.explorer.sensitivity_figures.plan_comparison_figure`` /
``plan_widths_figure`` draw it.

Widths are the output widths (``out_channels``, ``out_features``...) of the layers the plans prune, in the pruner's
order; the unpruned model's are in the row named ``"original"``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..measure import count_ops_and_params
from ..plan import PruningPlan, apply_plan
from .budget import default_latency_fn
from .errors import SensitivityError
from .evaluator import as_metric

__all__ = ["compare_plans", "PlanComparison", "PlanSummary", "layer_width"]


def layer_width(module) -> Optional[int]:
    """A layer's output width: ``out_channels``, ``out_features``, ``hidden_size``, ``embed_dim`` or
    ``num_features``, else the first dimension of its weight (None when it has none)."""
    for attr in ("out_channels", "out_features", "hidden_size", "embed_dim", "num_features"):
        v = getattr(module, attr, None)
        if isinstance(v, int):
            return v
    w = getattr(module, "weight", None)
    if isinstance(module, torch.Tensor):
        w = module
    return int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() > 0 else None


@dataclass
class PlanSummary:
    """One row of a comparison: ``params`` and ``macs`` (of one forward pass on the example inputs), ``metric``
    (``eval_fn`` before any fine-tuning; None without ``eval_fn``), ``latency`` (seconds; None unless asked),
    ``widths`` (``{layer: output width}``) and the ``plan`` (None for the original model)."""

    name: str
    params: int
    macs: int
    metric: Optional[float] = None
    latency: Optional[float] = None
    widths: Dict[str, Optional[int]] = field(default_factory=dict)
    plan: Optional[PruningPlan] = None

    def as_dict(self) -> dict:
        return {"name": self.name, "params": self.params, "macs": self.macs, "metric": self.metric,
                "latency": self.latency, "widths": dict(self.widths),
                "plan": self.plan.as_dict() if self.plan is not None else None}


class PlanComparison:
    """The rows of :func:`compare_plans` (``rows``, the original first when included), the ``layers`` whose
    widths are compared, and ``models`` (``{name: pruned copy}``, with ``keep_models=True``)."""

    def __init__(self, rows: Sequence[PlanSummary], layers: Sequence[str], base_params: int, base_macs: int,
                 models: Optional[Dict[str, nn.Module]] = None):
        self.rows = list(rows)
        self.layers = list(layers)
        self.base_params = int(base_params)
        self.base_macs = int(base_macs)
        self.models = dict(models or {})

    def __getitem__(self, name: str) -> PlanSummary:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no plan named {name!r}; plans: {[r.name for r in self.rows]}")

    def names(self) -> List[str]:
        return [r.name for r in self.rows]

    def records(self) -> List[dict]:
        """One flat dict per plan: name, params, macs, their fractions of the original, metric, latency."""
        out = []
        for r in self.rows:
            out.append({"name": r.name, "params": r.params, "params_fraction": r.params / self.base_params,
                        "macs": r.macs, "macs_fraction": r.macs / self.base_macs if self.base_macs else None,
                        "metric": r.metric, "latency": r.latency})
        return out

    def widths(self) -> Dict[str, List[Optional[int]]]:
        """``{plan name: [width of each layer in self.layers]}``."""
        return {r.name: [r.widths.get(layer) for layer in self.layers] for r in self.rows}

    def as_dict(self) -> dict:
        return {"layers": list(self.layers), "base_params": self.base_params, "base_macs": self.base_macs,
                "rows": [r.as_dict() for r in self.rows]}

    def to_pandas(self):
        """The :meth:`records` as a DataFrame indexed by plan name (needs pandas)."""
        from .table import _pandas

        return _pandas().DataFrame.from_records(self.records()).set_index("name")

    def summary(self) -> str:
        has_metric = any(r.metric is not None for r in self.rows)
        has_lat = any(r.latency is not None for r in self.rows)
        head = ["plan", "params", "(%)", "MACs", "(%)"] + (["metric"] if has_metric else []) + \
            (["latency ms"] if has_lat else [])
        rows = [head]
        for rec in self.records():
            row = [rec["name"], f"{rec['params']:,}", f"{rec['params_fraction']:.1%}", f"{rec['macs']:,}",
                   f"{rec['macs_fraction']:.1%}" if rec["macs_fraction"] is not None else "-"]
            if has_metric:
                row.append("-" if rec["metric"] is None else f"{rec['metric']:.4g}")
            if has_lat:
                row.append("-" if rec["latency"] is None else f"{rec['latency'] * 1e3:.3g}")
            rows.append(row)
        w = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(v.ljust(w[i]) if i == 0 else v.rjust(w[i]) for i, v in enumerate(r)) for r in rows]
        lines.append("")
        lines.append("widths (output channels) of the pruned layers:")
        wl = max([len("layer")] + [len(layer) for layer in self.layers])
        names = self.names()
        cw = [max(6, len(n)) for n in names]
        lines.append("  " + "layer".ljust(wl) + "".join("  " + n.rjust(c) for n, c in zip(names, cw)))
        widths = self.widths()
        for i, layer in enumerate(self.layers):
            cells = "".join("  " + str(widths[n][i]).rjust(c) for n, c in zip(names, cw))
            lines.append("  " + layer.ljust(wl) + cells)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(self.summary()) + "</pre>"


def _measure(name: str, model: nn.Module, example_inputs, layers: Sequence[str], eval_fn, latency_fn, seed: int,
             forward_fn, plan=None) -> PlanSummary:
    macs, params = count_ops_and_params(model, example_inputs, forward_fn=forward_fn)
    metric = None
    if eval_fn is not None:
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                value = eval_fn(model)
        except Exception as exc:
            raise SensitivityError(f"eval_fn raised {type(exc).__name__} on plan {name!r}: {exc}") from exc
        metric = as_metric(value, f"on plan {name!r}")
    latency = float(latency_fn(model)) if latency_fn is not None else None
    mods = dict(model.named_modules())
    widths = {layer: layer_width(mods[layer]) if layer in mods else None for layer in layers}
    return PlanSummary(name, int(params), int(macs), metric, latency, widths, plan)


def compare_plans(model: nn.Module, example_inputs, plans: Union[Mapping[str, PruningPlan], Sequence[PruningPlan]],
                  eval_fn: Optional[Callable[[nn.Module], float]] = None, importance=None,
                  latency: Union[bool, Callable[[nn.Module], float]] = False, include_original: bool = True,
                  keep_models: bool = False, seed: int = 0, strict: bool = True, **pruner_options) -> PlanComparison:
    """Apply each plan to a copy of ``model`` and compare them (see the module docstring).

    Args:
        model: the unpruned model (not modified).
        example_inputs: for tracing and counting MACs.
        plans: ``{name: plan}`` or a list of plans (named by ``plan.name``).
        eval_fn: ``eval_fn(model) -> float`` (higher is better), called on each pruned copy before any fine-tuning,
            with the CPU random generator seeded with ``seed``.
        importance: chooses the channels (default ``MagnitudeImportance(p=2)``), as in
            :func:`~prune_explorer.plan.apply_plan`.
        latency: True to measure seconds per forward pass with ``pe.utils.benchmark``, or a function
            ``f(model) -> seconds``.
        include_original: add a first row ``"original"`` for the unpruned model.
        keep_models: keep the pruned copies in ``comparison.models`` (e.g. to fine-tune them).
        strict, **pruner_options: passed to :func:`~prune_explorer.plan.apply_plan`.
    """
    if not isinstance(model, nn.Module):
        raise SensitivityError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(plans, PruningPlan):
        plans = [plans]
    if isinstance(plans, Mapping):
        named = list(plans.items())
    else:
        named = [(getattr(p, "name", None), p) for p in plans]
    for n, p in named:
        if not isinstance(p, PruningPlan):
            raise SensitivityError(f"plans must be PruningPlan objects, got {type(p).__name__} for {n!r}")
        if not isinstance(n, str):
            raise SensitivityError(f"plan names must be strings, got {n!r}")
    names = [n for n, _ in named]
    if len(set(names)) != len(names) or (include_original and "original" in names):
        raise SensitivityError(f"plan names must be unique (and not 'original' when include_original=True): {names}. "
                               "Fix: name them, e.g. {'uniform': p1, 'guided': p2}")
    if eval_fn is not None and not callable(eval_fn):
        raise SensitivityError(f"eval_fn must be callable as eval_fn(model) -> float, got {eval_fn!r:.60}")
    latency_fn = None
    if latency is True:
        latency_fn = default_latency_fn(example_inputs, pruner_options.get("forward_fn"))
    elif callable(latency):
        latency_fn = latency
    elif latency not in (False, None):
        raise SensitivityError(f"latency must be True, False or a function f(model) -> seconds, got {latency!r}")
    forward_fn = pruner_options.get("forward_fn")
    layers: List[str] = []
    for _, p in named:
        for d in p:
            if d.root not in layers:
                layers.append(d.root)
    rows: List[PlanSummary] = []
    models: Dict[str, nn.Module] = {}
    base = None
    if include_original:
        base = _measure("original", model, example_inputs, layers, eval_fn, latency_fn, seed, forward_fn)
        rows.append(base)
    for name, plan in named:
        m = copy.deepcopy(model)
        apply_plan(m, plan, example_inputs=example_inputs, importance=importance, strict=strict, **pruner_options)
        rows.append(_measure(name, m, example_inputs, layers, eval_fn, latency_fn, seed, forward_fn, plan))
        if keep_models:
            models[name] = m
    if base is None:
        macs, params = count_ops_and_params(model, example_inputs, forward_fn=forward_fn)
    else:
        macs, params = base.macs, base.params
    return PlanComparison(rows, layers, params, macs, models)
