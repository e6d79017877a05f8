"""Measured speed of the model as built and as it is now (plain Python, no widgets).

:meth:`Speed.measure_speed` times forward passes with :func:`prune_explorer.utils.benchmark.measure_latency` on
the model's own device (warm-up passes first, then the median of the timed ones). The original model is timed
once: when groups were already accepted, every pruning is undone (exactly), the model is timed, and the pruner
is rebuilt with the decisions replayed, as when an option changes. Nothing runs until asked (a button in the app):
timing takes a few seconds and would slow every click.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..measure.benchmark import measure_latency, model_device

__all__ = ["Speed", "LatencyPair"]


@dataclass(frozen=True)
class LatencyPair:
    """Median milliseconds per forward pass of the original and of the current model, on ``device``."""

    original_ms: float
    current_ms: float
    device: str
    repeat: int
    params: int  # parameters of the model when it was timed (a later change makes the figure stale)

    @property
    def speedup(self) -> float:
        return self.original_ms / self.current_ms if self.current_ms > 0 else float("nan")


class Speed:
    """Measured latency (see the module docstring; a part of :class:`~.controller.ExplorerController`,
    ``controller.speed``).

    Args:
        session: the :class:`~.session.Session`; events: the :class:`~.status.StatusLine` (progress);
        rebuild: called after the model was unpruned to time it: puts the pruning back (the controller rebuilds
            the pruner and replays the decisions).

    State: ``original`` (``(device, LatencyStats)`` of the model as built, timed once per device) and ``latency``
    (the last :class:`LatencyPair`).
    """

    def __init__(self, session, events, rebuild: Callable[[], None]):
        self.s = session
        self.events = events
        self._rebuild = rebuild
        self.original = None
        self.latency: Optional[LatencyPair] = None

    def _time(self, repeat: int, warmup: int, max_time_s: Optional[float]):
        return measure_latency(self.s.model, self.s.example_inputs, repeat=repeat, warmup=warmup,
                               run_fn=self.s.pruner_kwargs.get("forward_fn"), max_time_s=max_time_s)

    def measure_speed(self, repeat: int = 30, warmup: int = 5, max_time_s: Optional[float] = 5.0) -> LatencyPair:
        """Time the current model (and the original one, the first time) on the model's device.

        ``repeat`` timed passes after ``warmup`` untimed ones, the timed phase bounded by ``max_time_s`` seconds
        (at least 3 passes). Returns a :class:`LatencyPair`; also kept as :attr:`latency`.
        """
        device = str(model_device(self.s.model, self.s.example_inputs))
        if self.original is None or self.original[0] != device:
            self.events.report("timing the original model", 0, 2)
            if self.s.DG.history:  # time the model as built: undo everything, time it, rebuild and replay
                self.s.unprune()
                try:
                    original = self._time(repeat, warmup, max_time_s)
                finally:
                    self._rebuild()
            else:
                original = self._time(repeat, warmup, max_time_s)
            self.original = (device, original)
        self.events.report("timing the current model", 1, 2)
        current = self._time(repeat, warmup, max_time_s)
        self.events.report("timing the current model", 2, 2)
        original = self.original[1]
        self.latency = LatencyPair(float(original.median_ms), float(current.median_ms), device, int(current.repeat),
                                   int(self.s.params_now()))
        return self.latency
