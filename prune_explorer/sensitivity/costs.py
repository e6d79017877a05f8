"""Exact costs of plans: :class:`PlanCostModel` applies per-group counts to a private copy of a model (a trial of the
pruner's driver: pruned, measured, undone) and measures parameters, MACs and, optionally, latency (:func:`default_latency_fn`).

Used by the budget solvers (:mod:`.budget`) and the plan comparison (:mod:`.compare`).
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import torch.nn as nn

from ..measure import count_macs, count_params
from ..plan import GroupDecision, PruningPlan, build_pruner, group_key, options_from_names
from ..plan.walk import plan_cuts
from ..plan.record import attention_sizes
from .errors import SensitivityError

__all__ = ["PlanCostModel", "default_latency_fn"]


def default_latency_fn(example_inputs, forward_fn=None, repeat: int = 20, warmup: int = 3,
                       max_time_s: float = 2.0) -> Callable[[nn.Module], float]:
    """Seconds per forward pass of a model on ``example_inputs``: the median of ``repeat`` timed passes after
    ``warmup`` (at most ``max_time_s`` of timing), measured with ``pe.utils.benchmark.measure_latency``."""
    from ..measure.benchmark import measure_latency

    def latency(model):
        stats = measure_latency(model, example_inputs, repeat=repeat, warmup=warmup, run_fn=forward_fn,
                                max_time_s=max_time_s)
        return stats.median_ms / 1e3

    return latency


class PlanCostModel:
    """Applies per-group counts to a private copy of a model (through a pruner, then undone) and measures them.

    ``measure({key: n})`` -> ``{"params": int, "macs": int, "latency": seconds or None}`` (plus ``"attention"``, each
    block's head counts, for models with attention blocks); measurements are cached
    by counts. ``feasible(key, n)`` is the count the pruner actually removes when asked for ``n`` (rounded down for
    ``round_to`` / ties / guards), ``max_removable(key)`` the most it allows.
    """

    def __init__(self, model: nn.Module, example_inputs, importance=None, options: Optional[Mapping] = None,
                 latency_fn: Optional[Callable[[nn.Module], float]] = None):
        self.model = copy.deepcopy(model)
        self.example_inputs = example_inputs
        self.options = dict(options or {})
        resolved = options_from_names(self.model, self.options)
        self.forward_fn = resolved.get("forward_fn")
        self.pruner = build_pruner(self.model, example_inputs, importance, resolved)
        self.latency_fn = latency_fn
        self._groups = {}
        for g in self.pruner.get_all_groups():
            self._groups[group_key(g)] = g
        self.keys = list(self._groups)
        self.channels = {k: len(g.root_idxs) for k, g in self._groups.items()}
        self._feasible: Dict[Tuple[str, int], int] = {}
        self._cost: Dict[tuple, dict] = {}
        self.base = self.measure({})

    def _group(self, key: str):
        if key not in self._groups:
            raise SensitivityError(f"the model has no group {key!r} with these options; groups: {self.keys[:8]}")
        if getattr(self.pruner, "attention_blocks", None):  # attention groups are rebuilt on the current model
            for g in self.pruner.get_all_groups():
                if group_key(g) == key:
                    return g
        return self._groups[key]

    def feasible(self, key: str, n: int) -> int:
        n = max(0, int(n))
        if n == 0:
            return 0
        k = (key, n)
        if k not in self._feasible:
            self._feasible[k] = len(self.pruner.propose(self._group(key), n))
        return self._feasible[k]

    def max_removable(self, key: str) -> int:
        return self.pruner.max_removable(self._group(key))

    def decision(self, key: str, n) -> GroupDecision:
        """``n``: an int (root channels to remove) or a float (a ratio, resolved when the group is reached)."""
        if isinstance(n, float):
            return GroupDecision(key, channels=self.channels[key], ratio=n)
        return GroupDecision(key, channels=self.channels[key], remove=int(n))

    def plan(self, counts: Mapping[str, Union[int, float]], name: str = "plan") -> PruningPlan:
        return PruningPlan([self.decision(k, n) for k, n in counts.items() if n > 0], name=name)

    def measure(self, counts: Mapping[str, Union[int, float]], latency: Optional[bool] = None) -> dict:
        """Costs with ``counts`` applied (see :meth:`decision` for the values)."""
        key = tuple(sorted((k, n) for k, n in counts.items() if n > 0))
        if key in self._cost:
            return self._cost[key]
        with self.pruner.driver.trial(plan_cuts(self.pruner, self.plan(dict(key)), strict=True)):
            out = {"params": count_params(self.model),
                   "macs": count_macs(self.model, self.example_inputs, forward_fn=self.forward_fn), "latency": None}
            heads = attention_sizes(self.pruner.DG)
            if heads:
                out["attention"] = heads  # {block: {"num_heads", "num_key_value_heads", "head_dim"}}
            if self.latency_fn is not None and latency is not False:
                out["latency"] = float(self.latency_fn(self.model))
        self._cost[key] = out
        return out
