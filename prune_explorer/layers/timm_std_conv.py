"""timm's weight-standardised convolutions: ``StdConv2d``, ``StdConv2dSame``, ``ScaledStdConv2d``,
``ScaledStdConv2dSame`` (NFNet, NF-ResNet, BiT).

They are ``nn.Conv2d`` subclasses whose ``forward`` standardises the weight per output channel before the
convolution; the ``Scaled`` ones multiply it by a learned per-output-channel ``gain`` of shape
``(out_channels, 1, 1, 1)`` (and a constant ``scale``, a float fixed at construction). Channels are those of a
conv (:mod:`.conv`); pruning output channels also takes the entries of ``gain``. ``scale`` (``gamma /
sqrt(fan_in)``) is kept as is after input channels are removed: the standardised weight is recomputed from the
remaining entries, and the layer computes what it computed on them before.

The classes are matched by name (:mod:`.library_types`): timm is not imported.

Example::

    >>> STD_CONV_PRUNER.TARGET_MODULES[0].qualnames[:2]
    ('timm.layers.std_conv.StdConv2d', 'timm.layers.std_conv.StdConv2dSame')
"""

from __future__ import annotations

from torch import nn

from .conv import ConvPruner, conv_channel_map, conv_parts
from .edits import LayerEdit
from .family import LayerFamily, register_family
from .library_types import library_type
from .slicing import Part, Rows, param_of

__all__ = ["STD_CONV_PRUNER", "STD_CONV_FAMILY", "StdConvPruner", "TimmStdConv"]

_NAMES = ("StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame")
#: stand-in type for timm's weight-standardised convs (``timm.layers.std_conv``; ``timm.models.layers`` before 0.9)
TimmStdConv = library_type(*(f"{m}.{n}" for m in ("timm.layers.std_conv", "timm.models.layers.std_conv")
                             for n in _NAMES), name="TimmStdConv")

#: per-output-channel tensors of these layers besides ``weight`` and ``bias``
_PER_OUT_CHANNEL = ("gain",)


class StdConvPruner(ConvPruner):
    """A :class:`~.conv.ConvPruner` that also prunes ``gain`` (dim 0) with the output channels; handles dense,
    grouped and depthwise kinds itself (its depthwise layers are pruned the same way as the conv pruner's)."""

    TARGET_MODULES = (TimmStdConv,)

    def specialize(self, layer: nn.Module):
        return self

    def variants(self) -> tuple:
        return (self,)

    def select_per_out_channel(self, layer: nn.Module, edit: LayerEdit, keep_out) -> None:
        for name in _PER_OUT_CHANNEL:
            t = param_of(layer, name)
            if t is not None and t.dim() >= 1 and t.shape[0] == layer.out_channels:
                edit.select(layer, name, (0, keep_out))


STD_CONV_PRUNER = StdConvPruner()


def std_conv_parts(layer: nn.Module, space, idx) -> list:
    """The conv's parts (:func:`~.conv.conv_parts`), plus ``gain[o]`` for output channel ``o``."""
    parts = conv_parts(layer, space, idx)
    if space.side == "out" or space.passthrough:
        gain = param_of(layer, "gain")
        if gain is not None and gain.shape[0] == layer.out_channels:
            parts.append(Part(gain, Rows(0, idx), False))
    return parts


STD_CONV_FAMILY = register_family(LayerFamily(
    "timm_std_conv", STD_CONV_PRUNER, channel_map=conv_channel_map, parts=std_conv_parts, root=True,
))
