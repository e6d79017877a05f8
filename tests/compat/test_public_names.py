"""``pe.__all__``: Torch-Pruning 1.6's top-level names plus prune_explorer's own, each resolving to the same kind of
object as ``tp.X`` (the pruners are the pruning algorithms, the ``prune_*`` functions the per-layer ones)."""

import prune_explorer as pe

# torch_pruning/__init__.py (1.6.1): `from .dependency import *`, `from .pruner import *` (function, algorithms),
# `from .pruner import importance`, `from .serialization import save, load, state_dict, load_state_dict`, `utils`
TP_TOP_LEVEL = [
    "DependencyGraph", "Group", "Dependency", "Node", "BasePruningFunc", "function", "pruner", "importance", "utils",
    "BasePruner", "MagnitudePruner", "BNScalePruner", "GroupNormPruner", "GrowingRegPruner", "MetaPruner",
    "state_dict", "load_state_dict", "save", "load",
    "prune_conv_out_channels", "prune_conv_in_channels", "prune_depthwise_conv_out_channels",
    "prune_depthwise_conv_in_channels", "prune_batchnorm_out_channels", "prune_batchnorm_in_channels",
    "prune_linear_out_channels", "prune_linear_in_channels", "prune_prelu_out_channels", "prune_prelu_in_channels",
    "prune_layernorm_out_channels", "prune_layernorm_in_channels", "prune_embedding_out_channels",
    "prune_embedding_in_channels", "prune_parameter_out_channels", "prune_parameter_in_channels",
    "prune_multihead_attention_out_channels", "prune_multihead_attention_in_channels",
    "prune_groupnorm_out_channels", "prune_groupnorm_in_channels", "prune_instancenorm_out_channels",
    "prune_instancenorm_in_channels",
]


def test_all_names_resolve_and_are_unique():
    assert len(pe.__all__) == len(set(pe.__all__))
    assert [n for n in pe.__all__ if not hasattr(pe, n)] == []


def test_torch_pruning_top_level_names():
    assert set(TP_TOP_LEVEL) <= set(pe.__all__)
    assert pe.GroupNormPruner is pe.pruner.GroupNormPruner  # the algorithm, as tp.GroupNormPruner
    assert pe.MagnitudePruner is pe.pruner.MagnitudePruner
    assert pe.function is pe.layers and pe.function.LinearPruner is pe.layers.LinearPruner


def test_every_layer_pruning_function_is_top_level():
    fns = [n for n in pe.layers.__all__ if n.startswith("prune_")]
    assert set(fns) <= set(pe.__all__)
    assert all(getattr(pe, n) == getattr(pe.layers, n) for n in fns)
    # the layer families' other names (pruner classes, registries) live in pe.layers only
    assert "LINEAR_PRUNER" not in pe.__all__ and "DEFAULT_REGISTRY" not in pe.__all__
