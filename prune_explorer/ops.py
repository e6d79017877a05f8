"""Torch-Pruning's ``tp.ops`` names: layer-type aliases and the operation-type enum.

Code written for Torch-Pruning uses these to choose root layers and to ask what a module or graph node is::

    >>> import torch.nn as nn, prune_explorer as pe
    >>> pe.ops.module2type(nn.Conv2d(8, 8, 3, groups=8))
    <OPTYPE.DEPTHWISE_CONV: 4>
    >>> isinstance(nn.Conv1d(2, 2, 1), pe.ops.TORCH_CONV)
    True
    >>> pe.ops.type2class(pe.ops.OPTYPE.BN)
    <class 'torch.nn.modules.batchnorm._BatchNorm'>

The graph itself does not use these: its nodes name their operation by what was called (``node.op`` is
``"Conv2d"``, ``"add"``, ``"cat"``, ...). :func:`node_type` maps a node to the enum.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Optional

import torch.nn as nn

__all__ = [
    "TORCH_CONV", "TORCH_BATCHNORM", "TORCH_LAYERNORM", "TORCH_GROUPNORM", "TORCH_INSTANCENORM", "TORCH_PRELU",
    "TORCH_LINEAR", "TORCH_EMBED", "TORCH_PARAMETER", "TORCH_LSTM", "TORCH_MHA", "TORCH_OTHERS", "OPTYPE",
    "module2type", "type2class", "node_type",
]

TORCH_CONV = nn.modules.conv._ConvNd
TORCH_BATCHNORM = nn.modules.batchnorm._BatchNorm
TORCH_LAYERNORM = nn.LayerNorm
TORCH_GROUPNORM = nn.GroupNorm
TORCH_INSTANCENORM = nn.modules.instancenorm._InstanceNorm
TORCH_PRELU = nn.PReLU
TORCH_LINEAR = nn.Linear
TORCH_EMBED = nn.Embedding
TORCH_PARAMETER = nn.Parameter
TORCH_LSTM = nn.LSTM
TORCH_MHA = nn.MultiheadAttention
TORCH_OTHERS = None


class OPTYPE(IntEnum):
    """Kinds of layers and operations, numbered as in Torch-Pruning 1.6."""

    CONV = 0
    BN = 1
    LINEAR = 2
    PRELU = 3
    DEPTHWISE_CONV = 4
    CONCAT = 5
    SPLIT = 6
    CUSTOMIZED = 7
    ELEMENTWISE = 8
    LN = 9
    EMBED = 10
    PARAMETER = 11
    MHA = 12
    LSTM = 13
    RESHAPE = 14
    GN = 15
    IN = 16
    UNBIND = 17
    EXPAND = 18
    SLICE = 19
    OUTPUT = 20


_CLASSES = [
    (OPTYPE.CONV, TORCH_CONV), (OPTYPE.BN, TORCH_BATCHNORM), (OPTYPE.LINEAR, TORCH_LINEAR),
    (OPTYPE.PRELU, TORCH_PRELU), (OPTYPE.LN, TORCH_LAYERNORM), (OPTYPE.EMBED, TORCH_EMBED),
    (OPTYPE.PARAMETER, TORCH_PARAMETER), (OPTYPE.MHA, TORCH_MHA), (OPTYPE.LSTM, TORCH_LSTM),
    (OPTYPE.GN, TORCH_GROUPNORM), (OPTYPE.IN, TORCH_INSTANCENORM),
]


def module2type(module) -> OPTYPE:
    """The :class:`OPTYPE` of a layer (or loose ``nn.Parameter``); ``CUSTOMIZED`` for anything else.

    A convolution whose ``groups`` equals its input channels (and is > 1) is ``DEPTHWISE_CONV``."""
    if isinstance(module, TORCH_CONV):
        return OPTYPE.DEPTHWISE_CONV if module.groups > 1 and module.groups == module.in_channels else OPTYPE.CONV
    for kind, cls in _CLASSES[1:]:
        if isinstance(module, cls):
            return kind
    return OPTYPE.CUSTOMIZED


def type2class(op_type: OPTYPE) -> Optional[type]:
    """The layer class of an :class:`OPTYPE` (``DEPTHWISE_CONV`` → the conv base class); None for operations."""
    if op_type == OPTYPE.DEPTHWISE_CONV:
        return TORCH_CONV
    for kind, cls in _CLASSES:
        if kind == op_type:
            return cls
    return None


_OP_NAMES = {
    "cat": OPTYPE.CONCAT, "concat": OPTYPE.CONCAT, "concatenate": OPTYPE.CONCAT, "stack": OPTYPE.CONCAT,
    "split": OPTYPE.SPLIT, "split_with_sizes": OPTYPE.SPLIT, "chunk": OPTYPE.SPLIT, "tensor_split": OPTYPE.SPLIT,
    "unbind": OPTYPE.UNBIND, "expand": OPTYPE.EXPAND, "expand_as": OPTYPE.EXPAND, "repeat": OPTYPE.EXPAND,
    "view": OPTYPE.RESHAPE, "reshape": OPTYPE.RESHAPE, "flatten": OPTYPE.RESHAPE, "unflatten": OPTYPE.RESHAPE,
    "permute": OPTYPE.RESHAPE, "transpose": OPTYPE.RESHAPE, "squeeze": OPTYPE.RESHAPE, "unsqueeze": OPTYPE.RESHAPE,
    "getitem": OPTYPE.SLICE, "narrow": OPTYPE.SLICE, "select": OPTYPE.SLICE, "index_select": OPTYPE.SLICE,
}


def node_type(node) -> OPTYPE:
    """The :class:`OPTYPE` of a graph :class:`~prune_explorer.Node`: its layer's type, ``OUTPUT`` for the output, the
    shape operations by name, and ``ELEMENTWISE`` for every other operation (add, mul, relu, pooling...)."""
    if node.kind == "output":
        return OPTYPE.OUTPUT
    if node.kind == "param":
        return OPTYPE.PARAMETER
    if node.module is not None:
        return module2type(node.module)
    return _OP_NAMES.get(str(node.op).rstrip("_"), OPTYPE.ELEMENTWISE)
