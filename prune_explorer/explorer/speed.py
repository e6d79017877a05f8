"""Measured speed of the model as built and as it is now (plain Python, no widgets).

:meth:`Speed.measure_speed` times forward passes with :func:`prune_explorer.utils.benchmark.measure_latency` on
the model's own device (warm-up passes first, then the median of the timed ones). The original model is timed
once: when groups were already accepted, every pruning is undone (exactly), the model is timed, and the pruner
is rebuilt with the decisions replayed, as when an option changes. Nothing runs until asked (a button in the app):
timing takes a few seconds and would slow every click.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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
    """Mixin of :class:`~.controller.ExplorerController`: measured latency (see the module docstring).

    State: ``_latency`` (``{"original": (device, LatencyStats), "pair": LatencyPair}``).
    """

    def _time(self, repeat: int, warmup: int, max_time_s: Optional[float]):
        return measure_latency(self.model, self.example_inputs, repeat=repeat, warmup=warmup,
                               run_fn=self.pruner_kwargs.get("forward_fn"), max_time_s=max_time_s)

    def measure_speed(self, repeat: int = 30, warmup: int = 5, max_time_s: Optional[float] = 5.0) -> LatencyPair:
        """Time the current model (and the original one, the first time) on the model's device.

        ``repeat`` timed passes after ``warmup`` untimed ones, the timed phase bounded by ``max_time_s`` seconds
        (at least 3 passes). Returns a :class:`LatencyPair`; also kept as :attr:`latency`.
        """
        device = str(model_device(self.model, self.example_inputs))
        cached = self._latency.get("original")
        if cached is None or cached[0] != device:
            if self.DG.history:  # time the model as built: undo everything, time it, rebuild and replay
                self._report("timing the original model", 0, 2)
                while self.DG.history:
                    self.DG.undo()
                try:
                    original = self._time(repeat, warmup, max_time_s)
                finally:
                    self._rebuild()
                    self._notices = []  # the rebuild is an implementation detail here, not news
            else:
                self._report("timing the original model", 0, 2)
                original = self._time(repeat, warmup, max_time_s)
            self._latency["original"] = (device, original)
        self._report("timing the current model", 1, 2)
        current = self._time(repeat, warmup, max_time_s)
        self._report("timing the current model", 2, 2)
        original = self._latency["original"][1]
        pair = LatencyPair(float(original.median_ms), float(current.median_ms), device, int(current.repeat),
                           int(self._params_now()))
        self._latency["pair"] = pair
        self._changed("speed")
        return pair

    @property
    def latency(self) -> Optional[LatencyPair]:
        """The last :meth:`measure_speed` result (None before the first)."""
        return self._latency.get("pair")
