"""One scan point, the same code in every executor: prune a group alone, measure, evaluate, restore exactly.

A :class:`PointEvaluator` owns a model and a pruner traced on it (in the user's process for the serial executor,
in each worker process or Ray actor otherwise, where it is built once from a :class:`WorkerSpec`). For a
:class:`PointTask` (a group key and the root channels to remove, chosen by the scan in the user's process) it

1. prunes those channels of the group (a trial of the pruner's driver, :mod:`prune_explorer.pruner.driver`),
2. counts parameters and MACs (one forward pass on the example inputs),
3. calls ``eval_fn(model)`` with the CPU random generator seeded (``seed``) inside ``torch.random.fork_rng``, so
   every point sees the same random state whichever worker runs it and the caller's generator is untouched,
4. undoes the pruning (the graph's undo puts the very same parameter and buffer objects back), then compares every
   parameter and buffer with a reference copy, by identity and value (``torch.equal``: about as costly as reading
   the weights once); anything ``eval_fn`` changed in place (BatchNorm statistics updated in train mode, an
   optimizer step...) is copied back from the reference, and training flags and ``.grad`` are reset. The model is
   bit-identical after every point.
"""

from __future__ import annotations

import math
import numbers
import pickle
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from ..measure import count_macs, count_params
from ..plan import build_pruner, group_key, options_from_names
from ..pruner.driver import Cut
from .errors import SensitivityError

__all__ = ["PointTask", "PointResult", "PointEvaluator", "WorkerSpec", "ModelGuard", "as_metric"]


@dataclass(frozen=True)
class PointTask:
    """What to evaluate: ``key`` (a group key, or None for the unpruned model) and ``idxs`` (root channels, current
    indices of the unpruned model); ``id`` names the point in the cache."""

    id: str
    key: Optional[str]
    idxs: Tuple[int, ...] = ()


@dataclass
class PointResult:
    """A finished point: ``metric``, ``params_removed`` and ``macs_removed`` (see :mod:`.table`), ``seconds`` spent
    on the whole point and ``eval_seconds`` inside ``eval_fn``, and ``restored`` (tensors ``eval_fn`` had changed
    in place, put back)."""

    id: str
    metric: float
    params_removed: int
    macs_removed: int
    seconds: float = 0.0
    eval_seconds: float = 0.0
    restored: List[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"id": self.id, "metric": self.metric, "params_removed": self.params_removed,
                "macs_removed": self.macs_removed, "seconds": self.seconds, "eval_seconds": self.eval_seconds}


def as_metric(value, where: str) -> float:
    """``value`` as a finite Python float, or a :class:`SensitivityError` saying what ``eval_fn`` returned."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise SensitivityError(f"eval_fn returned a tensor of shape {tuple(value.shape)} {where}; it must return "
                                   "one number (higher is better). Fix: return e.g. accuracy.item()")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SensitivityError(f"eval_fn returned {type(value).__name__} {value!r:.60} {where}; it must return one "
                               "float, higher is better (e.g. accuracy, or minus a loss)")
    v = float(value) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not math.isfinite(v):
        raise SensitivityError(f"eval_fn returned {v} {where}; the metric must be a finite float. Fix: guard the "
                               "metric against empty batches / overflow, or return minus a clipped loss")
    return v


class ModelGuard:
    """A reference copy of a model's parameters and buffers (plus training flags and ``.grad``), to check and
    restore them bit for bit after ``eval_fn`` ran (costs one copy of the weights)."""

    def __init__(self, model: nn.Module):
        self._entries: List[list] = []
        for mname, mod in model.named_modules():
            for store in ("_parameters", "_buffers"):
                for name, t in getattr(mod, store).items():
                    if t is not None:
                        full = f"{mname}.{name}" if mname else name
                        self._entries.append([mod, store, name, full, t, t._version, t.detach().clone()])
        self._modes = [(m, m.training) for m in model.modules()]
        self._grads = [(p, p.grad) for p in model.parameters()]

    def restore(self) -> List[str]:
        """Put back anything changed since the guard was made; returns the names of the tensors restored."""
        changed = []
        for e in self._entries:
            mod, store, name, full, t, version, ref = e
            d = getattr(mod, store)
            if d.get(name) is not t:
                d[name] = t
                changed.append(full)
            # values are compared, not only version counters: BatchNorm updates its running statistics in place
            # without bumping them, and neither does an in-place change through ``.data``
            if t._version != version or not torch.equal(t, ref):
                if not torch.equal(t, ref):
                    with torch.no_grad():
                        t.copy_(ref)
                    if full not in changed:
                        changed.append(full)
                e[5] = t._version
        for m, mode in self._modes:
            if m.training != mode:
                m.training = mode
        for p, g in self._grads:
            if p.grad is not g:
                p.grad = g
        return changed

    def same_as_reference(self) -> bool:
        """Whether every parameter and buffer equals its reference copy bit for bit (a full comparison)."""
        for mod, store, name, _, t, _, ref in self._entries:
            if getattr(mod, store).get(name) is not t or t.dtype != ref.dtype or not torch.equal(t, ref):
                return False
        return True


@dataclass
class WorkerSpec:
    """What a worker needs besides the model: example inputs, ``eval_fn`` (pickled bytes, or the function itself
    where the transport pickles it), pruner options by name, the unpruned model's figures, the seed and the number
    of torch threads (0: leave as is)."""

    example_inputs: Any
    eval_fn: Any
    options: Dict[str, Any]
    base_params: int
    base_macs: int
    seed: int = 0
    threads: int = 0


class PointEvaluator:
    """Evaluates :class:`PointTask` objects on ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module, example_inputs, eval_fn: Callable, pruner, base_params: int, base_macs: int,
                 seed: int = 0, forward_fn: Optional[Callable] = None):
        self.model = model
        self.example_inputs = example_inputs
        self.eval_fn = eval_fn
        self.pruner = pruner
        self.base_params = int(base_params)
        self.base_macs = int(base_macs)
        self.seed = int(seed)
        self.forward_fn = forward_fn
        self.guard = ModelGuard(model)
        self._groups: Dict[str, Any] = {}
        self._static = not getattr(pruner, "attention_blocks", None)

    @classmethod
    def from_spec(cls, model: nn.Module, spec: WorkerSpec) -> "PointEvaluator":
        """Build the evaluator inside a worker: set the thread count, unpickle ``eval_fn``, trace the model."""
        if spec.threads:
            torch.set_num_threads(int(spec.threads))
        eval_fn = pickle.loads(spec.eval_fn) if isinstance(spec.eval_fn, (bytes, bytearray)) else spec.eval_fn
        options = options_from_names(model, spec.options)
        pruner = build_pruner(model, spec.example_inputs, None, options)
        return cls(model, spec.example_inputs, eval_fn, pruner, spec.base_params, spec.base_macs, seed=spec.seed,
                   forward_fn=options.get("forward_fn"))

    def _group(self, key: str):
        if self._static and key in self._groups:
            return self._groups[key]
        for g in self.pruner.get_all_groups():
            k = group_key(g)
            if self._static:
                self._groups[k] = g
            if k == key:
                return g
        raise SensitivityError(f"the worker's model has no group {key!r}: it differs from the model the scan was "
                               "planned on")

    def _evaluate(self, where: str) -> Tuple[float, float]:
        t0 = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                value = self.eval_fn(self.model)
        except SensitivityError:
            raise
        except Exception as exc:
            raise SensitivityError(f"eval_fn raised {type(exc).__name__} {where}: {exc}") from exc
        return as_metric(value, where), time.perf_counter() - t0

    def run(self, task: PointTask) -> PointResult:
        """Evaluate one point; the model is restored exactly whatever happens (errors and interrupts included)."""
        t0 = time.perf_counter()
        if task.key is None:
            try:
                metric, te = self._evaluate("on the unpruned model")
            finally:
                restored = self.guard.restore()
            return PointResult(task.id, metric, 0, 0, time.perf_counter() - t0, te, restored)
        group = self._group(task.key)
        where = f"after removing {len(task.idxs)} root channels of group {task.key}"
        try:
            with self.pruner.driver.trial([Cut(group, list(task.idxs))]):
                params = count_params(self.model)
                macs = count_macs(self.model, self.example_inputs, forward_fn=self.forward_fn)
                metric, te = self._evaluate(where)
        finally:
            restored = self.guard.restore()
        return PointResult(task.id, metric, self.base_params - params, self.base_macs - macs,
                           time.perf_counter() - t0, te, restored)
