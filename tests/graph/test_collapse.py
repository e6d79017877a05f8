"""A label field that loses one of its dims (a sum, mean or max over it, a contraction) while it also varies along a
dim that stays: the positions along the lost dim are coupled, and the result keeps the labels of the kept dim.

Before, the reduction dropped such a field whole: in split attention (``x.reshape(B, radix, C, H, W).sum(1)``) and
selective kernels (``torch.stack(paths, 1).sum(1)``) the result looked unlabeled, the next layer's input was fixed
while the layers feeding it were pruned, and the pruned model did not run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.graph.trace.labels import Couplings, collapse

X = torch.randn(1, 3, 8, 8)


def _pairs(c: Couplings):
    if not c.pair_a:
        return set()
    return set(zip(np.concatenate(c.pair_a).tolist(), np.concatenate(c.pair_b).tolist()))


def test_collapse_couples_the_lost_dim_and_keeps_the_other():
    c = Couplings()
    f = torch.tensor([[1, 2, 3], [4, 5, 6]]).reshape(1, 2, 3, 1)  # (batch, radix, channel, 1)
    out = collapse(c, f, [1], "sum")
    assert out.shape == (1, 1, 3, 1) and out.reshape(-1).tolist() == [1, 2, 3]
    assert _pairs(c) == {(4, 1), (5, 2), (6, 3)} and c.fixed == []


def test_collapse_of_a_field_that_only_varies_along_the_lost_dim_drops_it():
    c = Couplings()
    assert collapse(c, torch.tensor([[7], [8], [9]]), [0], "mean") is None
    assert _pairs(c) == set() and c.fixed == []  # the channels are summed away: they stay independent


def test_collapse_fixes_channels_combined_with_unlabeled_positions():
    c = Couplings()
    f = torch.tensor([[1, 2], [-1, 5]])  # position (1, 0) holds no channel: channel 1 meets it in the sum
    out = collapse(c, f, [0], "sum")
    assert out.reshape(-1).tolist() == [1, 2]
    assert _pairs(c) == {(5, 2)}
    assert [(ids.tolist(), reason) for ids, reason in c.fixed] == [([1], "sum")]


def test_collapse_leaves_a_field_without_the_dims_alone():
    c = Couplings()
    f = torch.arange(1, 4).reshape(1, 3)
    assert collapse(c, f, [0], "sum") is f and _pairs(c) == set()


class RadixSum(nn.Module):
    """Split-attention's pattern: ``conv`` makes ``radix * C`` channels, viewed as ``(B, radix, C, H, W)`` and summed
    over ``radix``; the sum feeds ``fc``, and the ``radix`` parts are weighted and summed again into ``out``."""

    def __init__(self, c: int = 8, radix: int = 2, reduce: str = "sum", keepdim: bool = False):
        super().__init__()
        self.radix, self.reduce, self.keepdim = radix, reduce, keepdim
        self.conv = nn.Conv2d(3, radix * c, 3, padding=1)
        self.fc = nn.Conv2d(c, c, 1)
        self.out = nn.Conv2d(c, 4, 1)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        b, rc, h, w = x.shape
        x = x.reshape(b, self.radix, rc // self.radix, h, w)
        y = getattr(x, self.reduce)(dim=1, keepdim=self.keepdim)
        y = y.values if self.reduce == "max" else y
        y = y.squeeze(1) if self.keepdim else y
        return self.out(torch.relu(self.fc(y)))


@pytest.mark.parametrize("reduce, keepdim", [("sum", False), ("mean", False), ("amax", False), ("max", False),
                                             ("sum", True)])
def test_a_radix_sum_couples_the_radix_parts(reduce, keepdim):
    model = RadixSum(reduce=reduce, keepdim=keepdim)
    DG = pe.DependencyGraph().build_dependency(model, X)
    group = DG.get_pruning_group(model.conv, pe.prune_conv_out_channels, idxs=[1])
    members = {(it.dep.space.label, tuple(it.idxs)) for it in group.items}
    assert members == {("conv.out", (1, 9)), ("fc.in", (1,))}  # channel 1 of both radix parts, and what they sum to
    assert sorted(len(u) for u in group.units) == [2]
    group.prune()
    assert model.conv.out_channels == 14 and model.fc.in_channels == 7
    assert model(X).shape == (1, 4, 8, 8)


def test_a_sum_over_the_channel_dim_only_couples_nothing():
    """``x.mean(1, keepdim=True)`` (spatial attention): the result holds no channel, each channel stays its own."""

    class SpatialGate(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.head = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            x = self.conv(x)
            return self.head(x * torch.sigmoid(x.mean(1, keepdim=True)))

    model = SpatialGate()
    DG = pe.DependencyGraph().build_dependency(model, X)
    group = DG.get_pruning_group(model.conv, pe.prune_conv_out_channels, idxs=list(range(8)))
    assert [len(u) for u in group.units] == [1] * 8


class Paths(nn.Module):
    """Selective-kernel's pattern: ``torch.stack`` of two conv paths along a new dim, weighted, then summed over it."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.p0 = nn.Conv2d(3, c, 3, padding=1)
        self.p1 = nn.Conv2d(3, c, 5, padding=2)
        self.attn = nn.Conv2d(c, 2 * c, 1)
        self.head = nn.Conv2d(c, 4, 1)

    def forward(self, x):
        paths = torch.stack([self.p0(x), self.p1(x)], dim=1)  # (B, 2, C, H, W)
        gap = paths.sum(1).mean((2, 3), keepdim=True)
        a = self.attn(gap)
        b, c2, _, _ = a.shape
        a = torch.softmax(a.view(b, 2, c2 // 2, 1, 1), dim=1)
        return self.head(torch.sum(paths * a, dim=1))


def test_stacked_paths_summed_together_are_one_group():
    model = Paths()
    pruner = pe.pruner.MagnitudePruner(model, X, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       ignored_layers=[model.head])
    group = next(g for g in pruner.get_all_groups() if g.root_name == "p0")
    labels = {it.dep.space.label for it in group.items}
    assert {"p0.out", "p1.out", "attn.in", "attn.out", "head.in"} <= labels
    pruner.step()
    assert model.p0.out_channels == model.p1.out_channels == 4 and model.attn.out_channels == 8
    assert model(X).shape == (1, 4, 8, 8)
