"""PrunerRegistry, pruning-function recognition, exported names, custom pruners."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prune_explorer.layers as L
from prune_explorer.errors import PruningError

from small_models import Scale, TPScalePruner

TP_NAMES = [
    "prune_conv_out_channels", "prune_conv_in_channels",
    "prune_depthwise_conv_out_channels", "prune_depthwise_conv_in_channels",
    "prune_batchnorm_out_channels", "prune_batchnorm_in_channels",
    "prune_linear_out_channels", "prune_linear_in_channels",
    "prune_prelu_out_channels", "prune_prelu_in_channels",
    "prune_layernorm_out_channels", "prune_layernorm_in_channels",
    "prune_groupnorm_out_channels", "prune_groupnorm_in_channels",
    "prune_instancenorm_out_channels", "prune_instancenorm_in_channels",
    "prune_embedding_out_channels", "prune_embedding_in_channels",
    "prune_multihead_attention_out_channels", "prune_multihead_attention_in_channels",
    "prune_lstm_out_channels", "prune_lstm_in_channels",
    "prune_gru_out_channels", "prune_gru_in_channels",
    "prune_parameter_out_channels", "prune_parameter_in_channels",
    "prune_convtranspose_out_channels", "prune_convtranspose_in_channels",
    "prune_rnn_out_channels", "prune_rnn_in_channels",
]


def test_all_exports_exist():
    for name in L.__all__:
        assert hasattr(L, name), name
    assert set(TP_NAMES) <= set(L.__all__)


@pytest.mark.parametrize("name", TP_NAMES)
def test_pruning_functions_are_recognisable(name):
    fn = getattr(L, name)
    pruner = L.pruner_of(fn)
    assert isinstance(pruner, L.BasePruningFunc) and fn.__self__ is pruner
    out = name.endswith("_out_channels")
    assert L.is_out_channel_pruning_fn(fn) is out
    assert L.is_in_channel_pruning_fn(fn) is (not out)
    assert L.pruning_fn_side(fn) == ("out" if out else "in")


def test_non_pruning_functions():
    for obj in (print, lambda m, i: m, L.keep_indices, L.LINEAR_PRUNER.get_out_channels, None):
        assert L.pruner_of(obj) is None or not L.is_out_channel_pruning_fn(obj)
        assert not L.is_in_channel_pruning_fn(obj)
    assert L.pruning_fn_side(print) is None
    # a bound method of a fresh instance is recognised too
    assert L.is_out_channel_pruning_fn(L.LinearPruner().prune_out_channels)


@pytest.mark.parametrize("module,pruner", [
    (nn.Conv1d(2, 4, 1), "CONV_PRUNER"), (nn.Conv3d(2, 4, 1), "CONV_PRUNER"),
    (nn.ConvTranspose2d(2, 4, 1), "CONV_PRUNER"), (nn.Conv2d(4, 4, 3, groups=4), "DEPTHWISE_CONV_PRUNER"),
    (nn.ConvTranspose1d(4, 8, 3, groups=4), "DEPTHWISE_CONV_PRUNER"), (nn.Conv2d(4, 4, 3, groups=2), "CONV_PRUNER"),
    (nn.Linear(2, 2), "LINEAR_PRUNER"), (nn.BatchNorm2d(2), "BATCHNORM_PRUNER"),
    (nn.SyncBatchNorm(2), "BATCHNORM_PRUNER"), (nn.InstanceNorm3d(2), "INSTANCENORM_PRUNER"),
    (nn.GroupNorm(1, 2), "GROUPNORM_PRUNER"), (nn.LayerNorm(2), "LAYERNORM_PRUNER"),
    (nn.PReLU(), "PRELU_PRUNER"), (nn.Embedding(3, 2), "EMBEDDING_PRUNER"),
    (nn.EmbeddingBag(3, 2), "EMBEDDING_PRUNER"), (nn.MultiheadAttention(4, 2), "MHA_PRUNER"),
    (nn.LSTM(2, 2), "LSTM_PRUNER"), (nn.GRU(2, 2), "GRU_PRUNER"), (nn.RNN(2, 2), "RNN_PRUNER"),
    (nn.Parameter(torch.zeros(2)), "PARAMETER_PRUNER"),
])
def test_default_registry_get(module, pruner):
    assert L.DEFAULT_REGISTRY.get(module) is getattr(L, pruner)


def test_unknown_modules():
    for m in (nn.ReLU(), nn.Sequential(), nn.Identity(), nn.Dropout()):
        assert L.DEFAULT_REGISTRY.get(m) is None


def test_subclass_lookup_and_overrides():
    class MyLinear(nn.Linear):
        pass

    class Fancy(MyLinear):
        pass

    class MyPruner(L.LinearPruner):
        pass

    mine = MyPruner()
    assert L.DEFAULT_REGISTRY.get(Fancy(2, 2)) is L.LINEAR_PRUNER  # through the MRO
    reg = L.DEFAULT_REGISTRY.with_overrides({MyLinear: mine})
    assert reg.get(Fancy(2, 2)) is mine and reg.get(nn.Linear(2, 2)) is L.LINEAR_PRUNER
    reg2 = L.DEFAULT_REGISTRY.with_overrides({nn.Linear: mine})
    assert reg2.get(nn.Linear(2, 2)) is mine
    assert reg2.get(nn.modules.linear.NonDynamicallyQuantizableLinear(2, 2)) is mine
    assert L.DEFAULT_REGISTRY.get(nn.Linear(2, 2)) is L.LINEAR_PRUNER  # default untouched
    reg3 = L.DEFAULT_REGISTRY.with_overrides({MyLinear: None})
    assert reg3.get(Fancy(2, 2)) is None and reg3.get(nn.Linear(2, 2)) is L.LINEAR_PRUNER
    # a customised conv pruner (a subclass) is used as is, even for depthwise convs
    class MyConvPruner(L.ConvPruner):
        pass

    conv_custom = MyConvPruner()
    reg4 = L.DEFAULT_REGISTRY.with_overrides({nn.Conv2d: conv_custom})
    dw = nn.Conv2d(3, 3, 3, groups=3)
    assert reg4.get(dw) is conv_custom
    assert reg4.get(nn.Conv1d(3, 3, 3, groups=3)) is L.DEPTHWISE_CONV_PRUNER
    # a plain ConvPruner instance still hands depthwise convs to the depthwise pruner
    assert L.DEFAULT_REGISTRY.with_overrides({nn.Conv2d: L.ConvPruner()}).get(dw) is L.DEPTHWISE_CONV_PRUNER


def test_register_validation_and_repr():
    reg = L.PrunerRegistry()
    with pytest.raises(PruningError, match="BasePruningFunc"):
        reg.register(nn.Linear, object())
    with pytest.raises(PruningError, match="layer type"):
        reg.register(nn.Linear(2, 2), L.LINEAR_PRUNER)
    reg.register(nn.Linear, L.LINEAR_PRUNER)
    assert nn.Linear in reg and len(reg) == 1
    assert "torch.nn.modules.linear.Linear: LinearPruner()" in repr(reg)
    reg.unregister(nn.Linear)
    assert reg.get(nn.Linear(2, 2)) is None
    assert L.DEPTHWISE_CONV_PRUNER in L.DEFAULT_REGISTRY.pruners()
    assert L.default_registry() is not L.DEFAULT_REGISTRY


def test_isinstance_fallback_for_virtual_subclasses():
    import abc

    class Marker(abc.ABC):
        pass

    class Odd(nn.Module):
        pass

    Marker.register(Odd)
    reg = L.PrunerRegistry({Marker: L.LINEAR_PRUNER})
    assert reg.get(Odd()) is L.LINEAR_PRUNER


def test_torch_pruning_style_custom_pruner():
    pruner = TPScalePruner()
    reg = L.DEFAULT_REGISTRY.with_overrides({Scale: pruner})
    m = Scale(5, init=torch.arange(5.0))
    assert reg.get(m) is pruner
    # the generic check works from the channel counts alone
    assert pruner.check(m, [4, 0], "out") == [0, 4]
    assert pruner.check(m, [1], True) == [1]  # Torch-Pruning's to_output flag
    with pytest.raises(PruningError, match="Scale.*out of range"):
        pruner.check(m, [5], "in")
    # aliasing prune_in_channels = prune_out_channels declares one space (Torch-Pruning's intra-layer dependency)
    assert pruner.channel_multiple(m, "out") == 1 and pruner.in_out_coupled(m)
    pruner.prune_in_channels(m, [1])
    assert m.scale.tolist() == [0.0, 2.0, 3.0, 4.0]
    # an aliased function counts as both sides
    assert L.is_out_channel_pruning_fn(pruner.prune_in_channels)
    assert L.is_in_channel_pruning_fn(pruner.prune_out_channels)


def test_base_class_is_abstract():
    base = L.BasePruningFunc()
    with pytest.raises(NotImplementedError):
        base.prune_out_channels(nn.Linear(2, 2), [0])
    with pytest.raises(NotImplementedError):
        base.get_in_channels(nn.Linear(2, 2))
