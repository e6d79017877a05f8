"""Guards and constraints: max_pruning_ratio, the single-channel guard, round_to, units, channel multiples."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune_explorer.importance import BNScaleImportance, MagnitudeImportance
from prune_explorer.layers import ConvPruner
from prune_explorer.pruner import BasePruner

from small_models import ConvStack, GroupedConvs

X = torch.randn(1, 3, 8, 8)


def test_max_pruning_ratio_caps_a_local_target():
    m = ConvStack(width=10, depth=1)
    BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.8, max_pruning_ratio=0.5).step()
    assert m.first.out_channels == 5 and m.body[0].out_channels == 5


def test_layer_already_below_the_cap_is_skipped_with_its_reason():
    m = ConvStack(width=10, depth=1)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, max_pruning_ratio=0.5, iterative_steps=2)
    # someone prunes body.0 hard outside the schedule (explorer, manual DG call)
    g = next(g for g in pr.DG.get_all_groups() if g.root_module is m.body[0])
    g.prune(idxs=list(range(7)))
    assert m.body[0].out_channels == 3
    pr.step()
    skipped = [s for s in pr.skipped if s.root == "body.0"]
    assert len(skipped) == 1 and skipped[0].kind == "guard" and "max_pruning_ratio guard" in skipped[0].reason
    assert "fewer than 10 * (1 - 0.5)" in skipped[0].reason
    assert m.body[0].out_channels == 3 and m.first.out_channels == 7  # step 1 of 2: 25%


def test_single_channel_guard_and_never_empty():
    m = ConvStack(width=4, depth=1)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.9, global_pruning=True)
    pr.step()
    assert m.first.out_channels >= 1 and m.body[0].out_channels >= 1
    assert m(X).shape == (1, 4, 8, 8)
    m2 = ConvStack(width=4, depth=1)
    pr2 = BasePruner(m2, X, MagnitudeImportance(), pruning_ratio=0.5)
    g = next(g for g in pr2.DG.get_all_groups() if g.root_module is m2.body[0])
    g.prune(idxs=[0, 1, 2])
    pr2.step()
    s = [s for s in pr2.skipped if s.root == "body.0"]
    assert s and s[0].kind == "guard" and "single-channel guard" in s[0].reason
    assert pr2.max_removable(next(g for g in pr2.DG.get_all_groups() if g.root_module is m2.body[0])) == 0


@pytest.mark.parametrize("ratio,round_to,expected", [(0.5, 8, 16), (0.3, 8, 24), (0.9, 8, 8), (0.6, 5, 15)])
def test_round_to_keeps_a_multiple_rounding_up_the_kept_count(ratio, round_to, expected):
    m = ConvStack(width=30, depth=1)
    BasePruner(m, X, MagnitudeImportance(), pruning_ratio=ratio, round_to=round_to).step()
    # int(30 * (1 - ratio)) kept, rounded up to a multiple of round_to
    assert m.body[0].out_channels == expected


def test_grouped_conv_units_are_removed_whole():
    m = GroupedConvs(width=16)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5)
    plans = [pr.proposal(g) for g in pr.DG.get_all_groups()]
    p1 = next(p for p in plans if p.root_name == "conv1")
    # gconv reads 4 channels per group: the same offset of every group is one unit
    assert sorted(len(u) for u in p1.prune_units) == [4, 4, 4, 4]
    assert len(p1.proposed_idxs) == 8 and len({i % 4 for i in p1.proposed_idxs}) == 2
    pr.step()
    assert m.gconv.groups == 4 and m.gconv.in_channels == 8 and m.gconv.out_channels == 4
    assert m(X).shape == (1, 2, 8, 8)
    assert pr.skipped == []


def test_a_grouped_conv_turned_depthwise_reduces_its_multiplier():
    m = GroupedConvs(width=8)  # after conv1 loses half, gconv reads one channel per group
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5)
    pr.step()
    assert m.conv1.out_channels == 4
    assert (m.gconv.in_channels, m.gconv.groups, m.gconv.out_channels) == (4, 4, 4)
    assert [s for s in pr.skipped if s.kind == "error"] == []
    assert m(X).shape == (1, 2, 8, 8)


class PickyConv(nn.Conv2d):
    """A conv whose (customised) pruner refuses to remove output channel 0, which the graph cannot know."""


class PickyConvPruner(ConvPruner):
    def check_structure(self, layer, idxs, side):
        super().check_structure(layer, idxs, side)
        if side == "out" and 0 in idxs:
            raise self.error(layer, side, idxs, "output channel 0 is reserved", "keep channel 0")


class Picky(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 1)
        self.picky = PickyConv(8, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 2, 1)
        with torch.no_grad():
            self.picky.weight[0] = 0  # the lowest score: the proposal removes it

    def forward(self, x):
        return self.out(self.picky(self.conv1(x)))


def test_a_layer_refusing_a_proposal_is_skipped_and_reported():
    m = Picky()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, customized_pruners={PickyConv: PickyConvPruner()})
    with pytest.warns(UserWarning, match="could not be pruned"):
        pr.step()
    assert m.conv1.out_channels == 4
    errs = [s for s in pr.skipped if s.kind == "error"]
    assert [s.root for s in errs] == ["picky"] and "rolled back" in errs[0].reason and "reserved" in errs[0].reason
    assert m.picky.out_channels == 8 and m(X).shape == (1, 2, 8, 8)


class MHANet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 12)
        self.mha = nn.MultiheadAttention(12, 3, batch_first=True)
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        x = self.inp(x)
        return self.fc(x + self.mha(x, x, x)[0])


def test_multihead_attention_keeps_a_multiple_of_num_heads():
    m = MHANet()
    x = torch.randn(2, 5, 6)
    pr = BasePruner(m, x, MagnitudeImportance(), pruning_ratio=0.4)
    pr.step()
    # the target keeps int(12 * 0.6) = 7, i.e. removes 5; the 3 heads need a multiple of 3: 3 are removed
    assert m.mha.embed_dim == 9
    assert m(x).shape == (2, 5, 2)


def test_declared_heads_remove_the_same_offsets_in_every_head():
    m = MHANet()
    x = torch.randn(2, 5, 6)
    pr = BasePruner(m, x, MagnitudeImportance(), pruning_ratio=0.5, num_heads={m.mha: 3})
    g = pr.proposal(next(pr.DG.get_all_groups()))
    assert sorted(len(u) for u in g.full_group.units) == [3, 3, 3, 3]  # the graph ties the heads itself
    assert sorted(len(u) for u in g.prune_units) == [3, 3, 3, 3]
    offsets = {i % 4 for i in g.proposed_idxs}
    assert len(g.proposed_idxs) == 6 and len(offsets) == 2
    pr.step()
    assert m.mha.embed_dim == 6 and m.mha.head_dim == 2 and m(x).shape == (2, 5, 2)
    m2 = MHANet()
    pr2 = BasePruner(m2, x, MagnitudeImportance(), pruning_ratio=0.5, num_heads={m2.mha: 3}, prune_head_dims=False)
    pr2.step()
    assert m2.mha.embed_dim == 12
    assert any(s.kind == "heads" and "prune_head_dims=False" in s.reason for s in pr2.skipped)


def test_out_channel_groups_tie_offsets():
    m = ConvStack(width=12, depth=1)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, out_channel_groups={m.body[0]: 3})
    g = pr.proposal(next(g for g in pr.DG.get_all_groups() if g.root_module is m.body[0]))
    assert sorted(len(u) for u in g.prune_units) == [3, 3, 3, 3]
    assert len({i % 4 for i in g.proposed_idxs}) == 2 and len(g.proposed_idxs) == 6


def test_importance_without_opinion_skips_the_group():
    m = ConvStack(width=8, depth=1)  # no BatchNorm anywhere
    pr = BasePruner(m, X, BNScaleImportance(), pruning_ratio=0.5)
    pr.step()
    assert m.first.out_channels == 8
    assert [s.kind for s in pr.skipped] == ["importance", "importance"]
    assert "BNScaleImportance returned None" in pr.skipped[0].reason
    assert pr.skipped[0].as_dict()["root"] == "first"
