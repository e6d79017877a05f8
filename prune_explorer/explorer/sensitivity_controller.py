"""The explorer's sensitivity panel as plain Python: scan the groups still to decide, solve a budget, walk the plan.

:class:`SensitivityController` sits beside an :class:`~.controller.ExplorerController` (``ex.sensitivity`` in the
app, or built on a controller in a script or test). It holds no widgets:

* :meth:`~SensitivityController.scan` runs :func:`prune_explorer.sensitivity.scan` on a *copy* of the model as it
  is now (the explorer's model is never touched, so an error or a Ctrl-C / kernel interrupt in the middle leaves
  the model and the walk exactly as they were), over the groups the walk has not decided yet, with the explorer's
  importance, ignored layers, ``round_to`` and head options. Progress goes to the controller's progress callback
  as the stage ``"sensitivity scan"``; finished points go to an on-disk cache, so running the scan again after an
  interrupt only evaluates the points that were missing.
* :meth:`~SensitivityController.heatmap` / :meth:`~SensitivityController.curve` are the data of the heatmap (groups
  x ratios) and of one group's curve with the ratio proposed now marked; ``heatmap_figure`` / ``curve_figure`` draw
  them with :mod:`.sensitivity_figures` (plotly).
* :meth:`~SensitivityController.solve` meets a parameter / MAC / latency target with the least metric lost
  (:func:`prune_explorer.sensitivity.solve_budget`) and starts *reviewing* the plan: from then on, each group the
  walk shows is pre-selected with the plan's channel count (through the controller's own ``adjust``), so the user
  accepts, adjusts or skips it as usual and ``undo`` works as always. :meth:`~SensitivityController.apply_plan`
  accepts every remaining group with its planned count at once (all or nothing: an error or an interrupt undoes
  what it had accepted), and :meth:`~SensitivityController.undo_plan` undoes that whole step.

Targets are fractions of the *original* model's cost to keep (``target=0.5, kind="macs"``: half the original
MACs), counting what was already pruned in the walk; ``relative_to="now"`` measures them against the model as it is.

Example (a real scan of the stem and one block of a resnet18, serially in this process):

    >>> import torch, torchvision
    >>> from prune_explorer.explorer import ExplorerController
    >>> from prune_explorer.explorer.sensitivity_controller import SensitivityController
    >>> model = torchvision.models.resnet18().eval()
    >>> batch = torch.randn(2, 3, 32, 32)
    >>> with torch.no_grad():
    ...     ref = model(batch)
    >>> def eval_fn(m):                                   # higher is better
    ...     with torch.no_grad():
    ...         return -torch.nn.functional.mse_loss(m(batch), ref).item()
    >>> c = ExplorerController(model, torch.randn(1, 3, 32, 32))
    >>> s = SensitivityController(c, eval_fn, ratios=(0.25, 0.5))
    >>> table = s.scan(groups=["conv1", "layer4.0.conv1"])
    >>> s.heatmap()["groups"], s.heatmap()["ratios"]
    (['conv1', 'layer4.0.conv1'], [0.25, 0.5])
    >>> s.curve("conv1")["proposed_fraction"]             # the walk shows conv1, proposed at 0.5
    0.5
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch.nn as nn

from ..errors import PruneExplorerError
from ..plan import PruningPlan
from ..plan.meta import is_meta_model
from ..plan.options import PRUNER_OPTIONS, options_from_names, options_to_names
from ..sensitivity import DEFAULT_RATIOS, SensitivityTable, solve_budget
from ..sensitivity import scan as run_scan
from ..sensitivity.budget import KINDS
from .plan_review import APPLY_STAGE, PlanReview
from .session import ExplorerError
from ..validation import check_cost_target

__all__ = ["SensitivityController", "SCAN_STAGE", "APPLY_STAGE", "SOLVE_STAGE"]

#: progress stages reported to the explorer controller's ``progress(stage, done, total)``
SCAN_STAGE = "sensitivity scan"
SOLVE_STAGE = "solving the budget"

_HEAD_OPTIONS = ("round_to", "max_pruning_ratio")


class SensitivityController(PlanReview):
    """Sensitivity scans, budget plans and their review for one :class:`~.controller.ExplorerController`.

    Args:
        controller: the explorer's controller (its model, importance, options and walk).
        eval_fn: ``eval_fn(model) -> float``, higher is better (accuracy on a held-out batch, minus a loss...);
            put the model in eval mode and use ``torch.no_grad()`` inside. May be given later (:meth:`set_eval_fn`).
        ratios: the fractions of each group's channels removed in a scan, each in (0, 1).
        executor: ``"serial"`` (this process: works with functions defined in a notebook, default), ``"local"``
            (worker processes: ``eval_fn`` must be importable) or ``"ray"``; see :func:`prune_explorer.sensitivity.scan`.
        workers: worker processes / Ray actors for those executors.
        cache_dir: where finished points are kept so an interrupted scan resumes (default: a temporary folder,
            removed with this controller).
        seed: the seed set before each ``eval_fn`` call.

    State: ``table`` (the last scan's :class:`~prune_explorer.sensitivity.SensitivityTable`, or None), ``plan`` (the
    plan under review, or None), ``plans`` (every plan solved, by name), ``scanned_at`` (how many decisions the walk
    had when the scan ran), ``applied`` (the decisions made by the last :meth:`apply_plan`).
    """

    def __init__(self, controller, eval_fn: Optional[Callable[[nn.Module], float]] = None,
                 ratios: Sequence[float] = DEFAULT_RATIOS, executor="serial", workers: Optional[int] = None,
                 cache_dir=None, seed: int = 0):
        self.controller = controller
        self._listeners: List[Callable[[str], None]] = []
        self.eval_fn: Optional[Callable[[nn.Module], float]] = None
        if eval_fn is not None:
            self.set_eval_fn(eval_fn)
        self.ratios = tuple(ratios)
        self.executor = executor
        self.workers = workers
        self.seed = seed
        self._cache_dir = cache_dir
        self.table: Optional[SensitivityTable] = None
        self.plan: Optional[PruningPlan] = None
        self.plans: Dict[str, PruningPlan] = {}
        self.scanned_at: Optional[int] = None
        self.applied: List[Any] = []
        self._adjusting = False
        controller.subscribe(self._on_walk_change)

    # ---- setup -------------------------------------------------------------------------------------------------
    def set_eval_fn(self, eval_fn: Callable[[nn.Module], float]) -> None:
        """Set the metric: ``eval_fn(model) -> float``, higher is better."""
        if not callable(eval_fn):
            raise ExplorerError(f"eval_fn must be a function eval_fn(model) -> float (higher is better), got "
                                f"{type(eval_fn).__name__} {eval_fn!r:.60}")
        self.eval_fn = eval_fn
        self._emit("eval_fn")

    def subscribe(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(event)`` after every change here (events: scan, solve, plan, apply, undo_plan, eval_fn)."""
        self._listeners.append(fn)

    def _emit(self, event: str) -> None:
        for fn in list(self._listeners):
            fn(event)

    @property
    def cache_dir(self) -> str:
        """The folder of the scan cache (created on first use)."""
        if self._cache_dir is None:  # removed with this controller (or at exit)
            self._tmp = tempfile.TemporaryDirectory(prefix="pe-sensitivity-")
            self._cache_dir = self._tmp.name
        return os.fspath(self._cache_dir)

    def remaining_keys(self) -> List[str]:
        """Keys of the groups the walk has not decided yet (the current one first), in the walk's order."""
        c = self.controller
        if c.current is None:
            return []
        done = {d.key for d in c.decisions}
        from ..plan import group_key

        keys = []
        seen_current = False
        for g in c.pruner.get_all_groups():
            k = group_key(g)
            if g is c.current or k == group_key(c.current):
                seen_current = True
            if seen_current and k not in done:
                keys.append(k)
        return keys

    def _scan_options(self, model_copy: nn.Module) -> dict:
        """The explorer's pruner options for ``scan``, moved onto ``model_copy`` (modules by qualified name)."""
        c = self.controller
        opts = {k: v for k, v in c.pruner_kwargs.items() if k in PRUNER_OPTIONS and v is not None}
        opts["ignored_layers"] = list(c.ignored_names)
        names = options_to_names(c.model, **opts)
        resolved = options_from_names(model_copy, names)
        out = {k: resolved.pop(k) for k in ("ignored_layers",) + _HEAD_OPTIONS if k in resolved}
        out["pruner_options"] = resolved
        return out

    # ---- the scan ----------------------------------------------------------------------------------------------
    def scan(self, groups="remaining", ratios: Optional[Sequence[float]] = None, executor=None,
             workers: Optional[int] = None) -> SensitivityTable:
        """Scan the model as it is now (on a copy): every group in ``groups`` alone at every ratio.

        Args:
            groups: ``"remaining"`` (the groups the walk has not decided yet, default), ``None`` (every group) or
                group keys / root layer names.
            ratios: fractions of each group's channels to remove (default: the ones given at construction).
            executor, workers: override the construction's (see :func:`prune_explorer.sensitivity.scan`).

        Returns the table (also kept as ``self.table``). An error or an interrupt leaves the model, the walk and
        the previous table as they were; the points already evaluated stay in the cache.
        """
        c = self.controller
        if self.eval_fn is None:
            raise ExplorerError("a sensitivity scan needs a metric: pass eval_fn=... (eval_fn(model) -> float, higher "
                                "is better) to pe.Explorer(...), or call ex.sensitivity.set_eval_fn(fn)")
        if is_meta_model(c.model):
            raise ExplorerError("a sensitivity scan evaluates the model, and this one is on the meta device (no "
                                "weights). Fix: explore the real model to scan it")
        if groups == "remaining":
            groups = self.remaining_keys()
            if not groups:
                raise ExplorerError("every group has been decided: there is nothing left to scan. Undo some "
                                    "decisions, or scan with groups=None (every group of the model as it is)")
        ratios = self.ratios if ratios is None else tuple(ratios)
        model_copy = copy.deepcopy(c.model)
        options = self._scan_options(model_copy)
        total = [1]

        def progress(done: int, n: int) -> None:
            total[0] = n
            c.report_progress(SCAN_STAGE, done, n)

        c.report_progress(SCAN_STAGE, 0, 1)
        try:
            table = run_scan(model_copy, copy.deepcopy(c.example_inputs), self.eval_fn, importance=c.importance,
                             ratios=ratios, groups=groups, executor=self.executor if executor is None else executor,
                             workers=self.workers if workers is None else workers, cache_dir=self.cache_dir,
                             seed=self.seed, progress=progress, **options)
        except PruneExplorerError as exc:
            raise ExplorerError(f"sensitivity scan: {exc}") from exc
        finally:
            c.report_progress(SCAN_STAGE, total[0], total[0])  # done (or stopped): the bar goes away
        self.table = table
        self.scanned_at = len(c.decisions)
        st = table.stats
        c.notify(f"sensitivity scan: {len(table.groups)} groups x {len(table.ratios)} ratios, baseline "
                     f"{table.baseline:.4g}; {st['evaluated']} points evaluated"
                     + (f", {st['from_cache']} from the cache" if st["from_cache"] else "")
                     + f" in {st['seconds']:.1f} s")
        self._emit("scan")
        return table

    def _require_table(self, what: str) -> SensitivityTable:
        if self.table is None:
            raise ExplorerError(f"cannot {what}: run a sensitivity scan first (ex.sensitivity.scan() or the "
                                "'Run scan' button)")
        return self.table

    # ---- figures' data ------------------------------------------------------------------------------------------
    def heatmap(self, value: str = "drop") -> dict:
        """The heatmap's data: ``groups`` (keys, walk order), ``ratios``, ``values[g][r]`` (``value`` of the table's
        :meth:`~prune_explorer.sensitivity.SensitivityTable.pivot`: the metric drop by default, None where a ratio
        removes nothing), the ``baseline`` metric, and the ``current`` group's key (None if it was not scanned)."""
        t = self._require_table("draw the heatmap")
        try:
            p = t.pivot(value)
        except PruneExplorerError as exc:
            raise ExplorerError(str(exc)) from exc
        cur = self.current_key()
        return {"groups": list(p.groups), "ratios": [float(r) for r in p.ratios],
                "values": [list(row) for row in p.values], "value": value, "baseline": t.baseline,
                "current": cur if cur in t.keys() else None}

    def current_key(self) -> Optional[str]:
        from ..plan import group_key

        c = self.controller
        return None if c.current is None else group_key(c.current)

    def proposed_fraction(self, key: Optional[str] = None) -> Optional[float]:
        """The fraction of the group's channels proposed now: for the group on show, what accepting removes; for
        another group, the plan under review's (None when there is neither)."""
        key = key or self.current_key()
        c = self.controller
        if key is not None and key == self.current_key():
            total = c.current.root_space.current_size
            return len(c.current_idxs) / total if total else 0.0
        if self.plan is not None and key in self.plan:
            return self.plan[key].fraction
        return None

    def curve(self, key: Optional[str] = None) -> dict:
        """One group's scan (default: the group on show): ``fraction`` / ``channels`` / ``metric`` per scanned
        ratio (starting at 0 = the baseline), its ``key``, ``channels`` and the ``proposed_fraction`` marked on the
        card. Raises :class:`ExplorerError` if that group was not scanned."""
        t = self._require_table("draw a group's curve")
        key = key or self.current_key()
        if key is None or key not in t.keys():
            raise ExplorerError(f"group {key!r} is not in the scan (scanned: {t.keys()[:5]}...). Scan again to "
                                "include it")
        c = t.curve(key)
        return {"key": key, "channels": t.group(key).channels, "fraction": list(c["fraction"]),
                "metric": list(c["metric"]), "ratio": list(c["ratio"]), "baseline": t.baseline,
                "proposed_fraction": self.proposed_fraction(key)}

    def has_curve(self, key: Optional[str] = None) -> bool:
        key = key or self.current_key()
        return self.table is not None and key is not None and key in self.table.keys()

    def heatmap_figure(self, value: str = "drop"):
        """The heatmap as a plotly figure (:func:`~.sensitivity_figures.sensitivity_heatmap`)."""
        from .sensitivity_figures import sensitivity_heatmap

        return sensitivity_heatmap(self._require_table("draw the heatmap"), value=value)

    def curve_figure(self, key: Optional[str] = None):
        """One group's curve with the proposed ratio marked (:func:`~.sensitivity_figures.group_curve_figure`)."""
        from .sensitivity_figures import group_curve_figure

        data = self.curve(key)
        return group_curve_figure(self.table, data["key"], proposed=data["proposed_fraction"])

    # ---- budget ------------------------------------------------------------------------------------------------
    def solve(self, target: Optional[float] = None, kind: str = "macs", speedup: Optional[float] = None,
              relative_to: str = "original", name: Optional[str] = None, review: bool = True) -> PruningPlan:
        """A plan for the scanned groups that meets ``target`` with the least metric lost according to the scan.

        Args:
            target: the fraction of the cost to keep, in (0, 1) (``0.5``: half); or ``speedup`` (2.0: half).
            kind: ``"params"``, ``"macs"`` or ``"latency"`` (measured; always relative to the model as scanned).
            relative_to: ``"original"`` (the unpruned model, counting what the walk already removed) or ``"now"``
                (the model as scanned).
            name: the plan's name (default ``"sensitivity, <kind> x<target>"``).
            review: start reviewing it (the walk pre-selects the plan's counts; see the module docstring).

        Returns the :class:`~prune_explorer.plan.PruningPlan` (kept in ``plans`` by name, and as ``plan``).
        """
        t = self._require_table("solve a budget")
        if kind not in KINDS:
            raise ExplorerError(f"kind must be one of {KINDS} (what the target measures), got {kind!r}")
        if relative_to not in ("original", "now"):
            raise ExplorerError(f"relative_to must be 'original' or 'now', got {relative_to!r}")
        target = goal = check_cost_target(target, speedup, error=ExplorerError, cost="the cost")
        label = f"{kind} x{target:.3g}"
        if relative_to == "original" and kind != "latency":
            c = self.controller
            orig = c.params0 if kind == "params" else c.macs0
            scanned = t.base_params if kind == "params" else t.base_macs
            if not orig or not scanned:
                raise ExplorerError(f"the {kind} of the model could not be counted; use kind='params'")
            goal = target * orig / scanned
            if goal >= 1:
                raise ExplorerError(f"the target is already met: the model as scanned has {scanned / orig:.1%} of the "
                                    f"original {kind}, the target keeps {target:.1%}")
            label = f"{kind} x{target:.3g} of the original"
        c = self.controller
        c.report_progress(SOLVE_STAGE, 0, 1)
        try:
            plan = solve_budget(t, target=goal, kind=kind, name=name or f"sensitivity, {label}")
        except PruneExplorerError as exc:
            raise ExplorerError(f"budget: {exc}") from exc
        finally:
            c.report_progress(SOLVE_STAGE, 1, 1)
        plan.metadata["explorer"] = {"target": float(target), "kind": kind, "relative_to": relative_to,
                                     "scanned_at": self.scanned_at}
        self.plans[plan.name] = plan
        pred = plan.predicted
        base = plan.base
        msg = (f"plan {plan.name!r}: {sum(1 for d in plan if d.count(d.channels or 0))} groups pruned; "
               f"parameters {pred['params'] / max(base['params'], 1):.1%} and MACs "
               f"{pred['macs'] / max(base['macs'], 1):.1%} of the model as scanned")
        if "metric" in pred:
            msg += f"; predicted metric {pred['metric']:.4g} (baseline {base.get('metric', float('nan')):.4g})"
        if review:
            self.review(plan)
            msg += ". Reviewing it: each group is pre-selected with the plan's count"
        c.notify(msg)
        self._emit("solve")
        return plan
