"""timm's weight-standardised convs (StdConv2d, ScaledStdConv2d and their "Same" variants) through the layer
registry: the per-output-channel ``gain`` is pruned with the output channels, and a model built from them prunes and
runs. On the real timm classes (random weights)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.layers import FAMILIES, DEFAULT_REGISTRY, STD_CONV_PRUNER

std_conv = pytest.importorskip("timm.layers.std_conv")

CLASSES = [std_conv.StdConv2d, std_conv.StdConv2dSame, std_conv.ScaledStdConv2d, std_conv.ScaledStdConv2dSame]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_registry_finds_the_std_conv_family_before_the_conv_family(cls):
    conv = cls(4, 8, 3)
    assert isinstance(conv, nn.Conv2d)
    assert FAMILIES.family_of(conv).name == "timm_std_conv"
    assert DEFAULT_REGISTRY.get(conv) is STD_CONV_PRUNER


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_output_channels_take_their_gain_and_the_kept_channels_compute_the_same(cls):
    torch.manual_seed(0)
    conv = cls(4, 8, 3, bias=True).eval()
    if hasattr(conv, "gain"):
        with torch.no_grad():
            conv.gain.copy_(torch.rand_like(conv.gain) + 0.5)  # distinct gains, so a wrong slice shows
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        before = conv(x)
    STD_CONV_PRUNER.prune_out_channels(conv, [1, 6])
    keep = [0, 2, 3, 4, 5, 7]
    assert conv.out_channels == 6 and conv.weight.shape[0] == 6 and conv.bias.shape == (6,)
    if hasattr(conv, "gain"):
        assert conv.gain.shape == (6, 1, 1, 1)
    with torch.no_grad():
        after = conv(x)
    assert torch.allclose(after, before[:, keep], atol=1e-5)


def test_input_channels_keep_gain_and_scale():
    conv = std_conv.ScaledStdConv2d(6, 4, 3)
    gain, scale = conv.gain, conv.scale
    STD_CONV_PRUNER.prune_in_channels(conv, [0, 5])
    assert conv.in_channels == 4 and conv.weight.shape[1] == 4
    assert conv.gain is gain and conv.scale == scale
    assert conv(torch.randn(1, 4, 7, 7)).shape == (1, 4, 7, 7)  # timm pads to keep the size


def test_a_depthwise_scaled_std_conv_prunes_its_gain_with_its_channels():
    conv = std_conv.ScaledStdConv2d(8, 8, 3, groups=8)
    STD_CONV_PRUNER.prune_out_channels(conv, [0, 3])
    assert (conv.in_channels, conv.out_channels, conv.groups) == (6, 6, 6)
    assert conv.gain.shape == (6, 1, 1, 1)
    assert conv(torch.randn(1, 6, 5, 5)).shape == (1, 6, 5, 5)


class NFBlock(nn.Module):
    """Two scaled standardised convs with a residual, as in NF-ResNets."""

    def __init__(self):
        super().__init__()
        self.stem = std_conv.ScaledStdConv2d(3, 16, 3, padding=1)
        self.conv1 = std_conv.ScaledStdConv2d(16, 32, 3, padding=1)
        self.conv2 = std_conv.ScaledStdConv2dSame(32, 16, 3)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = x + self.conv2(torch.relu(self.conv1(x)))
        return self.head(x.mean((2, 3)))


def test_a_model_of_scaled_std_convs_prunes_and_runs():
    torch.manual_seed(0)
    model, x = NFBlock().eval(), torch.randn(1, 3, 16, 16)
    n_before = sum(p.numel() for p in model.parameters())
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       ignored_layers=[model.head])
    pruner.step()
    assert model.conv1.out_channels == 16 and model.stem.out_channels == 8 == model.conv2.out_channels
    for conv in (model.stem, model.conv1, model.conv2):
        assert conv.gain.shape == (conv.out_channels, 1, 1, 1)
    assert [s.kind for s in pruner.skipped if s.kind in ("error", "check")] == []
    assert sum(p.numel() for p in model.parameters()) < n_before
    model(x).sum().backward()
