"""The pruners of Torch-Pruning 1.6 built on :class:`BasePruner`: magnitude, BN-scale (network slimming) and
group-norm (DepGraph's sparse training) pruning."""

from __future__ import annotations

from typing import Optional

import torch.nn as nn

from . import regularizers
from .base_pruner import BasePruner

__all__ = ["MagnitudePruner", "BNScalePruner", "GroupNormPruner"]


class MagnitudePruner(BasePruner):
    """:class:`BasePruner` under Torch-Pruning's name for magnitude pruning (pass ``MagnitudeImportance``)."""


class BNScalePruner(BasePruner):
    """Network slimming: train with an L1 penalty on BatchNorm scales, then prune by ``BNScaleImportance``.

    ``regularize(model, reg=None)`` adds ``reg * sign(gamma)`` to every non-ignored BatchNorm's ``weight.grad``
    (``group_lasso=True``: a group lasso over the norm-layer scales of each group instead).
    """

    def __init__(self, model, example_inputs, importance, reg: float = 1e-5, group_lasso: bool = False, **kwargs):
        super().__init__(model, example_inputs, importance, **kwargs)
        self.reg = reg
        self.group_lasso = group_lasso

    def regularize(self, model: Optional[nn.Module] = None, reg: Optional[float] = None, bias: bool = False) -> None:
        reg = self.reg if reg is None else reg
        if self.group_lasso:
            regularizers.group_lasso(self._regularizer_groups(), reg, bias=bias, types=regularizers.NORM_TYPES)
            return
        ignored = {id(m) for m in self.ignored_layers}
        model = self.model if model is None else model
        regularizers.l1_norm_scale((m for m in model.modules() if id(m) not in ignored), reg)


class GroupNormPruner(BasePruner):
    """DepGraph's sparse training: a group-level L2 penalty, strongest on each group's weakest channels
    (``regularize``, see :func:`regularizers.growing_group_norm`), then pruning by group magnitude."""

    def __init__(self, model, example_inputs, importance, reg: float = 1e-4, alpha: float = 4, **kwargs):
        super().__init__(model, example_inputs, importance, **kwargs)
        self.reg = reg
        self.alpha = alpha

    def regularize(self, model: Optional[nn.Module] = None, alpha: Optional[float] = None, bias: bool = False,
                   reg: Optional[float] = None) -> None:
        regularizers.growing_group_norm(self._regularizer_groups(), self.reg if reg is None else reg,
                                        self.alpha if alpha is None else alpha, bias=bias)
