"""Calibration data as a first-class input: one pass with hooks that accumulate per-channel statistics.

* :class:`Calibration`: the batches (any iterable or ``DataLoader``), how many, how each is called, the loss.
* :func:`calibrate`: one pass feeding every *collector* (anything with ``attach`` / ``detach``): the data-driven
  importance criteria, the compensations, the depth groups' block influence; a progress bar; CPU or GPU.
* :class:`InputStatistics`: mean, second moment, variance (and on request the second-moment matrix) of every
  convolution's and linear layer's input channels.
* :func:`reestimate_batchnorm`: reset BatchNorm running statistics from calibration batches after pruning (opt-in).
* :class:`ChannelStatistics`: the running sums behind them, anchored to the dependency graph's original channel
  indices so they stay valid while the model is pruned.
"""

from .statistics import CALIBRATED_TYPES, ChannelStatistics
from .hooked import HookedCalibration
from .data import Calibration, as_calibration
from .input_stats import InputStatistics, channel_dim
from .run import calibrate
from .batchnorm import reestimate_batchnorm

__all__ = ["Calibration", "as_calibration", "calibrate", "InputStatistics", "ChannelStatistics", "HookedCalibration",
           "CALIBRATED_TYPES", "channel_dim", "reestimate_batchnorm"]
