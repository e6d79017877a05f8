"""Per-layer pruning functions: one pruner per layer family (channel counts, ``prune_out`` / ``prune_in``).

Each ``prune_*_out_channels`` / ``prune_*_in_channels`` function has Torch-Pruning's name and signature
``fn(layer, idxs) -> layer``; it is a bound method of a singleton pruner (``fn.__self__``), removes the
channels ``idxs`` by building new tensors, updates the layer's attributes, and leaves the layer untouched if
the request is invalid (:class:`~prune_explorer.errors.PruningError`). See :mod:`.base` for the rules.

    >>> import torch, torch.nn as nn
    >>> import prune_explorer.layers as L
    >>> fc = nn.Linear(8, 4)
    >>> L.prune_linear_out_channels(fc, [0, 1])
    Linear(in_features=8, out_features=2, bias=True)
    >>> L.DEFAULT_REGISTRY.get(fc)
    LinearPruner()
"""

from .attention import (
    MHA_PRUNER,
    MultiheadAttentionPruner,
    prune_multihead_attention_in_channels,
    prune_multihead_attention_out_channels,
)
from .base import BasePruningFunc, describe_layer, keep_indices, normalize_indices, normalize_side
from .conv import (
    CONV_PRUNER,
    DEPTHWISE_CONV_PRUNER,
    ConvPruner,
    DepthwiseConvPruner,
    conv_kind,
    prune_conv_in_channels,
    prune_conv_out_channels,
    prune_convtranspose_in_channels,
    prune_convtranspose_out_channels,
    prune_depthwise_conv_in_channels,
    prune_depthwise_conv_out_channels,
)
from .embedding import EMBEDDING_PRUNER, EmbeddingPruner, prune_embedding_in_channels, prune_embedding_out_channels
from .linear import LINEAR_PRUNER, LinearPruner, prune_linear_in_channels, prune_linear_out_channels
from .norm import (
    BATCHNORM_PRUNER,
    GROUPNORM_PRUNER,
    INSTANCENORM_PRUNER,
    LAYERNORM_PRUNER,
    PRELU_PRUNER,
    BatchnormPruner,
    GroupNormPruner,
    InstanceNormPruner,
    LayernormPruner,
    PReLUPruner,
    prune_batchnorm_in_channels,
    prune_batchnorm_out_channels,
    prune_groupnorm_in_channels,
    prune_groupnorm_out_channels,
    prune_instancenorm_in_channels,
    prune_instancenorm_out_channels,
    prune_layernorm_in_channels,
    prune_layernorm_out_channels,
    prune_prelu_in_channels,
    prune_prelu_out_channels,
)
from .parameter import (
    PARAMETER_PRUNER,
    ParameterPruner,
    prune_parameter_in_channels,
    prune_parameter_out_channels,
    replace_parameter,
)
from .recurrent import (
    GRU_PRUNER,
    LSTM_PRUNER,
    RNN_PRUNER,
    GRUPruner,
    LSTMPruner,
    RNNPruner,
    prune_gru_in_channels,
    prune_gru_out_channels,
    prune_lstm_in_channels,
    prune_lstm_out_channels,
    prune_rnn_in_channels,
    prune_rnn_out_channels,
    refresh_flat_weights,
)
from .registry import (
    DEFAULT_REGISTRY,
    PrunerRegistry,
    default_registry,
    is_in_channel_pruning_fn,
    is_out_channel_pruning_fn,
    pruner_of,
    pruning_fn_side,
)

__all__ = [
    # base and helpers
    "BasePruningFunc",
    "describe_layer",
    "keep_indices",
    "normalize_indices",
    "normalize_side",
    "conv_kind",
    "refresh_flat_weights",
    "replace_parameter",
    # pruner classes (Torch-Pruning names)
    "ConvPruner",
    "DepthwiseConvPruner",
    "LinearPruner",
    "BatchnormPruner",
    "InstanceNormPruner",
    "GroupNormPruner",
    "LayernormPruner",
    "PReLUPruner",
    "EmbeddingPruner",
    "MultiheadAttentionPruner",
    "RNNPruner",
    "LSTMPruner",
    "GRUPruner",
    "ParameterPruner",
    # singleton instances
    "CONV_PRUNER",
    "DEPTHWISE_CONV_PRUNER",
    "LINEAR_PRUNER",
    "BATCHNORM_PRUNER",
    "INSTANCENORM_PRUNER",
    "GROUPNORM_PRUNER",
    "LAYERNORM_PRUNER",
    "PRELU_PRUNER",
    "EMBEDDING_PRUNER",
    "MHA_PRUNER",
    "RNN_PRUNER",
    "LSTM_PRUNER",
    "GRU_PRUNER",
    "PARAMETER_PRUNER",
    # pruning functions (Torch-Pruning names)
    "prune_conv_out_channels",
    "prune_conv_in_channels",
    "prune_convtranspose_out_channels",
    "prune_convtranspose_in_channels",
    "prune_depthwise_conv_out_channels",
    "prune_depthwise_conv_in_channels",
    "prune_batchnorm_out_channels",
    "prune_batchnorm_in_channels",
    "prune_linear_out_channels",
    "prune_linear_in_channels",
    "prune_prelu_out_channels",
    "prune_prelu_in_channels",
    "prune_layernorm_out_channels",
    "prune_layernorm_in_channels",
    "prune_groupnorm_out_channels",
    "prune_groupnorm_in_channels",
    "prune_instancenorm_out_channels",
    "prune_instancenorm_in_channels",
    "prune_embedding_out_channels",
    "prune_embedding_in_channels",
    "prune_multihead_attention_out_channels",
    "prune_multihead_attention_in_channels",
    "prune_lstm_out_channels",
    "prune_lstm_in_channels",
    "prune_gru_out_channels",
    "prune_gru_in_channels",
    "prune_rnn_out_channels",
    "prune_rnn_in_channels",
    "prune_parameter_out_channels",
    "prune_parameter_in_channels",
    # registry
    "PrunerRegistry",
    "DEFAULT_REGISTRY",
    "default_registry",
    "pruner_of",
    "is_out_channel_pruning_fn",
    "is_in_channel_pruning_fn",
    "pruning_fn_side",
]
