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

from typing import Callable

from torch import nn

from .base import BasePruningFunc
from .family import LayerFamily, register_family
from .library_types import library_type
from .slicing import Part, Rows, param_of

__all__ = ["LinearPruner", "LINEAR_PRUNER", "LINEAR_FAMILY", "prune_linear_out_channels", "prune_linear_in_channels"]


class LinearPruner(BasePruningFunc):
    """Prunes ``nn.Linear``: ``out_features`` (weight rows, bias) and ``in_features`` (weight columns).

    >>> fc = nn.Linear(4, 3, bias=False)
    >>> LinearPruner().prune_out_channels(fc, [0, 2]).weight.shape
    torch.Size([1, 4])
    """

    TARGET_MODULES = (nn.Linear,)

    CHANNEL_ATTRS = ("out_features", "in_features")
    SLICED_TENSORS = {"out": {"weight": 0, "bias": 0}, "in": {"weight": 1}}
    COMPOSABLE_CUTS = True


LINEAR_PRUNER = LinearPruner()
prune_linear_out_channels, prune_linear_in_channels = LINEAR_PRUNER.pruning_fns()


def linear_channel_map(ctx, module: nn.Linear, name: str, call, x) -> None:
    """Reads the last dim; the leading dims pass through when the output keeps their sizes."""
    out = call.outputs[0]
    i_ids, o_ids = ctx.channels(module, name, "in"), ctx.channels(module, name, "out")
    ctx.consume(x, -1, i_ids, name)
    keep = set(range(x.ndim - 1)) if out.shape[:-1] == x.shape[:-1] else set()
    ctx.fix_other_dims(x, x.ndim - 1, keep, f"{name} changes the shape of a dim that holds channels")
    ctx.label(out, out.ndim - 1, o_ids, ctx.carried(x, out, x.ndim - 1, keep))


def matrix_parts(out_dim: int, in_dim: int) -> Callable[[nn.Module, object, object], list]:
    """The ``parts`` of a layer with a matrix ``weight`` (its output channels along ``out_dim``, its input channels
    along ``in_dim``) and an optional ``bias`` per output channel: out: the weight's entries along ``out_dim`` and
    the bias; in: the weight's entries along ``in_dim``."""

    def parts(layer: nn.Module, space, idx) -> list:
        if space.side == "out":
            b = param_of(layer, "bias")
            return [Part(layer.weight, Rows(out_dim, idx), False)] + \
                ([Part(b, Rows(0, idx), True)] if b is not None else [])
        return [Part(layer.weight, Rows(in_dim, idx), False)]

    return parts


#: ``nn.Linear``: out: ``weight[o]`` and ``bias[o]``; in: ``weight[:, i]``
linear_parts = matrix_parts(out_dim=0, in_dim=1)


#: ``nn.Linear`` subclasses of other libraries whose own ``forward`` computes exactly ``F.linear(x, weight, bias)``
#: (transformers' ``FalconLinear``: ``x @ weight.T + bias``): seen as one linear call, not traced op by op (where the
#: weight, read outside ``F.linear``, would belong to no channel space)
LINEAR_EQUIVALENT_TYPES = library_type("transformers.models.falcon.modeling_falcon.FalconLinear",
                                       name="LinearEquivalent")


LINEAR_FAMILY = register_family(LayerFamily(
    "linear", LINEAR_PRUNER, channel_map=linear_channel_map, parts=linear_parts, root=True,
    functional_ops=("linear",), standard_types=(nn.Linear, LINEAR_EQUIVALENT_TYPES),
))
