"""transformers' ``Conv1D`` (GPT, GPT-2, and models built on them): a linear layer with a transposed weight.

``Conv1D(nf, nx)`` holds ``weight`` of shape ``(nx, nf)`` (in, out) and ``bias`` ``(nf,)``, and computes
``x @ weight + bias`` over the last dim of ``x``. Output channels are weight columns and bias entries (``nf``);
input channels are weight rows (``nx``). Its channels move as a linear layer's (:mod:`.linear`): it reads the last
dim and writes the last dim. The class is matched by name (:mod:`.library_types`): transformers is not imported.

Example, on a stand-in with the layout (the real class is found by its qualified name)::

    >>> import torch, torch.nn as nn
    >>> class Conv1D(nn.Module):
    ...     def __init__(self, nf, nx):
    ...         super().__init__()
    ...         self.nf, self.nx = nf, nx
    ...         self.weight, self.bias = nn.Parameter(torch.randn(nx, nf)), nn.Parameter(torch.zeros(nf))
    >>> layer = CONV1D_PRUNER.prune_out_channels(Conv1D(nf=6, nx=4), [0, 5])
    >>> tuple(layer.weight.shape), tuple(layer.bias.shape), layer.nf
    ((4, 4), (4,), 4)
    >>> tuple(CONV1D_PRUNER.prune_in_channels(layer, [1]).weight.shape), layer.nx
    ((3, 4), 3)
"""

from __future__ import annotations

from torch import nn

from .base import BasePruningFunc
from .family import LayerFamily, register_family
from .library_types import library_type
from .linear import linear_channel_map, matrix_parts

__all__ = ["CONV1D_PRUNER", "CONV1D_FAMILY", "Conv1DPruner", "TransformersConv1D"]

#: stand-in type for ``transformers.pytorch_utils.Conv1D`` (``transformers.modeling_utils`` before 4.26)
TransformersConv1D = library_type("transformers.pytorch_utils.Conv1D", "transformers.modeling_utils.Conv1D",
                                  name="TransformersConv1D")


class Conv1DPruner(BasePruningFunc):
    """Prunes transformers' ``Conv1D``: ``nf`` (weight columns, bias) and ``nx`` (weight rows)."""

    TARGET_MODULES = (TransformersConv1D,)

    CHANNEL_ATTRS = ("nf", "nx")
    SLICED_TENSORS = {"out": {"weight": 1, "bias": 0}, "in": {"weight": 0}}
    COMPOSABLE_CUTS = True


CONV1D_PRUNER = Conv1DPruner()


#: out: ``weight[:, o]`` and ``bias[o]``; in: ``weight[i]`` (the weight is stored (in, out))
conv1d_parts = matrix_parts(out_dim=1, in_dim=0)


CONV1D_FAMILY = register_family(LayerFamily(
    "transformers_conv1d", CONV1D_PRUNER, channel_map=linear_channel_map, parts=conv1d_parts, root=True,
))
