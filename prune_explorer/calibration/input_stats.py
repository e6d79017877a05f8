"""Per-channel statistics of the inputs of convolution and linear layers: mean, second moment, variance and (on
request) the full second-moment matrix, the data behind the calibrated criteria and the compensations.

For a layer reading ``n`` channels, over every observation of its input (each token of a sequence, each position
of a feature map, each sample): ``"x"`` sums ``x_j``, ``"x2"`` sums ``x_j^2`` and, for the layers asked for,
``"xx"`` sums ``x x^T`` (``[n, n]``); on request, for convolutions, ``"xt"`` sums what each kernel tap reads
(``[n, taps]`` over output positions, zero padding included: :mod:`.conv_taps`). Only these running sums are kept
(float64, on the CPU), never the activations; they follow the channels as the model is pruned (see
:mod:`.statistics`).
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn as nn

from .conv_taps import tap_sums
from .hooked import HookedCalibration
from .statistics import CALIBRATED_TYPES

__all__ = ["InputStatistics", "channel_dim"]

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def channel_dim(module: nn.Module, x: torch.Tensor) -> int:
    """Where the channels are in a layer's input: last for ``nn.Linear``, 1 for convolutions (0 if unbatched)."""
    if isinstance(module, nn.Linear):
        return x.dim() - 1
    if isinstance(module, nn.modules.conv._ConvNd):
        unbatched = x.dim() == len(module.kernel_size) + 1
        return 0 if unbatched else 1
    return 1 if x.dim() > 1 else 0


class InputStatistics(HookedCalibration):
    """A collector (see :func:`~.run.calibrate`) of the input statistics of every ``target_types`` layer.

    Args:
        target_types: the layers whose inputs are measured (default: convolutions and ``nn.Linear``).
        covariance: also gather ``sum x x^T`` (True: for every target layer; or an iterable of layers).
        taps: also gather, for convolutions, the input's sums per kernel tap (:func:`.conv_taps.tap_sums`).
    """

    def __init__(self, target_types: Optional[Iterable[type]] = None, covariance=False, taps: bool = False):
        self.target_types = tuple(target_types) if target_types else CALIBRATED_TYPES
        self.covariance = covariance if isinstance(covariance, bool) else {id(m) for m in covariance}
        self.taps = bool(taps)
        self._start_gathering()

    TARGET_HINT = "the layers whose inputs should be measured"

    def _wants_cov(self, module) -> bool:
        return self.covariance is True or (isinstance(self.covariance, set) and id(module) in self.covariance)

    def _forward_hook(self, module, inputs, output):
        if not inputs or not isinstance(inputs[0], torch.Tensor) or inputs[0].dim() == 0:
            return
        x = inputs[0].detach()
        d = channel_dim(module, x)
        n = x.shape[d]
        with torch.no_grad():
            rows = x.movedim(d, -1).reshape(-1, n).double()
            count = rows.shape[0]
            self.stats.add(module, "in", "x", rows.sum(0), count)
            self.stats.add(module, "in", "x2", rows.pow(2).sum(0), count)
            if self._wants_cov(module):
                self.stats.add(module, "in", "xx", rows.T @ rows, count)
            if self.taps and isinstance(module, nn.modules.conv._ConvNd) and not isinstance(module, _TRANSPOSED):
                sums, positions = tap_sums(module, x)
                self.stats.add(module, "in", "xt", sums, positions, rows=True)

    # ---- reading (current channel indices of the layer as it is now) --------------------------------------------
    def mean(self, layer) -> Optional[torch.Tensor]:
        """``E[x_j]`` per input channel of ``layer`` as it is now (float64), or None."""
        return self.stats.current(layer, "in", "x")

    def second_moment(self, layer) -> Optional[torch.Tensor]:
        """``E[x_j^2]`` per input channel (float64), or None."""
        return self.stats.current(layer, "in", "x2")

    def variance(self, layer) -> Optional[torch.Tensor]:
        """``Var[x_j]`` per input channel (float64, population variance), or None."""
        m, m2 = self.mean(layer), self.second_moment(layer)
        return None if m is None else (m2 - m * m).clamp_min(0)

    def tap_means(self, layer) -> Optional[torch.Tensor]:
        """A convolution's ``[n, taps]`` means of what each kernel tap reads over output positions (float64), or
        None when they were not gathered (``taps=False``, or not a convolution)."""
        return self.stats.current(layer, "in", "xt")

    def moment_matrix(self, layer) -> Optional[torch.Tensor]:
        """``E[x x^T]`` over the input channels (``[n, n]`` float64), or None when it was not gathered."""
        return self.stats.current(layer, "in", "xx")
