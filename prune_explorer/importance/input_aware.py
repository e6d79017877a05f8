"""Calibrated criteria that weigh the weights reading a channel by that channel's input statistics.

Both score the *consumers* of a channel: every convolution or linear member of the group on its input side (the
layers that read the channel), from the weights of the channel's column ``W[:, j]`` (all kernel taps of a
convolution) and the statistics of input channel ``j`` gathered on calibration data
(:class:`~prune_explorer.calibration.InputStatistics`: running sums, activations are never stored). Members on the
output side, norms and other layers have no score; the consumers' scores are reduced per root channel with
``group_reduction`` and normalised with ``normalizer``, as every group criterion (:class:`~.base.GroupImportance`).

* :class:`WandaImportance` (Wanda-sp, the structured form of Wanda: Sun et al., "A Simple and Effective Pruning
  Approach for Large Language Models", 2023; structured variant in An et al., "Fluctuation-based Adaptive Structured
  Pruning for Large Language Models", AAAI 2024): ``sum_i |W_ij| * ||x_j||``, with ``||x_j||`` the root mean square of
  channel ``j``'s input over calibration observations (tokens, positions): a channel matters as much as the output
  it writes through the weights that read it.
* :class:`FluctuationImportance` (FLAP's fluctuation metric, An et al. 2024): ``Var[x_j] * ||W[:, j]||^2``: how much
  the consumer's output moves when channel ``j`` is replaced by its mean (which bias compensation, see
  :mod:`prune_explorer.compensation`, then adds back).

Usage::

    imp = pe.importance.WandaImportance()
    imp.calibrate(model, pe.calibration.Calibration(batches, num_batches=8))   # or: with imp.collect(model): ...
    pe.pruner.MagnitudePruner(model, example_inputs, imp, pruning_ratio=0.5).step()
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

from ..calibration import InputStatistics
from .base import GroupImportance
from .members import Part, channel_parts

__all__ = ["WandaImportance", "FluctuationImportance"]


class _InputAware(InputStatistics, GroupImportance):
    """Scores a group's consumer members from their column weights and input statistics (module docstring)."""

    GATHERED = "input statistics"

    def __init__(self, group_reduction: Optional[str] = "mean", normalizer="mean",
                 target_types: Optional[Iterable[type]] = None):
        InputStatistics.__init__(self, target_types=target_types)
        GroupImportance.__init__(self, group_reduction=group_reduction, normalizer=normalizer, bias=False,
                                 target_types=self.target_types)

    def parts_of(self, item) -> list:
        if item.dep.space.side != "in":
            return []
        return [p for p in channel_parts(item.dep, item.idx_array) if not p.is_bias]

    def member_scores(self, item, parts: Sequence[Part]) -> Optional[torch.Tensor]:
        raise NotImplementedError


class WandaImportance(_InputAware):
    """Wanda-sp: ``sum_i |W_ij| * rms(x_j)`` per channel ``j``, over every layer reading it (module docstring).

    Args:
        group_reduction, normalizer: as for every group criterion (:class:`~.base.GroupImportance`).
        target_types: the layers whose inputs are measured and scored (default: convolutions and ``nn.Linear``).
    """

    def member_scores(self, item, parts: Sequence[Part]) -> Optional[torch.Tensor]:
        x2 = self.stats.member_mean(item, "in", "x2")
        if x2 is None:
            return None
        w = sum(p.select(p.param.detach()).abs().float().sum(1).cpu() for p in parts)
        return w * x2.clamp_min(0).sqrt()


class FluctuationImportance(_InputAware):
    """FLAP's fluctuation metric: ``Var[x_j] * ||W[:, j]||^2`` per channel ``j`` (module docstring).

    Args:
        group_reduction, normalizer: as for every group criterion (:class:`~.base.GroupImportance`).
        target_types: the layers whose inputs are measured and scored (default: convolutions and ``nn.Linear``).
    """

    def member_scores(self, item, parts: Sequence[Part]) -> Optional[torch.Tensor]:
        x = self.stats.member_mean(item, "in", "x")
        x2 = self.stats.member_mean(item, "in", "x2")
        if x is None or x2 is None:
            return None
        w2 = sum(p.select(p.param.detach()).float().pow(2).sum(1).cpu() for p in parts)
        return w2 * (x2.double() - x.double().pow(2)).clamp_min(0).float()
