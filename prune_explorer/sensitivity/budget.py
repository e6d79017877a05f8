"""Budget targets: per-group channel counts that meet a parameter, MAC or latency target and lose the least metric.

The algorithm (:func:`solve_budget`)
    1. **Curves.** For each scanned group, the scan gives points ``(channels removed n, metric drop d(n), cost
       saved s(n))``, starting at ``(0, 0, 0)``; ``s`` is the parameters or MACs removed with that group pruned
       alone (for latency targets, the MACs removed stand in: latency is only measured on whole plans).
    2. **Greedy path.** Starting from the unpruned model, repeatedly take the move, over all groups and all their
       larger scanned counts, with the least metric lost per unit of cost saved, ``(d(n') - d(n)) / (s(n') - s(n))``,
       and move that group there. Because each move may jump several points, the path follows the lower convex hull
       of every group's drop-vs-saving curve, which is the classic marginal-analysis solution of a separable
       budget problem (as in bit allocation or Lagrangian rate-distortion): at any budget it is optimal for the
       convex relaxation, it needs no tuning, and it costs ``O(groups x ratios)`` per move. Non-monotone scan
       noise (a drop that falls again at a larger ratio) is skipped over rather than trusted point by point.
    3. **Exact costs.** Savings of different groups do not add up exactly (a convolution between two groups loses
       ``a + b - ab`` of its weights, not ``a + b``), so the plan's cost is never taken from the sum: plans on the
       path are *applied* to a private copy of the model (through the pruner, then undone) and measured
       (:class:`~.costs.PlanCostModel`: ``count_params``, ``count_macs``, or the latency function). The cost falls
       monotonically along the path, so a binary search finds the first prefix that meets the target
       (``log2(moves)`` measurements).
    4. **Feasibility repair.** The last move usually overshoots; the group it moved is set to the smallest count
       between its previous and new points that still meets the target (another binary search over the counts the
       pruner accepts; the metric drop in between is interpolated linearly). The result meets the target and
       overshoots it by at most one feasible step of that group.

Every count is one the pruner's own :meth:`~prune_explorer.pruner.BasePruner.propose` returns, so ``round_to``,
unit and attention-head ties, ``max_pruning_ratio`` and the single-channel guard hold by construction, and applying
the plan (:func:`~prune_explorer.plan.apply_plan`) reaches exactly the parameters and MACs measured here.

:func:`uniform_plan` is the comparison point: the same ratio for every group, the smallest ratio that meets the target
(bisection on the ratio, measured the same way).

Targets are fractions of the unpruned model's cost to *keep*: ``target=0.5, kind="macs"`` halves the MACs (or
``speedup=2.0``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch.nn as nn

from ..plan import PruningPlan, json_options, options_from_names, options_to_names
from ..plan.meta import is_meta_model, planning_importance
from .cache import model_fingerprint
from .costs import PlanCostModel, default_latency_fn
from .errors import SensitivityError
from .table import SensitivityTable
from ..validation import check_cost_target, is_ratio

__all__ = ["solve_budget", "uniform_plan", "PlanCostModel", "default_latency_fn", "greedy_path", "KINDS"]

KINDS = ("params", "macs", "latency")


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise SensitivityError(f"kind must be one of {KINDS} (what the target measures), got {kind!r}")
    return kind


# ----------------------------------------------------------------------------------------------------------------------
# the greedy path
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Move:
    """One step of the greedy path: ``key`` goes from ``n_from`` to ``n_to`` root channels removed."""

    key: str
    n_from: int
    n_to: int
    drop_from: float
    drop_to: float
    efficiency: float  # metric drop per unit of cost saved


def greedy_path(curves: Mapping[str, Sequence[Tuple[int, float, float]]],
                exclusive: Sequence[set] = ()) -> List[Move]:
    """The greedy path over ``curves`` (``{key: [(n, drop, saving), ...]}``, each starting at ``(0, 0, 0)`` and
    sorted by ``n``): see the module docstring. Ties go to the larger saving, then to the earlier group. Of the
    keys in one set of ``exclusive``, only the first one moved keeps moving.

    >>> path = greedy_path({"a": [(0, 0.0, 0), (4, 0.1, 10), (8, 0.5, 20)], "b": [(0, 0.0, 0), (2, 0.05, 10)]})
    >>> [(m.key, m.n_to) for m in path]
    [('b', 2), ('a', 4), ('a', 8)]
    """
    order = {k: i for i, k in enumerate(curves)}
    state = {k: 0 for k in curves}
    rivals = {k: set().union(*(s for s in exclusive if k in s)) - {k} for k in curves}
    moves: List[Move] = []
    while True:
        best = None
        for k, pts in curves.items():
            if any(state.get(r, 0) for r in rivals[k]):
                continue
            i = state[k]
            n0, d0, s0 = pts[i]
            for j in range(i + 1, len(pts)):
                n1, d1, s1 = pts[j]
                ds = s1 - s0
                if ds <= 0 or n1 <= n0:
                    continue
                eff = (d1 - d0) / ds
                cand = (eff, -ds, order[k])
                if best is None or cand < best[0]:
                    best = (cand, k, j)
        if best is None:
            return moves
        (eff, _, _), k, j = best
        i = state[k]
        moves.append(Move(k, curves[k][i][0], curves[k][j][0], curves[k][i][1], curves[k][j][1], eff))
        state[k] = j


def _attention_blocks(keys: Sequence[str]) -> List[set]:
    """Sets of keys of the same attention block (``attn.q:attention-heads``, ``attn.q:attention-dims`` and, where
    the value head size is independent, ``attn.v:attention-dims``): attention keys whose root layers share a parent
    module."""
    blocks: Dict[str, set] = {}
    for k in keys:
        root, _, kind = k.rpartition(":")
        if kind in ("attention-heads", "attention-dims"):
            blocks.setdefault(root.rpartition(".")[0], set()).add(k)
    return [b for b in blocks.values() if len(b) > 1]


def _counts_after(moves: Sequence[Move], k: int) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for m in moves[:k]:
        counts[m.key] = m.n_to
    return counts


def _interp(curve: Sequence[Tuple[int, float, float]], n: int) -> float:
    """The metric drop at ``n`` channels, interpolated linearly between scanned points."""
    for (n0, d0, _), (n1, d1, _) in zip(curve, curve[1:]):
        if n0 <= n <= n1:
            return d0 if n1 == n0 else d0 + (d1 - d0) * (n - n0) / (n1 - n0)
    return curve[-1][1] if n > curve[-1][0] else 0.0


# ----------------------------------------------------------------------------------------------------------------------
# context
# ----------------------------------------------------------------------------------------------------------------------
def _context(table: SensitivityTable, model, example_inputs, importance):
    ctx = table._context or {}
    model = model if model is not None else ctx.get("model")
    example_inputs = example_inputs if example_inputs is not None else ctx.get("example_inputs")
    if model is None or example_inputs is None:
        raise SensitivityError("this table does not hold its model (it was loaded from a file): pass model= and "
                               "example_inputs= (the unpruned model the scan was made on)")
    if not isinstance(model, nn.Module):
        raise SensitivityError(f"model must be an nn.Module, got {type(model).__name__}")
    fp = table.meta.get("model") or {}
    now = model_fingerprint(model)
    if fp.get("structure") and fp["structure"] != now["structure"]:
        raise SensitivityError("the model's architecture differs from the one the scan was made on (was it pruned "
                               "since?). Fix: pass the unpruned model with model=, or scan again")
    if fp.get("weights") and fp["weights"] != now["weights"]:
        warnings.warn("the model's weights changed since the scan; the plan uses the scan's metrics as they are",
                      stacklevel=3)
    if importance is None:
        importance = ctx.get("importance")
    if importance is None:
        from ..importance import MagnitudeImportance

        importance = MagnitudeImportance(p=2)
        if table.meta.get("importance") and table.meta["importance"] != repr(importance):
            warnings.warn(f"the scan used {table.meta['importance']}; pass importance= to choose channels the same "
                          "way (using MagnitudeImportance(p=2))", stacklevel=3)
    options = dict(ctx.get("options") or table.meta.get("options") or {})
    return model, example_inputs, importance, options


def _cost_value(costs: dict, kind: str) -> float:
    v = costs[kind]
    if v is None:
        raise SensitivityError(f"no {kind} measurement")
    return float(v)


def _finish_plan(cm: PlanCostModel, counts: Dict[str, Union[int, float]], keys: Sequence[str], name: str,
                 target: float, kind: str, importance, options: Mapping, source: dict,
                 drops: Optional[Dict[str, float]] = None, baseline: Optional[float] = None) -> PruningPlan:
    costs = cm.measure(counts)
    decisions = []
    for k in keys:
        d = cm.decision(k, counts.get(k, 0))
        if drops is not None:
            d.extra["predicted_drop"] = drops.get(k, 0.0)
        decisions.append(d)
    base = {"params": cm.base["params"], "macs": cm.base["macs"]}
    predicted = {"params": costs["params"], "macs": costs["macs"]}
    if cm.base.get("latency") is not None:
        base["latency"] = cm.base["latency"]
        predicted["latency"] = costs["latency"]
    if cm.base.get("attention"):
        base["attention"], predicted["attention"] = cm.base["attention"], costs["attention"]
    if baseline is not None:
        base["metric"] = baseline
    if drops is not None and baseline is not None:
        total = sum(drops.values())
        predicted["metric_drop"] = total
        predicted["metric"] = baseline - total
    on_meta = is_meta_model(cm.model)
    if on_meta:  # counts made without weights: the importance is chosen when the plan is applied
        source = dict(source, planned_on="meta")
    return PruningPlan(decisions, name=name, target=target, kind=kind, importance=None if on_meta else repr(importance),
                       options=json_options(options), source=source, base=base, predicted=predicted)


# ----------------------------------------------------------------------------------------------------------------------
# solvers
# ----------------------------------------------------------------------------------------------------------------------
def solve_budget(table: SensitivityTable, target: Optional[float] = None, kind: str = "macs",
                 speedup: Optional[float] = None, model: Optional[nn.Module] = None, example_inputs=None,
                 importance=None, latency_fn: Optional[Callable[[nn.Module], float]] = None,
                 max_pruning_ratio: Optional[float] = None, name: Optional[str] = None) -> PruningPlan:
    """Per-group channel counts meeting a cost target with the least metric lost according to ``table``.

    Args:
        table: a :class:`~.table.SensitivityTable` from :func:`~.scan.scan`.
        target: the fraction of the unpruned model's cost to keep, in (0, 1) (``0.5``: half); or ``speedup``.
        kind: ``"params"``, ``"macs"`` (of one forward pass on the example inputs) or ``"latency"`` (seconds,
            ``latency_fn(model)``, default ``pe.utils.benchmark``; noisy, so the result meets the target as measured).
        model, example_inputs: the unpruned model the scan was made on (default: the scan's own, when the table
            comes from :func:`~.scan.scan` in this session). It is not modified: plans are measured on a copy.
        importance: chooses the channels (default: the scan's).
        max_pruning_ratio: a tighter cap than the scan's: no group loses more than this fraction of its channels.
        name: the plan's name (default ``"sensitivity, <kind> x<target>"``).

    Returns:
        a :class:`~prune_explorer.plan.PruningPlan` with one decision per scanned group (in the pruner's order),
        ``predicted`` parameters / MACs (exact) and metric (the baseline minus the sum of the groups' scanned drops:
        an estimate that ignores interactions between groups), and ``source`` describing the scan and the path.

    Raises:
        SensitivityError: bad target, or the target cannot be met by the scanned ratios (the message gives the
            least cost reachable and what to change).
    """
    if not isinstance(table, SensitivityTable):
        raise SensitivityError(f"table must be a SensitivityTable (from pe.sensitivity.scan), got {type(table).__name__}")
    target = check_cost_target(target, speedup, error=SensitivityError)
    kind = _check_kind(kind)
    model, example_inputs, importance, options = _context(table, model, example_inputs, importance)
    if max_pruning_ratio is not None:
        options["max_pruning_ratio"] = max_pruning_ratio
    resolved_fwd = options_from_names(model, options).get("forward_fn")
    if kind == "latency" and latency_fn is None:
        latency_fn = default_latency_fn(example_inputs, resolved_fwd)
    cm = PlanCostModel(model, example_inputs, importance, options, latency_fn=latency_fn if kind == "latency" else None)
    budget = target * _cost_value(cm.base, kind)

    # 1. curves
    save_col = "params_removed" if kind == "params" else "macs_removed"
    curves: Dict[str, List[Tuple[int, float, float]]] = {}
    for info in table.groups:
        if info.key not in cm.channels:
            raise SensitivityError(f"the scan's group {info.key!r} is not a group of the model with these options")
        cap = cm.max_removable(info.key)
        pts = {0: (0, 0.0, 0.0)}
        for r in table.rows_of(info.key):
            if 0 < r.channels <= cap and r.channels not in pts:
                pts[r.channels] = (r.channels, table.baseline - r.metric, float(getattr(r, save_col)))
        curves[info.key] = sorted(pts.values())
    # 2. path (an attention block loses whole heads or head dims, not both: the scan measured each on the full block)
    moves = greedy_path(curves, exclusive=_attention_blocks(list(curves)))
    # 3. the first prefix meeting the budget (exact measurements)
    def cost_of(counts):
        return _cost_value(cm.measure(counts), kind)

    full = cost_of(_counts_after(moves, len(moves)))
    if full > budget:
        raise SensitivityError(
            f"the target ({target:.3g} of the {kind}) cannot be met: pruning every scanned group to its largest scanned "
            f"ratio keeps {full / _cost_value(cm.base, kind):.3g} of it. Fix: scan larger ratios (up to 0.9), more "
            "groups, fewer ignored layers or a higher max_pruning_ratio; or set a less aggressive target")
    lo, hi = 0, len(moves)  # cost(lo) > budget >= cost(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost_of(_counts_after(moves, mid)) <= budget:
            hi = mid
        else:
            lo = mid
    counts = _counts_after(moves, hi)
    # 4. repair: the smallest count of the last move's group that still meets the budget
    last = moves[hi - 1]
    a, b = last.n_from, last.n_to  # cost with a is over budget, with b meets it

    def with_count(c):
        return dict(counts, **{last.key: cm.feasible(last.key, c)})

    while b - a > 1:
        mid = (a + b) // 2
        if cost_of(with_count(mid)) <= budget:
            b = mid
        else:
            a = mid
    counts = with_count(b)
    drops = {k: _interp(curves[k], counts.get(k, 0)) for k in curves}
    source = {"algorithm": "greedy (least metric drop per unit of cost saved), exact measurement, repaired last move",
              "scan": {"model": table.meta.get("model"), "eval": table.meta.get("eval"),
                       "ratios": list(table.ratios), "baseline": table.baseline},
              "moves": hi, "path_length": len(moves)}
    name = name or f"sensitivity, {kind} x{target:.3g}"
    return _finish_plan(cm, counts, list(curves), name, target, kind, importance, options, source, drops,
                        table.baseline)


def _depth_order(cm: PlanCostModel, keys: Sequence[str]) -> Dict[str, int]:
    """``{depth group key: its rank}`` by block influence (or ``depth_importance``) on the unpruned model, lowest
    first (empty without depth groups)."""
    depth = getattr(cm.pruner, "depth", None)
    wanted = [k for k in keys if k.endswith(":depth")]
    if depth is None or not wanted:
        return {}
    scores = depth.scores()
    by_key = {f"{b.name}:depth": float(scores[j]) for j, b in enumerate(depth.blocks)}
    ranked = sorted(wanted, key=lambda k: (by_key.get(k, float("inf")), k))
    return {k: pos for pos, k in enumerate(ranked)}


def _max_blocks(cm: PlanCostModel, depth_order: Dict[str, int]) -> int:
    """The most blocks a plan may remove: all of them, but one for a Hugging Face layer stack."""
    depth = getattr(cm.pruner, "depth", None)
    if depth is None:
        return 0
    keep_one = any(b.mode == "delete" for b in depth.blocks)
    return len(depth_order) - (1 if keep_one else 0)


def uniform_plan(model: Optional[nn.Module] = None, example_inputs=None, ratio: Optional[float] = None,
                 target: Optional[float] = None, kind: str = "macs", speedup: Optional[float] = None,
                 importance=None, ignored_layers=None, round_to: Optional[int] = None,
                 max_pruning_ratio: Optional[float] = None, pruner_options: Optional[dict] = None, groups=None,
                 table: Optional[SensitivityTable] = None, latency_fn: Optional[Callable[[nn.Module], float]] = None,
                 name: Optional[str] = None) -> PruningPlan:
    """The same ratio for every group: ``ratio`` itself, or the smallest ratio whose plan meets ``target`` (or
    ``speedup``) of ``kind`` (see :func:`solve_budget`). The model may be on the ``meta`` device (a model too big
    to load, see :mod:`prune_explorer.plan.meta`): the plan then records counts made with ``RandomImportance`` and
    no importance, and :func:`~prune_explorer.plan.apply_plan` ranks the real weights later.

    Each group with ``C`` root channels loses ``C - int(C * (1 - ratio))`` rounded down to a count the pruner
    allows, as ``pruner.step()`` would. With depth groups (``pruner_options={"prune_depth": True}``), the fraction
    ``ratio`` of the blocks goes, those of lowest block influence first (a Hugging Face layer stack keeps one). With ``table=`` the model, example inputs, importance, pruner options and
    groups default to the scan's (so the plan is comparable with :func:`solve_budget`'s); otherwise the options are
    ``ignored_layers``, ``round_to``, ``max_pruning_ratio`` and ``pruner_options``.
    """
    if table is not None:
        model, example_inputs, importance, options = _context(table, model, example_inputs, importance)
        if groups is None:
            groups = table.keys()
    else:
        if model is None or example_inputs is None:
            raise SensitivityError("uniform_plan needs model= and example_inputs= (or table= from a scan)")
        options = options_to_names(model, ignored_layers=ignored_layers, round_to=round_to,
                                   **(pruner_options or {}))
        importance = planning_importance(model, importance, error=SensitivityError)
    if max_pruning_ratio is not None:
        options["max_pruning_ratio"] = max_pruning_ratio
    if (ratio is None) == (target is None and speedup is None):
        raise SensitivityError("give either ratio= (the same fraction for every group) or a target= / speedup=")
    if ratio is not None and not is_ratio(ratio):
        raise SensitivityError(f"ratio={ratio!r} must be a number in [0, 1)")
    kind = _check_kind(kind)
    if kind == "latency" and ratio is None and is_meta_model(model):
        raise SensitivityError("a meta-device model has no latency (nothing runs): use kind='params' or 'macs', or "
                               "a ratio=")
    if kind == "latency" and latency_fn is None and ratio is None:
        latency_fn = default_latency_fn(example_inputs)
    cm = PlanCostModel(model, example_inputs, importance, options,
                       latency_fn=latency_fn if kind == "latency" else None)
    keys = [k for k in cm.keys if groups is None or k in set(groups)]

    # head dims of a block that also loses heads: the ratio is resolved on the block as its heads left it
    after_heads = {k for b in _attention_blocks(keys) for k in b if k.endswith(":attention-dims")}

    depth_order = _depth_order(cm, keys)

    def counts_at(r: float) -> Dict[str, Union[int, float]]:
        out = {k: float(r) if k in after_heads else cm.feasible(k, cm.channels[k] - int(cm.channels[k] * (1 - r)))
               for k in keys if k not in depth_order}
        # depth groups (pruner_options prune_depth=True): the fraction r of the blocks, lowest block influence first
        n_blocks = min(int(r * len(depth_order) + 1e-9), _max_blocks(cm, depth_order))
        out.update({k: int(pos < n_blocks) for k, pos in depth_order.items()})
        return out

    goal = None
    if ratio is None:
        goal = check_cost_target(target, speedup, error=SensitivityError)
        budget = goal * _cost_value(cm.base, kind)
        lo, hi = 0.0, 0.999
        if _cost_value(cm.measure(counts_at(hi)), kind) > budget:
            raise SensitivityError(f"the target ({goal:.3g} of the {kind}) cannot be met by uniform pruning of these "
                                   "groups (even at ratio 0.999). Fix: fewer ignored layers, or a higher "
                                   "max_pruning_ratio")
        while hi - lo > 1e-4:
            mid = (lo + hi) / 2
            if _cost_value(cm.measure(counts_at(mid)), kind) <= budget:
                hi = mid
            else:
                lo = mid
        ratio = hi
    counts = counts_at(ratio)
    source = {"algorithm": "uniform", "ratio": ratio}
    name = name or f"uniform {ratio:.3g}"
    return _finish_plan(cm, counts, keys, name, goal, kind if goal is not None else None, importance, options, source)
