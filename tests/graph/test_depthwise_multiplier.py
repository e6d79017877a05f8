"""A depthwise conv with a channel multiplier k (groups == in_channels, out_channels == k * in_channels): input
channel c and its k outputs are one unit, so the layer feeding it and the conv prune together in whole blocks (what
timm's fastvit_t8 needs); and a conv that became depthwise by pruning its inputs can still reduce its multiplier."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.layers import prune_conv_out_channels


class MultiplierNet(nn.Module):
    def __init__(self, k=2):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 8 * k, 3, padding=1, groups=8)
        self.head = nn.Conv2d(8 * k, 2, 1)

    def forward(self, x):
        return self.head(torch.relu(self.dw(torch.relu(self.a(x)))))


@pytest.mark.parametrize("k", [2, 3])
def test_the_feeding_layer_and_the_blocks_of_the_multiplier_conv_prune_together(k):
    torch.manual_seed(0)
    model, x = MultiplierNet(k), torch.randn(1, 3, 8, 8)
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       ignored_layers=[model.head])
    group = next(g for g in pruner.get_all_groups() if g.root_name == "a")
    assert sorted(len(u) for u in group.units) == [1] * 8  # one unit per input channel of dw (root: a's channels)
    w_a, w_dw = model.a.weight.detach().clone(), model.dw.weight.detach().clone()
    pruner.step()
    assert model.a.out_channels == 4
    kept = [next(c for c in range(8) if torch.equal(w_a[c], row)) for row in model.a.weight.detach()]
    assert (model.dw.in_channels, model.dw.groups, model.dw.out_channels) == (4, 4, 4 * k)
    rows = torch.cat([torch.arange(c * k, c * k + k) for c in kept])
    assert torch.equal(model.dw.weight.detach(), w_dw[rows])  # whole blocks of the kept input channels
    assert model.head.in_channels == 4 * k
    assert pruner.skipped == [] or all(s.kind not in ("error", "check") for s in pruner.skipped)
    model(x).sum().backward()


def test_removing_the_same_count_from_every_block_reduces_the_multiplier():
    conv = nn.Conv2d(4, 8, 3, groups=4)  # multiplier 2
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        before = conv(x)
    prune_conv_out_channels(conv, [0, 3, 4, 7])  # one output from each block of 2
    assert (conv.in_channels, conv.groups, conv.out_channels) == (4, 4, 4)
    with torch.no_grad():
        assert torch.allclose(conv(x), before[:, [1, 2, 5, 6]], atol=1e-6)


def test_uneven_partial_blocks_are_refused_with_the_rule():
    conv = nn.Conv2d(4, 8, 3, groups=4)
    with pytest.raises(pe.errors.PruningError, match="whole blocks of 2"):
        prune_conv_out_channels(conv, [0, 1, 2, 4])  # one whole block, one output of another
    assert conv.out_channels == 8
