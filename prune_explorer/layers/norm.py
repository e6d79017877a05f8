"""Pruning of normalisation layers and PReLU: one channel space shared by input and output.

For every layer here input and output channels are the same space (``in_out_coupled`` is True), so
``prune_*_out_channels`` and ``prune_*_in_channels`` do the same thing: call one of them.

=====================================  ===========================================================================
layer                                  what is pruned (``C`` channels)
=====================================  ===========================================================================
BatchNorm1d/2d/3d, SyncBatchNorm       ``weight``, ``bias`` (C,), ``running_mean``, ``running_var`` (C,); ``num_features``
InstanceNorm1d/2d/3d                   the same, where present (``affine``, ``track_running_stats``); ``num_features``
GroupNorm                              ``weight``, ``bias`` (C,); ``num_channels``; C must stay a multiple of ``num_groups``
LayerNorm, RMSNorm                     the last normalised dim: ``weight``/``bias`` (..., C); ``normalized_shape[-1]``
PReLU                                  ``weight`` (C,) and ``num_parameters``; with one shared parameter: nothing
=====================================  ===========================================================================

GroupNorm keeps ``num_groups``: removing channels unevenly moves channels between groups (group ``g`` is
always channels ``g*C/G .. (g+1)*C/G - 1`` of the pruned layer); only the divisibility is checked.

Example::

    >>> import torch, torch.nn as nn
    >>> bn = nn.BatchNorm2d(4)
    >>> prune_batchnorm_out_channels(bn, [0, 3]).num_features
    2
    >>> bn.running_mean.shape
    torch.Size([2])
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..errors import PruningError
from .base import BasePruningFunc, normalize_indices
from .edits import CutSpec, keep_array
from .family import LayerFamily, register_family
from .slicing import affine_parts

__all__ = [
    "BATCHNORM_FAMILY",
    "INSTANCENORM_FAMILY",
    "GROUPNORM_FAMILY",
    "LAYERNORM_FAMILY",
    "PRELU_FAMILY",
    "BATCHNORM_PRUNER",
    "INSTANCENORM_PRUNER",
    "GROUPNORM_PRUNER",
    "LAYERNORM_PRUNER",
    "PRELU_PRUNER",
    "BatchnormPruner",
    "InstanceNormPruner",
    "GroupNormPruner",
    "LayernormPruner",
    "PReLUPruner",
    "prune_batchnorm_out_channels",
    "prune_batchnorm_in_channels",
    "prune_instancenorm_out_channels",
    "prune_instancenorm_in_channels",
    "prune_groupnorm_out_channels",
    "prune_groupnorm_in_channels",
    "prune_layernorm_out_channels",
    "prune_layernorm_in_channels",
    "prune_prelu_out_channels",
    "prune_prelu_in_channels",
]


class _CoupledPruner(BasePruningFunc):
    """A layer whose input and output channels are one space; subclasses implement ``remove`` (the side does not matter)."""

    def in_out_coupled(self, layer: Any) -> bool:
        return True

    def get_in_channels(self, layer: Any) -> int | None:
        return self.get_out_channels(layer)


class _NumFeaturesPruner(_CoupledPruner):
    CHANNEL_ATTRS = ("num_features", "num_features")
    SLICED_TENSORS = dict.fromkeys(("out", "in"), {"weight": 0, "bias": 0, "running_mean": 0, "running_var": 0})


class BatchnormPruner(_NumFeaturesPruner):
    """Prunes BatchNorm1d/2d/3d and SyncBatchNorm: ``num_features`` channels (affine and running stats).

    >>> bn = nn.BatchNorm1d(5)
    >>> BatchnormPruner().prune_out_channels(bn, [1, 2]).num_features
    3
    """

    TARGET_MODULES = (_BatchNorm,)
    COMPOSABLE_CUTS = True


class InstanceNormPruner(_NumFeaturesPruner):
    """Prunes InstanceNorm1d/2d/3d: ``num_features``, plus weight/bias and running stats when present.

    >>> inorm = nn.InstanceNorm2d(4)          # no affine, no running stats: only num_features changes
    >>> InstanceNormPruner().prune_out_channels(inorm, [3]).num_features
    3
    """

    TARGET_MODULES = (_InstanceNorm,)
    COMPOSABLE_CUTS = True


class GroupNormPruner(_CoupledPruner):
    """Prunes ``nn.GroupNorm``: ``num_channels`` (weight, bias), keeping ``num_groups``.

    The number of channels removed must be a multiple of ``num_groups`` (``channel_multiple``).

    >>> gn = nn.GroupNorm(2, 8)
    >>> GroupNormPruner().prune_out_channels(gn, [0, 7]).num_channels
    6
    """

    TARGET_MODULES = (nn.GroupNorm,)
    CHANNEL_ATTRS = ("num_channels", "num_channels")
    SLICED_TENSORS = dict.fromkeys(("out", "in"), {"weight": 0, "bias": 0})
    CHANNEL_BLOCKS_ATTR = "num_groups"
    COMPOSABLE_CUTS = True


_LAYERNORM_TYPES: tuple[type, ...] = (nn.LayerNorm,) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


class LayernormPruner(_CoupledPruner):
    """Prunes ``nn.LayerNorm`` (and ``nn.RMSNorm``) along the last normalised dim (the feature dim).

    ``weight`` / ``bias`` (shape ``normalized_shape``) lose entries along their last dim, when present;
    ``normalized_shape`` becomes ``(*normalized_shape[:-1], C - len(idxs))``.

    >>> ln = nn.LayerNorm((3, 6))
    >>> LayernormPruner().prune_out_channels(ln, [0, 1]).normalized_shape
    (3, 4)
    """

    TARGET_MODULES = _LAYERNORM_TYPES
    COMPOSABLE_CUTS = True

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.normalized_shape[-1]

    def cut_spec(self, layer: nn.Module, idxs: list[int], side: str) -> CutSpec:
        shape = tuple(layer.normalized_shape)
        keep = keep_array(shape[-1], idxs)
        spec = CutSpec().select(layer, "weight", (-1, keep)).select(layer, "bias", (-1, keep))
        return spec.set(layer, "normalized_shape", (*shape[:-1], len(keep)))


class PReLUPruner(_CoupledPruner):
    """Prunes ``nn.PReLU``: with ``num_parameters > 1``, ``weight`` (C,) and ``num_parameters``.

    A PReLU with one shared parameter has no channel side (``get_out_channels`` is ``None``) and pruning it
    is a no-op (the indices are still checked for type and duplicates).

    >>> act = nn.PReLU(4)
    >>> PReLUPruner().prune_out_channels(act, [2]).num_parameters
    3
    """

    TARGET_MODULES = (nn.PReLU,)
    COMPOSABLE_CUTS = True

    def get_out_channels(self, layer: nn.PReLU) -> int | None:
        return None if layer.num_parameters == 1 else layer.num_parameters

    def check(self, layer: nn.PReLU, idxs: Any, side: Any) -> list[int]:
        if layer.num_parameters == 1:
            try:
                return normalize_indices(idxs)
            except PruningError as e:
                raise self.error(layer, None, None, e.problem, e.fix) from None
        return super().check(layer, idxs, side)

    def cut_spec(self, layer: nn.PReLU, idxs: list[int], side: str) -> CutSpec:
        spec = CutSpec()
        if layer.num_parameters > 1:  # one shared slope: nothing to remove
            keep = keep_array(layer.num_parameters, idxs)
            spec.select(layer, "weight", (0, keep)).set(layer, "num_parameters", len(keep))
        return spec


BATCHNORM_PRUNER = BatchnormPruner()
INSTANCENORM_PRUNER = InstanceNormPruner()
GROUPNORM_PRUNER = GroupNormPruner()
LAYERNORM_PRUNER = LayernormPruner()
PRELU_PRUNER = PReLUPruner()

prune_batchnorm_out_channels, prune_batchnorm_in_channels = BATCHNORM_PRUNER.pruning_fns()
prune_instancenorm_out_channels, prune_instancenorm_in_channels = INSTANCENORM_PRUNER.pruning_fns()
prune_groupnorm_out_channels, prune_groupnorm_in_channels = GROUPNORM_PRUNER.pruning_fns()
prune_layernorm_out_channels, prune_layernorm_in_channels = LAYERNORM_PRUNER.pruning_fns()
prune_prelu_out_channels, prune_prelu_in_channels = PRELU_PRUNER.pruning_fns()


# ---- tracing and importance -------------------------------------------------------------------------------------
def channel_norm_map(ctx, module: nn.Module, name: str, call, x) -> None:
    """BatchNorm / InstanceNorm / GroupNorm / PReLU: one space, channels on dim 1 (dim 0 when unbatched)."""
    out = call.outputs[0]
    ids = ctx.channels(module, name, "out", passthrough=True)
    n = ids.numel()
    cdim = 1 if x.ndim >= 2 else 0
    if x.ndim >= 2 and x.shape[1] != n and x.shape[0] == n:
        cdim = 0
    ctx.consume(x, cdim, ids, name)
    if isinstance(module, nn.GroupNorm) and module.num_groups > 1:
        ctx.tie_groups(ids, module.num_groups)  # remove the same offsets from every group
    ctx.label(out, cdim, ids, ctx.carried(x, out, cdim, set(range(x.ndim)) - {cdim}))


def layer_norm_map(ctx, module: nn.Module, name: str, call, x) -> None:
    """LayerNorm / RMSNorm: channels on the last dim; the other normalised dims must not hold channels."""
    out = call.outputs[0]
    shape = tuple(module.normalized_shape)
    ids = ctx.channels(module, name, "out", passthrough=True)
    ctx.consume(x, -1, ids, name)
    nd = len(shape)
    ctx.fix_dims(x, set(range(x.ndim - nd, x.ndim - 1)),
                 f"{name} normalises over a dim that holds channels (normalized_shape={shape})")
    ctx.label(out, out.ndim - 1, ids, ctx.carried(x, out, x.ndim - 1, set(range(x.ndim - nd))))


def prelu_map(ctx, module: nn.PReLU, name: str, call, x) -> None:
    """One shared slope acts element-wise; one slope per channel is a channel-wise layer."""
    if module.num_parameters == 1:
        ctx.elementwise(call, [x])
    else:
        channel_norm_map(ctx, module, name, call, x)


def channel_affine_parts(layer: nn.Module, space, idx) -> list:
    """``weight[c]`` and ``bias[c]`` (affine layers only; a single shared PReLU slope owns nothing)."""
    return affine_parts(layer, idx, lambda p: 0, min_numel=2)


def last_dim_affine_parts(layer: nn.Module, space, idx) -> list:
    """``weight[..., c]`` and ``bias[..., c]``: the channel is the last normalised dim."""
    return affine_parts(layer, idx, lambda p: p.dim() - 1)


_CHANNEL_NORM = dict(channel_map=channel_norm_map, parts=channel_affine_parts)
BATCHNORM_FAMILY = register_family(LayerFamily(
    "batchnorm", BATCHNORM_PRUNER, functional_ops=("batch_norm",), **_CHANNEL_NORM,
    standard_types=(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)))
INSTANCENORM_FAMILY = register_family(LayerFamily(
    "instancenorm", INSTANCENORM_PRUNER, functional_ops=("instance_norm",), **_CHANNEL_NORM,
    standard_types=(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)))
GROUPNORM_FAMILY = register_family(LayerFamily(
    "groupnorm", GROUPNORM_PRUNER, functional_ops=("group_norm",), **_CHANNEL_NORM, standard_types=(nn.GroupNorm,)))
LAYERNORM_FAMILY = register_family(LayerFamily(
    "layernorm", LAYERNORM_PRUNER, channel_map=layer_norm_map, parts=last_dim_affine_parts,
    functional_ops=("layer_norm", "rms_norm"), standard_types=_LAYERNORM_TYPES))
PRELU_FAMILY = register_family(LayerFamily(
    "prelu", PRELU_PRUNER, channel_map=prelu_map, parts=channel_affine_parts, functional_ops=("prelu",),
    standard_types=(nn.PReLU,)))
