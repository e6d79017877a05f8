"""Data-free criteria: weight magnitude, BN scale, LAMP, FPGM, random."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
import torch.nn as nn

from .base import GroupImportance, Importance
from .members import Part

__all__ = [
    "MagnitudeImportance",
    "GroupMagnitudeImportance",
    "GroupNormImportance",
    "BNScaleImportance",
    "LAMPImportance",
    "FPGMImportance",
    "RandomImportance",
]

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


class MagnitudeImportance(GroupImportance):
    """Group magnitude: for each root channel, ``sum |w|^p`` over every weight every coupled member owns for it
    (conv/linear rows or columns, norm scales, attention projections, recurrent gates, loose parameters), reduced
    over members (``group_reduction``) and normalised (``normalizer``), like Torch-Pruning's
    ``MagnitudeImportance(p=2, group_reduction="mean", normalizer="mean", bias=False)``.

    >>> import prune_explorer as pe
    >>> fc = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    >>> group = pe.DependencyGraph().build_dependency(fc, torch.randn(1, 4)).get_pruning_group(
    ...     fc[0], pe.prune_linear_out_channels, idxs=[0, 2])
    >>> MagnitudeImportance(p=1)(group).shape   # L1: one score per channel of group.root_idxs
    torch.Size([2])
    """

    #: reads the weights only through ``channel_parts`` (a step may decide it through held cuts, see :mod:`.held`)
    channel_parts_only = True

    def __init__(self, p: float = 2, group_reduction: Optional[str] = "mean", normalizer="mean", bias: bool = False,
                 target_types: Optional[Iterable[type]] = None):
        super().__init__(group_reduction=group_reduction, normalizer=normalizer, bias=bias, target_types=target_types)
        if not (isinstance(p, (int, float)) and p > 0):
            raise ValueError(f"p must be a positive number (1 for L1, 2 for L2), got {p!r}")
        self.p = p

    def power_p(self) -> Optional[float]:
        return self.p if type(self).member_scores is MagnitudeImportance.member_scores else None

    def member_scores(self, item, parts: Sequence[Part]) -> torch.Tensor:
        total = None
        for part in parts:
            power_sum = getattr(part.select, "power_sum", None)
            if power_sum is not None:  # plain rows: reduce in place, no gather
                s = power_sum(part.param.detach(), self.p)
            else:
                rows = part.select(part.param.detach()).float()
                s = rows.abs().pow(self.p).sum(1)
            total = s if total is None else total + s
        return total


GroupMagnitudeImportance = MagnitudeImportance
GroupNormImportance = MagnitudeImportance


class BNScaleImportance(MagnitudeImportance):
    """Network slimming: ``|gamma|`` of the group's normalisation layers (BatchNorm, LayerNorm, GroupNorm).

    A group without a normalisation layer has no score: with ``fallback=None`` (the default, as in Torch-Pruning)
    the criterion returns ``None`` and the pruners skip that group, recording the reason in ``pruner.skipped``; pass
    ``fallback=MagnitudeImportance()`` (or any criterion) to score such groups with it instead.
    """

    #: reads the weights only through ``channel_parts`` (a step may decide it through held cuts, see :mod:`.held`)
    channel_parts_only = True

    def __init__(self, group_reduction: Optional[str] = "mean", normalizer="mean", fallback: Optional[Importance] = None):
        super().__init__(p=1, group_reduction=group_reduction, normalizer=normalizer, bias=False, target_types=NORM_TYPES)
        self.fallback = fallback

    def __call__(self, group):
        out = super().__call__(group)
        if out is None and self.fallback is not None:
            return self.fallback(group)
        return out


class LAMPImportance(MagnitudeImportance):
    """Layer-adaptive magnitude pruning (LAMP): magnitude scores, each divided by the sum of the scores at least as
    large in the same group, so that global ranking compares layers fairly."""

    #: reads the weights only through ``channel_parts`` (a step may decide it through held cuts, see :mod:`.held`)
    channel_parts_only = True

    def __init__(self, p: float = 2, group_reduction: Optional[str] = "mean", normalizer="lamp", bias: bool = False,
                 target_types: Optional[Iterable[type]] = None):
        super().__init__(p=p, group_reduction=group_reduction, normalizer=normalizer, bias=bias, target_types=target_types)


def _per_position_features(feats: torch.Tensor, pos: torch.Tensor):
    """Rows that belong to the same root position concatenated: ``(unique positions, [u, c*k] features)``.

    Positions with fewer rows than the most frequent one are zero-padded."""
    order = torch.argsort(pos, stable=True)
    pos_s, feats_s = pos[order], feats[order]
    upos, counts = torch.unique_consecutive(pos_s, return_counts=True)
    c = int(counts.max())
    if bool((counts == c).all()):
        return upos, feats_s.reshape(upos.numel(), -1)
    out = feats.new_zeros(upos.numel(), c, feats.shape[1])
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(pos_s.numel()) - torch.repeat_interleave(starts, counts)
    row = torch.repeat_interleave(torch.arange(upos.numel()), counts)
    out[row, slot] = feats_s
    return upos, out.reshape(upos.numel(), -1)


class FPGMImportance(GroupImportance):
    """Filter pruning via geometric median: a channel whose weights are close to the others' (small summed
    ``p``-distance to every other channel of the same member) is redundant. Per member, the distance sums are the
    scores; they are reduced over members and normalised like the magnitude scores."""

    #: reads the weights only through ``channel_parts`` (a step may decide it through held cuts, see :mod:`.held`)
    channel_parts_only = True

    def __init__(self, p: float = 2, group_reduction: Optional[str] = "mean", normalizer="mean", bias: bool = False,
                 target_types: Optional[Iterable[type]] = None):
        super().__init__(group_reduction=group_reduction, normalizer=normalizer, bias=bias, target_types=target_types)
        self.p = p

    def member_position_scores(self, item, parts: Sequence[Part], pos: torch.Tensor):
        feats = torch.cat([part.select(part.param.detach()).float() for part in parts], dim=1)
        upos, f = _per_position_features(feats, pos)
        if upos.numel() < 2:
            return upos, torch.zeros(upos.numel())
        dist = torch.cdist(f.unsqueeze(0), f.unsqueeze(0), p=self.p).squeeze(0)
        return upos, dist.sum(1)


class RandomImportance(Importance):
    """Uniform random scores (a baseline); uses torch's global generator, so ``torch.manual_seed`` fixes them."""

    #: reads the weights only through ``channel_parts`` (a step may decide it through held cuts, see :mod:`.held`)
    channel_parts_only = True

    def __call__(self, group) -> torch.Tensor:
        return torch.rand(len(group.root_idxs))
