"""Pruning of ``nn.Linear`` (and its subclasses, e.g. attention's ``NonDynamicallyQuantizableLinear``).

``weight`` has shape ``(out_features, in_features)``, ``bias`` ``(out_features,)``. Output channels are
weight rows and bias entries; input channels are weight columns.

Example::

    >>> import torch, torch.nn as nn
    >>> fc = nn.Linear(4, 3)
    >>> prune_linear_in_channels(fc, [1])
    Linear(in_features=3, out_features=3, bias=True)
    >>> fc(torch.randn(2, 3)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import BasePruningFunc, Plan, keep_array, keep_indices

__all__ = ["LinearPruner", "prune_linear_out_channels", "prune_linear_in_channels"]


class LinearPruner(BasePruningFunc):
    """Prunes ``nn.Linear``: ``out_features`` (weight rows, bias) and ``in_features`` (weight columns).

    >>> fc = nn.Linear(4, 3, bias=False)
    >>> LinearPruner().prune_out_channels(fc, [0, 2]).weight.shape
    torch.Size([1, 4])
    """

    TARGET_MODULES = (nn.Linear,)

    def get_out_channels(self, layer: nn.Linear) -> int:
        return layer.out_features

    def get_in_channels(self, layer: nn.Linear) -> int:
        return layer.in_features

    def prune_out_channels(self, layer: nn.Linear, idxs: Sequence[int]) -> nn.Linear:
        """Remove output features ``idxs`` (rows of ``weight``, entries of ``bias``); returns ``layer``."""
        idxs = self.check(layer, idxs, "out")
        if not idxs:
            return layer
        keep = keep_array(layer.out_features, idxs)
        plan = Plan()
        plan.select(layer, "weight", (0, keep))
        plan.select(layer, "bias", (0, keep))
        plan.set(layer, "out_features", len(keep))
        plan.apply()
        return layer

    def prune_in_channels(self, layer: nn.Linear, idxs: Sequence[int]) -> nn.Linear:
        """Remove input features ``idxs`` (columns of ``weight``); returns ``layer``."""
        idxs = self.check(layer, idxs, "in")
        if not idxs:
            return layer
        keep = keep_array(layer.in_features, idxs)
        plan = Plan()
        plan.select(layer, "weight", (1, keep))
        plan.set(layer, "in_features", len(keep))
        plan.apply()
        return layer


LINEAR_PRUNER = LinearPruner()
prune_linear_out_channels = LINEAR_PRUNER.prune_out_channels
prune_linear_in_channels = LINEAR_PRUNER.prune_in_channels
