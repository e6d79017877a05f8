"""``cut_layers`` (a batch's cuts from the pruners' specs, each tensor copied once) leaves what the pruners' own
``prune_out_channels`` / ``prune_in_channels`` leave called one after another: the same tensors (values, shapes,
strides, channels-last layout), ``requires_grad``, sliced ``.grad`` and attributes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prune_explorer.errors import PruningError
from prune_explorer.layers import (BATCHNORM_PRUNER, CONV_PRUNER, DEPTHWISE_CONV_PRUNER, GROUPNORM_PRUNER,
                                   LAYERNORM_PRUNER, LINEAR_PRUNER, PRELU_PRUNER)
from prune_explorer.layers.batch_cut import cut_layers


def _sequential(cuts):
    for layer, pruner, side, idxs in cuts:
        (pruner.prune_out_channels if side == "out" else pruner.prune_in_channels)(layer, idxs)


def _batched(cuts):
    cut_layers([(layer, pruner, side, pruner.check(layer, idxs, side)) for layer, pruner, side, idxs in cuts])


def _same(a: nn.Module, b: nn.Module) -> None:
    assert repr(a) == repr(b)
    for (name, p), (_, q) in zip(list(a.named_parameters()) + list(a.named_buffers()),
                                 list(b.named_parameters()) + list(b.named_buffers())):
        assert type(p) is type(q) and torch.equal(p, q) and p.stride() == q.stride(), name
        assert p.requires_grad == q.requires_grad, name
        assert (p.grad is None) == (q.grad is None) and (p.grad is None or torch.equal(p.grad, q.grad)), name
        assert p.grad is None or p.grad.stride() == q.grad.stride(), name
    assert {k: v for k, v in vars(a).items() if not k.startswith("_")} == \
        {k: v for k, v in vars(b).items() if not k.startswith("_")}


def _both(model: nn.Module, cuts_of, x: torch.Tensor = None):
    """Cut ``model`` batched and a copy of it sequentially with the cuts ``cuts_of(model)``; compare them. With
    ``x``: both have the gradients of ``model(x).sum()`` first."""
    twin = copy.deepcopy(model)
    if x is not None:
        model(x).sum().backward()
        twin(x).sum().backward()
    _batched(cuts_of(model))
    _sequential(cuts_of(twin))
    for (name, m), (_, n) in zip(model.named_modules(), twin.named_modules()):
        _same(m, n)
    return model


def test_a_conv_cut_on_both_sides_with_its_norm_equals_the_cuts_one_after_another():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(6, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 5, 1)).train()
    net[0].to(memory_format=torch.channels_last)
    net[2].weight.requires_grad_(False)
    net = _both(net, lambda m: [(m[0], CONV_PRUNER, "out", [1, 6]), (m[1], BATCHNORM_PRUNER, "out", [1, 6]),
                                (m[2], CONV_PRUNER, "in", [1, 6]), (m[0], CONV_PRUNER, "in", [0, 2, 5]),
                                (m[2], CONV_PRUNER, "out", [4])], torch.randn(2, 6, 7, 7))
    assert net[0].weight.grad is not None and net[2].weight.grad is None
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert tuple(net[0].weight.shape) == (6, 3, 3, 3) and tuple(net[2].weight.shape) == (4, 6, 1, 1)
    assert net(torch.randn(1, 3, 7, 7)).shape == (1, 4, 5, 5)


def test_linear_layer_norm_and_prelu_cuts_equal_the_cuts_one_after_another():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.PReLU(8), nn.Linear(8, 4), nn.PReLU())
    _both(net, lambda m: [(m[0], LINEAR_PRUNER, "out", [0, 7]), (m[1], LAYERNORM_PRUNER, "out", [0, 7]),
                          (m[2], PRELU_PRUNER, "out", [0, 7]), (m[3], LINEAR_PRUNER, "in", [0, 7]),
                          (m[3], LINEAR_PRUNER, "out", [2]), (m[4], PRELU_PRUNER, "out", [2])], torch.randn(3, 6))


@pytest.mark.parametrize("transposed", [False, True])
def test_grouped_and_depthwise_convs_equal_the_cuts_one_after_another(transposed):
    """Grouped transposed output channels have no spec (each group keeps its own offsets): that cut is made by the
    pruner's ``remove`` after the layer's pending selections are copied, the others from their specs."""
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    grouped, depthwise, norm = conv(8, 8, 3, groups=2), conv(4, 8, 3, groups=4), nn.GroupNorm(2, 8)
    net = nn.ModuleList([grouped, depthwise, norm])
    _both(net, lambda m: [(m[0], CONV_PRUNER, "in", [1, 5]), (m[0], CONV_PRUNER, "out", [0, 1, 4, 7]),
                          (m[1], DEPTHWISE_CONV_PRUNER, "out", [2, 3]), (m[2], GROUPNORM_PRUNER, "out", [0, 7])])


def test_a_layer_cut_twice_on_one_side_is_checked_again_on_its_cut_size():
    fc = nn.Linear(4, 4)
    with pytest.raises(PruningError, match="out of range"):
        _batched([(fc, LINEAR_PRUNER, "out", [0, 3]), (fc, LINEAR_PRUNER, "out", [2, 3])])
    fc = _both(nn.Linear(4, 6), lambda m: [(m, LINEAR_PRUNER, "out", [0, 5]), (m, LINEAR_PRUNER, "out", [1, 2])])
    assert fc.out_features == 2


def test_tensors_are_new_objects_and_the_untouched_ones_stay():
    conv = nn.Conv2d(4, 6, 3)
    w, b = conv.weight, conv.bias
    cut_layers([(conv, CONV_PRUNER, "in", CONV_PRUNER.check(conv, [0], "in"))])
    assert conv.weight is not w and conv.bias is b and type(conv.weight) is nn.Parameter
    assert list(conv._parameters) == ["weight", "bias"]
