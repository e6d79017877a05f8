"""The gathering half of a data-driven criterion or of a compensation: forward hooks that add to a
:class:`~.statistics.ChannelStatistics` while calibration data run through the model.

Any object with ``attach(model)``, ``detach()`` and a ``needs_backward`` flag is a *collector*: one
:func:`~.run.calibrate` pass feeds every collector given to it (an importance criterion, a compensation, the depth
groups' block influence) from the same batches.
"""

from __future__ import annotations

import contextlib

import torch.nn as nn

from ..errors import CalibrationError
from .statistics import ChannelStatistics

__all__ = ["HookedCalibration"]


class HookedCalibration:
    """Forward hooks on every target layer add to ``self.stats``; scoring reads the statistics, not the weights.

    A class derived from it calls :meth:`_start_gathering` in ``__init__`` and defines
    ``_forward_hook(module, inputs, output)``; :meth:`_hooks` says which layers get one (default: every
    ``target_types`` layer) and ``TARGET_HINT`` ends the error raised when none does. ``GATHERED`` and
    ``GATHER_FIX`` word the error raised when nothing was gathered yet. ``needs_backward``: the pass must run a
    backward pass too (gradient statistics).
    """

    TARGET_HINT = "the layers to score"
    GATHERED = "statistics"
    GATHER_FIX = ("run the model on calibration data inside `with imp.collect(model): ...`, or "
                  "imp.calibrate(model, pe.calibration.Calibration(batches))")
    needs_backward = False

    def _start_gathering(self) -> None:
        self.stats = ChannelStatistics()
        self._handles = []

    def _hooks(self, module: nn.Module) -> bool:
        return isinstance(module, self.target_types)

    def clear(self) -> None:
        """Forget the gathered statistics."""
        self.stats.clear()

    def attach(self, model: nn.Module) -> None:
        """Start gathering: hooks on every target layer of ``model`` (remove them with :meth:`detach`)."""
        self.detach()
        for m in model.modules():
            if self._hooks(m):
                self._handles.append(m.register_forward_hook(self._forward_hook))
        if not self._handles:
            raise CalibrationError(
                f"{type(self).__name__} found no layer of types {[t.__name__ for t in self.target_types]} in "
                f"{type(model).__name__}; pass target_types= with {self.TARGET_HINT}"
            )

    def detach(self) -> None:
        """Stop gathering (remove the hooks)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextlib.contextmanager
    def collect(self, model: nn.Module):
        """``with imp.collect(model): ...``: gather over every pass run inside (the forward passes; for a
        gradient-based criterion, their backward passes too), then remove the hooks."""
        self.attach(model)
        try:
            yield self
        finally:
            self.detach()

    def calibrate(self, model: nn.Module, calibration) -> "HookedCalibration":
        """One pass of ``calibration`` (a :class:`~.data.Calibration` or an iterable of example inputs) through
        ``model`` with this object's hooks attached (:func:`~.run.calibrate`)."""
        from .run import calibrate

        calibrate(model, calibration, [self])
        return self

    def __call__(self, group):
        if not len(self.stats):
            raise CalibrationError(f"{type(self).__name__} has no {self.GATHERED} yet. Fix: {self.GATHER_FIX} "
                                   "before scoring (pruner.step())")
        self.stats.anchor(getattr(group, "graph", None))
        return super().__call__(group)

    def parts_of(self, item) -> list:
        return [None]  # the scores come from the statistics, not from the member's weights
