"""Where the points of a scan run: in this process, in local worker processes, or on a Ray cluster.

A scan is one independent evaluation per (group, channel count). Every executor runs the same
:class:`~.evaluator.PointEvaluator` code on :class:`~.evaluator.PointTask` objects and yields
:class:`~.evaluator.PointResult` objects as they finish; only the transport differs:

* :class:`SerialExecutor` (``executor="serial"``): in this process, on the user's model itself (pruned, evaluated
  and restored bit for bit point after point). No pickling; the only choice for an ``eval_fn`` that cannot be
  pickled (a lambda, a closure over a GPU data loader...).
* :class:`LocalExecutor` (``executor="local"``, the default): ``workers`` processes on this machine. The model is
  written once to a temporary file (``torch.save`` of the module) and each worker loads it once, traces it once and
  then takes points from a shared queue. ``eval_fn`` must be picklable (a function defined at module level or in a
  notebook cell, or an instance of such a class; not a lambda or a nested function). On Linux the workers are
  forked (as PyTorch's DataLoader does), so functions and model classes defined in a notebook work; elsewhere, or
  for a model on a GPU, they are spawned and the model's class must be importable.
* :class:`RayExecutor` (``executor="ray"``): one Ray actor per worker. Uses the Ray instance this process is
  connected to (``ray.init(address=...)``), or starts a local one. The model goes to Ray's object store once;
  Ray pickles ``eval_fn`` and notebook-defined classes by value. Ray is an optional extra
  (``pip install prune_explorer[ray]``) imported only here.

Each worker sets ``torch.set_num_threads(threads_per_worker)`` (default: the CPUs it is given), so local and Ray
workers with the same thread count compute bit-identical metrics.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import shutil
import signal
import sys
import tempfile
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn

from ..errors import MissingDependencyError
from .errors import SensitivityError
from .evaluator import PointEvaluator, PointResult, PointTask, WorkerSpec

__all__ = ["Executor", "SerialExecutor", "LocalExecutor", "RayExecutor", "ScanJob", "resolve_executor"]


@dataclass
class ScanJob:
    """What a scan hands to an executor: the user's ``model`` and ``pruner`` (traced on it, used by the serial
    executor), the :class:`~.evaluator.WorkerSpec` for workers, and ``eval_fn`` itself."""

    model: nn.Module
    pruner: Any
    eval_fn: Callable
    spec: WorkerSpec
    forward_fn: Optional[Callable] = None


class Executor:
    """Base class: :meth:`run` yields a :class:`~.evaluator.PointResult` per task, in completion order, and stops
    every worker when the generator is closed (on an error or ``KeyboardInterrupt``)."""

    name = "executor"
    #: number of parallel workers (set by :meth:`run`)
    workers = 1

    def run(self, job: ScanJob, tasks: Sequence[PointTask]) -> Iterator[PointResult]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SerialExecutor(Executor):
    """Evaluate every point in this process, on the user's model (see the module docstring)."""

    name = "serial"

    def run(self, job: ScanJob, tasks: Sequence[PointTask]) -> Iterator[PointResult]:
        self.workers = 1
        ev = PointEvaluator(job.model, job.spec.example_inputs, job.eval_fn, job.pruner, job.spec.base_params,
                            job.spec.base_macs, seed=job.spec.seed, forward_fn=job.forward_fn)
        for task in tasks:
            yield ev.run(task)


# ----------------------------------------------------------------------------------------------------------------------
# errors across process boundaries
# ----------------------------------------------------------------------------------------------------------------------
def _pack_error(exc: BaseException) -> tuple:
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:
        blob = None
    return blob, type(exc).__name__, str(exc), "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _unpack_error(packed: tuple, where: str) -> BaseException:
    blob, tname, msg, tb = packed
    exc = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)
        except Exception:
            exc = None
    if isinstance(exc, (SensitivityError, KeyboardInterrupt)):
        return exc
    return SensitivityError(f"{where}: {tname}: {msg}\n--- traceback in the worker ---\n{tb}")


def _picklable(obj, what: str, dumps=pickle.dumps, fix: str = "") -> bytes:
    try:
        return dumps(obj)
    except Exception as exc:
        raise SensitivityError(
            f"{what} cannot be pickled ({type(exc).__name__}: {exc}), and the worker processes need a pickled copy. "
            f"Fix: {fix or 'define it as a plain function at module level (or in a notebook cell), not a lambda or a nested function'}; "
            "or run the scan in this process with executor='serial'") from None


# ----------------------------------------------------------------------------------------------------------------------
# local worker processes
# ----------------------------------------------------------------------------------------------------------------------
def _worker_main(model_path: str, spec_blob: bytes, task_q, result_q) -> None:
    """Body of a local worker process: load the model once, then evaluate tasks until a None arrives."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked child may inherit the parent's handler (Ray's...)
    except (ValueError, OSError):
        pass
    try:
        spec = pickle.loads(spec_blob)
        model = torch.load(model_path, weights_only=False)["model"]
        ev = PointEvaluator.from_spec(model, spec)
    except BaseException as exc:
        result_q.put(("init_error", None, _pack_error(exc)))
        return
    result_q.put(("ready", None, None))
    while True:
        task = task_q.get()
        if task is None:
            return
        try:
            result_q.put(("result", task.id, ev.run(task)))
        except BaseException as exc:
            result_q.put(("error", task.id, _pack_error(exc)))
            return


def _default_threads(workers: int, cpus: Optional[int] = None) -> int:
    return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))


class LocalExecutor(Executor):
    """``workers`` local processes (default: one per CPU, at most one per point), each with
    ``threads_per_worker`` torch threads (default: CPUs / workers). ``start_method``: ``"fork"`` (default on
    Linux for CPU models), ``"spawn"`` or ``"forkserver"``; see the module docstring."""

    name = "local"

    def __init__(self, workers: Optional[int] = None, threads_per_worker: Optional[int] = None,
                 start_method: Optional[str] = None):
        for name, v in (("workers", workers), ("threads_per_worker", threads_per_worker)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise SensitivityError(f"{name}={v!r} must be None or an int >= 1")
        if start_method is not None and start_method not in mp.get_all_start_methods():
            raise SensitivityError(f"start_method={start_method!r} is not available here; choose one of "
                                   f"{mp.get_all_start_methods()}")
        self.requested_workers = workers
        self.threads_per_worker = threads_per_worker
        self.start_method = start_method

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={self.requested_workers}, threads_per_worker={self.threads_per_worker})"

    def _start_method(self, model: nn.Module) -> str:
        if self.start_method:
            return self.start_method
        on_cpu = all(t.device.type == "cpu" for t in list(model.parameters()) + list(model.buffers()))
        if sys.platform.startswith("linux") and on_cpu and "fork" in mp.get_all_start_methods():
            return "fork"
        return "spawn"

    def run(self, job: ScanJob, tasks: Sequence[PointTask]) -> Iterator[PointResult]:
        tasks = list(tasks)
        if not tasks:
            return
        workers = min(self.requested_workers or (os.cpu_count() or 1), len(tasks))
        self.workers = workers
        threads = self.threads_per_worker or _default_threads(workers)
        eval_blob = _picklable(job.eval_fn, "eval_fn")
        spec = replace(job.spec, eval_fn=eval_blob, threads=threads)
        spec_blob = _picklable(spec, "the scan's settings (example inputs, forward_fn or another pruner option)",
                               fix="pass picklable example inputs and options")
        tmp = tempfile.mkdtemp(prefix="prune_explorer_scan_")
        procs: List[Any] = []
        task_q = result_q = None
        finished = False
        try:
            path = os.path.join(tmp, "model.pt")
            try:
                torch.save({"model": job.model}, path)
            except Exception as exc:
                raise SensitivityError(
                    f"the model cannot be pickled for the worker processes ({type(exc).__name__}: {exc}). Fix: remove "
                    "hooks or attributes holding lambdas / open files from the model, or use executor='serial'") from None
            method = self._start_method(job.model)
            ctx = mp.get_context(method)
            task_q, result_q = ctx.Queue(), ctx.Queue()
            for t in tasks:
                task_q.put(t)
            for _ in range(workers):
                task_q.put(None)
            for _ in range(workers):
                p = ctx.Process(target=_worker_main, args=(path, spec_blob, task_q, result_q), daemon=True)
                p.start()
                procs.append(p)
            pending = {t.id for t in tasks}
            while pending:
                try:
                    kind, tid, payload = result_q.get(timeout=0.25)
                except queue.Empty:
                    dead = [p for p in procs if p.exitcode not in (None, 0)]
                    if dead:
                        raise SensitivityError(
                            f"a worker process died (exit code {dead[0].exitcode}{': killed, out of memory?' if dead[0].exitcode == -9 else ''}) "
                            f"with {len(pending)} points left. Fix: fewer workers, or executor='serial' to see the error")
                    if all(p.exitcode is not None for p in procs):
                        raise SensitivityError(f"every worker process exited with {len(pending)} points left")
                    continue
                if kind == "result":
                    pending.discard(tid)
                    yield payload
                elif kind == "init_error":
                    hint = "" if method == "fork" else (
                        f" (workers started with {method!r} import everything afresh: a model class or eval_fn defined "
                        "in a notebook or in __main__ cannot be found there; define them in a module, or use "
                        "executor='serial')")
                    raise _unpack_error(payload, "a worker process could not load the model and trace it" + hint)
                elif kind == "error":
                    raise _unpack_error(payload, "a worker process failed")
            finished = True
        finally:
            if finished:  # the workers are reading their stop signal: let them exit by themselves
                for p in procs:
                    p.join(timeout=2)
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(timeout=5)
            for q in (task_q, result_q):
                if q is not None:
                    q.cancel_join_thread()
                    q.close()
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------------
# Ray
# ----------------------------------------------------------------------------------------------------------------------
def import_ray():
    """``import ray``, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "executor='ray' needs Ray, which is not installed. Fix: pip install prune_explorer[ray] "
            "(or pip install ray), or use executor='local'") from None
    return ray


class _RayWorker:
    """The body of a Ray actor: a :class:`PointEvaluator` built once from the model in the object store."""

    def __init__(self, model: nn.Module, spec: WorkerSpec):
        self.ev = PointEvaluator.from_spec(model, spec)

    def run(self, task: PointTask) -> PointResult:
        return self.ev.run(task)


class RayExecutor(Executor):
    """One Ray actor per worker (see the module docstring).

    Args:
        workers: number of actors (default: the cluster's CPUs / ``num_cpus_per_worker``, at most one per point).
        num_cpus_per_worker: CPUs each actor reserves (and its default torch thread count).
        threads_per_worker: torch threads in each actor (default ``num_cpus_per_worker``).
        address: a cluster to connect to when Ray is not initialised yet (else a local instance is started; it
            keeps running for later scans until ``ray.shutdown()``).
        init_kwargs: more ``ray.init`` arguments for that case.
    """

    name = "ray"

    def __init__(self, workers: Optional[int] = None, num_cpus_per_worker: float = 1,
                 threads_per_worker: Optional[int] = None, address: Optional[str] = None,
                 init_kwargs: Optional[Dict[str, Any]] = None):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise SensitivityError(f"workers={workers!r} must be None or an int >= 1")
        self.requested_workers = workers
        self.num_cpus_per_worker = num_cpus_per_worker
        self.threads_per_worker = threads_per_worker
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})

    def __repr__(self) -> str:
        return f"RayExecutor(workers={self.requested_workers}, address={self.address!r})"

    def run(self, job: ScanJob, tasks: Sequence[PointTask]) -> Iterator[PointResult]:
        tasks = list(tasks)
        if not tasks:
            return
        ray = import_ray()
        from ray import cloudpickle

        _picklable(job.eval_fn, "eval_fn", dumps=cloudpickle.dumps, fix="make eval_fn picklable by cloudpickle")
        if not ray.is_initialized():
            kwargs = dict(self.init_kwargs)
            if self.address:
                kwargs["address"] = self.address
            kwargs.setdefault("include_dashboard", False)
            kwargs.setdefault("log_to_driver", True)
            ray.init(**kwargs)
        cpus = float(ray.cluster_resources().get("CPU", 1))
        workers = self.requested_workers or max(1, int(cpus // self.num_cpus_per_worker))
        workers = min(workers, len(tasks))
        self.workers = workers
        threads = self.threads_per_worker or max(1, int(self.num_cpus_per_worker))
        spec = replace(job.spec, eval_fn=job.eval_fn, threads=threads)
        actor_cls = ray.remote(num_cpus=self.num_cpus_per_worker)(_RayWorker)
        model_ref = ray.put(job.model)
        actors = [actor_cls.remote(model_ref, spec) for _ in range(workers)]
        todo = list(reversed(tasks))
        in_flight: Dict[Any, Any] = {}

        def submit(actor):
            if todo:
                in_flight[actor.run.remote(todo.pop())] = actor

        try:
            for a in actors:  # two points queued per actor keeps it busy while a result travels back
                submit(a)
                submit(a)
            while in_flight:
                done, _ = ray.wait(list(in_flight), num_returns=1)
                ref = done[0]
                actor = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, SensitivityError):
                        raise cause from None
                    raise SensitivityError(f"a Ray worker failed: {exc}") from None
                except ray.exceptions.RayActorError as exc:
                    raise SensitivityError(f"a Ray worker died or could not start: {exc}") from None
                submit(actor)
                yield result
        finally:
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:
                    pass


def resolve_executor(executor, workers: Optional[int] = None) -> Executor:
    """An :class:`Executor` from ``"serial"``, ``"local"``, ``"ray"`` or an executor object."""
    if isinstance(executor, Executor):
        if workers is not None:
            raise SensitivityError("workers= is for executor='local' or 'ray'; set the workers of an executor object "
                                   "when you create it")
        return executor
    if executor == "serial":
        if workers not in (None, 1):
            raise SensitivityError(f"executor='serial' runs one point at a time; got workers={workers}. Fix: "
                                   "executor='local' for worker processes")
        return SerialExecutor()
    if executor == "local":
        return LocalExecutor(workers=workers)
    if executor == "ray":
        return RayExecutor(workers=workers)
    raise SensitivityError(f"executor must be 'local', 'ray', 'serial' or an Executor object, got {executor!r}")
