"""Which groups can take it: sensitivity scans, budget targets and plans to compare.

* :func:`scan` prunes every group alone at several ratios, evaluates ``eval_fn(model) -> float`` (higher is
  better), restores the model exactly and returns a :class:`SensitivityTable` (group, ratio, channels, metric,
  parameters and MACs removed). It runs in local worker processes by default, in this process
  (``executor="serial"``) or on a Ray cluster (``executor="ray"``), with a progress bar and an on-disk cache that
  lets an interrupted scan resume (:mod:`.executors`, :mod:`.cache`).
* :func:`solve_budget` turns a table into a :class:`~prune_explorer.plan.PruningPlan` that meets a parameter, MAC
  or latency target while losing the least metric according to the scan; :func:`uniform_plan` is the same-ratio
  baseline (:mod:`.budget`).
* :func:`compare_plans` applies named plans to copies of the model and tabulates parameters, MACs, latency, the
  metric before fine-tuning and the layer widths (:mod:`.compare`); ``pe.explorer.sensitivity_figures`` draws them.

Nothing here imports plotly, widgets or Ray at import time.
"""

from .errors import SensitivityError
from .table import GroupInfo, Pivot, ScanRow, SensitivityTable
from .evaluator import ModelGuard, PointEvaluator, PointResult, PointTask
from .executors import Executor, LocalExecutor, RayExecutor, SerialExecutor
from .cache import ScanCache, callable_identity, model_fingerprint
from .scan import DEFAULT_RATIOS, scan
from .budget import PlanCostModel, greedy_path, solve_budget, uniform_plan
from .compare import PlanComparison, PlanSummary, compare_plans

__all__ = [
    "scan", "DEFAULT_RATIOS", "SensitivityTable", "ScanRow", "GroupInfo", "Pivot", "SensitivityError",
    "Executor", "SerialExecutor", "LocalExecutor", "RayExecutor", "ScanCache", "model_fingerprint",
    "callable_identity", "PointEvaluator", "PointTask", "PointResult", "ModelGuard",
    "solve_budget", "uniform_plan", "PlanCostModel", "greedy_path", "compare_plans", "PlanComparison", "PlanSummary",
]
