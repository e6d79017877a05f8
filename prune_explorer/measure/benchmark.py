"""Inference speed and memory of a model, on whatever device it lives on.

``pe.utils.benchmark`` (Torch-Pruning's module name) — one function per figure:

* :func:`measure_latency` -> :class:`LatencyStats`, milliseconds per forward pass. It unpacks as Torch-Pruning's
  ``(latency_ms, std_ms)`` pair, where the first value is the **median** over the timed repeats (robust to a busy
  machine); ``.mean_ms``, ``.min_ms``, ``.samples_ms`` hold the rest.
* :func:`measure_fps` -> forward passes per second (``1000 / median_ms``).
* :func:`measure_throughput` -> samples per second (batch size ``* 1000 / median_ms``).
* :func:`measure_memory` -> peak bytes allocated during one forward pass.

How it measures: the model runs under ``torch.no_grad()`` in eval mode (its train/eval flags are restored
afterwards), ``warmup`` untimed passes first, then ``repeat`` timed ones. On a CUDA device each pass is timed with
CUDA events and a synchronize (GPU time of the queued work); elsewhere with ``time.perf_counter`` around the call.
``max_time_s`` bounds the timed phase (at least 3 passes are timed). Memory on CUDA is
``torch.cuda.max_memory_allocated`` after resetting the peak (so it includes the parameters); on other devices it is
the peak of the bytes held by live tensors, tracked at the operator level (parameters, buffers and inputs included,
as on CUDA).

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU())
>>> stats = measure_latency(model, torch.randn(8, 64), repeat=5, warmup=1)
>>> median_ms, std_ms = stats
>>> median_ms > 0 and stats.repeat == 5 and stats.device == "cpu"
True
>>> measure_memory(torch.nn.Linear(1000, 1000, bias=False), torch.randn(10, 1000))  # weight + input + output
4080000
"""

from __future__ import annotations

import math
import statistics
import time
import weakref
from typing import Any, Callable, List, Optional

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..inputs import call_model, kept_state, tensors_in

__all__ = ["LatencyStats", "measure_latency", "measure_fps", "measure_throughput", "measure_memory", "model_device"]


class LatencyStats(tuple):
    """``(median_ms, std_ms)`` of one forward pass, plus the details as attributes (all in milliseconds)."""

    def __new__(cls, samples_ms: List[float], device: str):
        median = statistics.median(samples_ms)
        std = statistics.stdev(samples_ms) if len(samples_ms) > 1 else 0.0
        self = super().__new__(cls, (median, std))
        self.samples_ms = list(samples_ms)
        self.device = device
        return self

    median_ms = property(lambda self: self[0], doc="median over the timed passes")
    std_ms = property(lambda self: self[1], doc="sample standard deviation")
    mean_ms = property(lambda self: statistics.fmean(self.samples_ms), doc="mean over the timed passes")
    min_ms = property(lambda self: min(self.samples_ms), doc="fastest pass")
    max_ms = property(lambda self: max(self.samples_ms), doc="slowest pass")
    repeat = property(lambda self: len(self.samples_ms), doc="number of timed passes")

    def __repr__(self) -> str:
        return (f"LatencyStats(median={self[0]:.3f} ms, std={self[1]:.3f} ms, min={self.min_ms:.3f} ms, "
                f"repeat={self.repeat}, device={self.device!r})")


def model_device(model: nn.Module, example_inputs: Any = None) -> torch.device:
    """The device the model runs on: its first parameter's or buffer's, else the first input tensor's, else CPU."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    for t in tensors_in(example_inputs):
        return t.device
    return torch.device("cpu")


def _check_counts(repeat: int, warmup: int) -> None:
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat={repeat!r} must be an int >= 1 (timed forward passes)")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup={warmup!r} must be an int >= 0 (untimed passes before timing)")


@torch.no_grad()
def measure_latency(model: nn.Module, example_inputs: Any, repeat: int = 300, warmup: int = 50,
                    run_fn: Optional[Callable[[nn.Module, Any], Any]] = None,
                    max_time_s: Optional[float] = None) -> LatencyStats:
    """Time ``repeat`` forward passes after ``warmup`` untimed ones; see the module docstring.

    Args:
        example_inputs: passed as ``model(x)`` (tensor), ``model(*x)`` (tuple/list) or ``model(**x)`` (dict).
        run_fn: ``run_fn(model, example_inputs)`` runs the model instead.
        max_time_s: stop timing once this many seconds were spent in timed passes (at least 3 are made).

    Returns:
        :class:`LatencyStats`: unpacks as ``(median_ms, std_ms)``.
    """
    _check_counts(repeat, warmup)
    device = model_device(model, example_inputs)
    cuda = device.type == "cuda"
    samples: List[float] = []
    with kept_state(model, eval_mode=True):
        for _ in range(warmup):
            call_model(model, example_inputs, run_fn)
        if cuda:
            torch.cuda.synchronize(device)
        spent = 0.0
        for _ in range(repeat):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                call_model(model, example_inputs, run_fn)
                end.record()
                torch.cuda.synchronize(device)
                ms = start.elapsed_time(end)
            else:
                t0 = time.perf_counter()
                call_model(model, example_inputs, run_fn)
                ms = (time.perf_counter() - t0) * 1000.0
            samples.append(ms)
            spent += ms / 1000.0
            if max_time_s is not None and spent >= max_time_s and len(samples) >= 3:
                break
    return LatencyStats(samples, str(device))


def measure_fps(model: nn.Module, example_inputs: Any, repeat: int = 300, warmup: int = 50,
                run_fn: Optional[Callable] = None, max_time_s: Optional[float] = None) -> float:
    """Forward passes per second: ``1000 / median latency in ms`` (:func:`measure_latency`)."""
    median_ms = measure_latency(model, example_inputs, repeat, warmup, run_fn, max_time_s)[0]
    return 1000.0 / median_ms if median_ms > 0 else math.inf


def batch_size(example_inputs: Any) -> int:
    """The length of the first tensor's first dim in ``example_inputs`` (1 for a 0-d tensor)."""
    tensors = tensors_in(example_inputs)
    if not tensors:
        raise ValueError("example_inputs holds no tensor, so it has no batch size")
    return int(tensors[0].shape[0]) if tensors[0].dim() else 1


def measure_throughput(model: nn.Module, example_inputs: Any, repeat: int = 300, warmup: int = 50,
                       run_fn: Optional[Callable] = None, max_time_s: Optional[float] = None) -> float:
    """Samples per second: batch size (first dim of the first input tensor) ``* 1000 / median latency in ms``."""
    return batch_size(example_inputs) * measure_fps(model, example_inputs, repeat, warmup, run_fn, max_time_s)


class _LiveBytes(TorchDispatchMode):
    """Peak of the bytes held by live tensor storages while the mode is active (storages seen as they are made)."""

    def __init__(self, already_alive):
        super().__init__()
        self.refs = {}
        self.live = self.peak = 0
        self._finalizers = []
        for t in already_alive:  # alive throughout: counted once, never released
            self._track(t, finalize=False)

    def close(self) -> None:
        """Drop the finalizers still attached to tensors that outlive the measurement."""
        for f in self._finalizers:
            f.detach()
        self._finalizers = []

    def _track(self, t: torch.Tensor, finalize: bool = True) -> None:
        try:
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError):
            return
        if not nbytes:
            return
        if key in self.refs:
            self.refs[key][0] += 1
        else:
            self.refs[key] = [1, nbytes]
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        if finalize:
            self._finalizers.append(weakref.finalize(t, self._release, key))

    def _release(self, key) -> None:
        entry = self.refs.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tensors_in(out):
            self._track(t)
        return out


@torch.no_grad()
def measure_memory(model: nn.Module, example_inputs: Any, device=None, run_fn: Optional[Callable] = None) -> int:
    """Peak bytes allocated during one forward pass (parameters, buffers and inputs included); see the module
    docstring for how it is measured on CUDA and elsewhere. ``device``: the CUDA device to read (default: the
    model's)."""
    dev = torch.device(device) if device is not None else model_device(model, example_inputs)
    with kept_state(model, eval_mode=True):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            call_model(model, example_inputs, run_fn)
            torch.cuda.synchronize(dev)
            return int(torch.cuda.max_memory_allocated(dev))
        alive = list(model.parameters()) + list(model.buffers()) + tensors_in(example_inputs)
        mode = _LiveBytes(alive)
        try:
            with mode:
                call_model(model, example_inputs, run_fn)
        finally:
            mode.close()
        return int(mode.peak)
