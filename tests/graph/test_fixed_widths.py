"""Every width that stays has a reason: ``DG.fixed_reason`` is never None for a layer no group prunes,
``DG.fixed_widths`` / ``pruner.report()`` list each fixed width with its reason and each group with its channels
before and after, and a pruner whose graph has no group warns once, naming the main reasons.

Swin V2 (torchvision) prunes like Swin V1: its attention zeroes the key part of a copy of ``qkv.bias``
(``qkv_bias[length:2 * length]`` with ``length = qkv_bias.numel() // 3``) before ``F.linear``; the copy carries
``qkv``'s output channels and the slice follows their count."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.models import swin_transformer as swin

import prune_explorer as pe
from prune_explorer.graph.model.fixed_widths import UNREACHED_REASON, UNTRACED_REASON


class MatmulLinear(nn.Linear):
    """A linear layer with its own forward: the weight is used outside ``F.linear``."""

    def forward(self, x):
        return x @ self.weight.T + self.bias


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.spare = nn.Linear(16, 16)  # never called
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


def test_layer_the_trace_did_not_see_has_a_reason():
    model = Unused()
    DG = pe.DependencyGraph().build_dependency(model, torch.randn(2, 8))
    assert [g.root_name for g in DG.get_all_groups()] == ["fc"]
    assert DG.fixed_reason(model.spare) == UNTRACED_REASON
    assert DG.fixed_reason(model.fc) is None
    rows = {r.name: r for r in DG.fixed_widths() if r.reason == UNTRACED_REASON}
    assert set(rows) == {"spare"} and rows["spare"].size == 16


def test_layer_with_its_own_forward_prunes():
    """A linear subclass whose forward is ``x @ self.weight.T + self.bias``: its weight and bias carry its channels
    (the dims its pruner slices), so it prunes like ``nn.Linear``."""
    torch.manual_seed(0)
    model = nn.Sequential(MatmulLinear(8, 16), nn.ReLU(), MatmulLinear(16, 4))
    x = torch.randn(2, 8)
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5)
    pruner.step()
    assert (model[0].out_features, model[2].in_features, model[0].bias.shape) == (8, 8, (8,))
    assert model(x).shape == (2, 4)


def test_zero_groups_warns_once_with_reasons():
    model = nn.Sequential(nn.Linear(8, 4))  # its input is the model's, its output the model's: nothing to prune
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner = pe.pruner.MagnitudePruner(model, torch.randn(2, 8), pe.importance.MagnitudeImportance(),
                                           pruning_ratio=0.5)
        pruner.step()
    mine = [str(w.message) for w in caught if "has no group to prune" in str(w.message)]
    assert len(mine) == 1
    assert "Sequential" in mine[0] and "reaches the model output" in mine[0] and "model input" in mine[0]
    assert [tuple(p.shape) for p in model.parameters()] == [(4, 8), (4,)]


def test_no_warning_when_there_are_groups():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pe.pruner.MagnitudePruner(model, torch.randn(2, 8), pe.importance.MagnitudeImportance(), pruning_ratio=0.5)


def test_unreached_channels_have_a_reason():
    """A norm on the model input: its channels are prunable (nothing fixes them) but no group root produces them."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(8))
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(x * self.scale)

    model = Net()
    DG = pe.DependencyGraph().build_dependency(model, torch.randn(2, 8))
    reasons = {r.label: r.reason for r in DG.fixed_widths()}
    assert reasons["fc.in"] in (UNREACHED_REASON, "fc reads channels that come from no prunable layer (e.g. the "
                                                  "model input)")
    assert DG.fixed_reason(model.fc, side="in") is not None


def test_report_lists_groups_and_fixed_widths():
    model = torchvision.models.resnet18(num_classes=10)
    pruner = pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 32, 32), pe.importance.MagnitudeImportance(),
                                       pruning_ratio=0.5, ignored_layers=[model.fc])
    pruner.step()
    report = pruner.report()
    by_root = {g.root: g for g in report.groups}
    g = by_root["layer1.0.conv1.out"]
    assert (g.before, g.after) == (64, 32) and g.members == ["layer1.0.conv1.out", "layer1.0.bn1", "layer1.0.conv2.in"]
    assert model.layer1[0].conv1.out_channels == g.after
    fixed = {f.label: f for f in report.fixed}
    assert fixed["conv1.in"].fixed == 3 and fixed["fc.out"].size == 10
    assert report.params_after == sum(p.numel() for p in model.parameters()) < report.params_before
    text = str(report)
    assert "layer1.0.conv1.out: 64 -> 32" in text and "fc.out: 10/10" in text
    json.dumps(report.as_dict())


def _swin(block, merge):
    torch.manual_seed(0)
    return swin.SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                                block=block, downsample_layer=merge, num_classes=10).eval()


def _kept_at_half(model, x):
    n0 = sum(p.numel() for p in model.parameters())
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5,
                                       ignored_layers=[model.head])
    pruner.step()
    return sum(p.numel() for p in model.parameters()) / n0, pruner


def test_swin_v2_prunes_like_swin_v1():
    x = torch.randn(1, 3, 32, 32)
    v1, _ = _kept_at_half(_swin(swin.SwinTransformerBlock, swin.PatchMerging), x)
    model = _swin(swin.SwinTransformerBlockV2, swin.PatchMergingV2)
    v2, pruner = _kept_at_half(model, x)
    assert v2 <= v1 + 0.05, (v1, v2)
    assert model(x).shape == (1, 10)
    qkv = model.features[1][0].attn.qkv
    assert qkv.out_features == 3 * qkv.in_features  # the zeroed key bias third follows the pruning
    assert all("qkv" not in f.name or f.reason.startswith("reaches") for f in pruner.report().fixed
               if f.name.endswith("qkv") and f.side == "out")
