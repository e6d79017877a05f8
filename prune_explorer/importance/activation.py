"""Activation-based importance: a channel matters as much as the activations it carries on example data.

A channel's score is the mean of ``|a|^p`` over every position of the activations that flow through it, measured at
the inputs of the convolution and linear layers that read it (``p=1``: mean absolute activation, as Torch-Pruning's
``ActivationImportance``; ``p=2``: mean energy). A channel that is always (near) zero on the data scores (near)
zero, whatever its weights. Gather the statistics on calibration data first::

    imp = pe.importance.ActivationImportance()
    with imp.collect(model):                       # or imp.compute_importance(model), Torch-Pruning's name
        for x, _ in calibration_batches:
            model(x)                               # no backward pass needed
    pruner = pe.pruner.MagnitudePruner(model, example_inputs, imp, pruning_ratio=0.5)
    pruner.step()

The statistics accumulate over every batch seen inside ``collect`` (until :meth:`ActivationImportance.clear`) and
follow the channels as they are pruned (:mod:`.calibration`).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
import torch.nn as nn

from .base import GroupImportance
from ..calibration import CALIBRATED_TYPES, HookedCalibration, channel_dim
from .members import Part

__all__ = ["ActivationImportance", "channel_dim"]


class ActivationImportance(HookedCalibration, GroupImportance):
    """Scores channels by their activations on calibration data (see the module docstring).

    Args:
        p: the power of ``|a|`` averaged (1 or 2 are the usual choices).
        group_reduction, normalizer: as for every group criterion (:class:`GroupImportance`).
        target_types: the layers whose *inputs* are measured (default: convolutions and ``nn.Linear``).
    """

    def __init__(self, p: float = 1, group_reduction: Optional[str] = "mean", normalizer="mean",
                 target_types: Optional[Iterable[type]] = None, bias: bool = False):
        super().__init__(group_reduction=group_reduction, normalizer=normalizer, bias=bias,
                         target_types=target_types or CALIBRATED_TYPES)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or p <= 0:
            raise ValueError(f"p={p!r} must be a positive number (the power of |activation| averaged)")
        self.p = p
        self._start_gathering()

    # ---- gathering (attach / detach / collect / clear: :class:`~.calibration.HookedCalibration`) -------------------
    TARGET_HINT = "the layers whose inputs should be measured"

    def _forward_hook(self, module, inputs, output):
        if not inputs or not isinstance(inputs[0], torch.Tensor) or inputs[0].dim() == 0:
            return
        x = inputs[0].detach()
        d = channel_dim(module, x)
        with torch.no_grad():
            v = x.abs().float()
            if self.p != 1:
                v = v.pow(self.p)
            sums = v.movedim(d, -1).reshape(-1, x.shape[d]).sum(0)
        self.stats.add(module, "in", "act", sums, count=x.numel() // max(x.shape[d], 1))

    def compute_importance(self, model: nn.Module):
        """Torch-Pruning's name for :meth:`collect`."""
        return self.collect(model)

    # ---- scoring (:class:`~.calibration.HookedCalibration` checks and anchors the statistics) --------------------
    GATHERED = "activations"

    def member_scores(self, item, parts: Sequence[Part]) -> Optional[torch.Tensor]:
        return self.stats.member_mean(item, "in", "act")
