"""Importance criteria: ``imp(group)`` -> one score per root channel of the group (higher = more important).

    >>> import torch, torch.nn as nn, prune_explorer as pe
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    >>> group = pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 8, 8)).get_pruning_group(
    ...     model[0], pe.prune_conv_out_channels, idxs=[1, 5])
    >>> imp = pe.importance.MagnitudeImportance(p=2)            # Torch-Pruning's default criterion
    >>> imp(group).shape                                        # one score per channel of group.root_idxs
    torch.Size([2])

Every group-level criterion aggregates over *every* coupled member of the group (see :mod:`.members`), reduces
over members with ``group_reduction`` and normalises with ``normalizer`` (so groups can be ranked together).
A criterion may return ``None`` for a group it cannot score; the pruners skip such groups and say why in
``pruner.skipped``.
"""

from .base import GroupImportance, Importance, normalize
from .gradient import GroupHessianImportance, GroupTaylorImportance, HessianImportance, ImportanceError, TaylorImportance
from .magnitude import (
    BNScaleImportance,
    FPGMImportance,
    GroupMagnitudeImportance,
    GroupNormImportance,
    LAMPImportance,
    MagnitudeImportance,
    RandomImportance,
)
from .members import Part, channel_parts
from .activation import ActivationImportance
from ..calibration import ChannelStatistics
from .obdc import OBDCImportance
from .input_aware import FluctuationImportance, WandaImportance

__all__ = [
    "Importance", "GroupImportance", "normalize", "channel_parts", "Part", "ImportanceError",
    # weight-based
    "MagnitudeImportance", "GroupMagnitudeImportance", "GroupNormImportance", "BNScaleImportance", "LAMPImportance",
    "FPGMImportance", "RandomImportance",
    # gradient-based
    "TaylorImportance", "GroupTaylorImportance", "HessianImportance", "GroupHessianImportance",
    # data-driven (calibration statistics)
    "ActivationImportance", "OBDCImportance", "ChannelStatistics", "WandaImportance", "FluctuationImportance",
]
