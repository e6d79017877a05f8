"""Ranking scopes: local, global, isomorphic, user-defined (tuple keys of pruning_ratio_dict)."""

from __future__ import annotations

import pytest
import torch

from prune_explorer.importance import MagnitudeImportance
from prune_explorer.pruner import BasePruner

from small_models import ConvStack, TinyResNet

X = torch.randn(1, 3, 8, 8)


def _scaled_stack():
    """body.0's output channels are all weak, body.1's strong: global ranking should take from body.0."""
    m = ConvStack(width=10, depth=3)
    with torch.no_grad():
        m.body[0].weight.mul_(0.01)
        m.body[1].weight[:, :].mul_(1.0)
    return m


def test_global_pruning_takes_the_weakest_channels_anywhere():
    m = _scaled_stack()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.3, global_pruning=True)
    scopes = {}
    for g in pr.step(interactive=True):
        scopes[g.root_name] = (g.scope, g.pruning_ratio)
        g.prune()
    widths = [m.first.out_channels] + [c.out_channels for c in m.body]
    assert sum(10 - w for w in widths) == 12  # 30% of the 40 channels in the global scope
    assert m.body[0].out_channels < 10 - 3  # the weak layer gave more than its local share
    assert set(s for s, _ in scopes.values()) == {"global"}
    assert all(r == pytest.approx(0.3) for _, r in scopes.values())
    assert m(X).shape == (1, 4, 8, 8)


def test_global_pruning_respects_max_pruning_ratio():
    m = _scaled_stack()
    BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.3, global_pruning=True, max_pruning_ratio=0.4).step()
    assert m.body[0].out_channels == 6  # capped at 40%; the budget went elsewhere
    widths = [m.first.out_channels] + [c.out_channels for c in m.body]
    assert sum(10 - w for w in widths) == 12


def test_local_pruning_is_uniform():
    m = _scaled_stack()
    BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.3).step()
    assert [m.first.out_channels] + [c.out_channels for c in m.body] == [7, 7, 7, 7]


def test_isomorphic_scopes_group_identical_structures():
    m = TinyResNet()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, isomorphic=True, global_pruning=True,
                    ignored_layers=[m.fc])
    scopes = {g.root_name: g.scope for g in (pr.proposal(g) for g in pr.DG.get_all_groups(ignored_layers=[m.fc]))}
    # the three blocks' conv1 groups are isomorphic; the residual stream and the head are each alone
    assert scopes["blocks.0.conv1"] == scopes["blocks.1.conv1"] == scopes["blocks.2.conv1"]
    assert len({scopes["stem"], scopes["head"], scopes["blocks.0.conv1"]}) == 3
    assert all(s.startswith("isomorphic:") for s in scopes.values())
    pr.step()
    assert sum(b.conv1.out_channels for b in m.blocks) == 24  # half of the scope's 48 channels
    assert m(X).shape == (1, 10)


def test_user_scope_ranks_its_modules_together_with_its_ratio():
    m = _scaled_stack()
    key = (m.body[0], m.body[1])
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.1, pruning_ratio_dict={key: 0.4})
    plans = {g.root_name: g for g in (pr.proposal(g) for g in pr.DG.get_all_groups())}
    assert plans["body.0"].scope == plans["body.1"].scope == "user:body.0,body.1"
    assert plans["body.0"].pruning_ratio == pytest.approx(0.4)
    assert plans["first"].scope == "local:first" and plans["first"].pruning_ratio == pytest.approx(0.1)
    pr.step()
    assert m.body[0].out_channels + m.body[1].out_channels == 12  # 40% of 20, ranked together
    assert m.body[0].out_channels < m.body[1].out_channels
    assert m.first.out_channels == 9 and m.body[2].out_channels == 9


def test_single_module_ratio_overrides_locally():
    m = ConvStack(width=10, depth=2)
    BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.2, pruning_ratio_dict={m.body[1]: 0.6},
               global_pruning=False).step()
    assert [m.first.out_channels, m.body[0].out_channels, m.body[1].out_channels] == [8, 8, 4]


def test_iterative_global_pruning_reaches_the_ratio_of_initial_channels():
    m = _scaled_stack()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, global_pruning=True, iterative_steps=2)
    pr.step()
    assert sum([m.first.out_channels] + [c.out_channels for c in m.body]) == 40 - 10
    pr.step()
    assert sum([m.first.out_channels] + [c.out_channels for c in m.body]) == 40 - 20


def test_container_key_in_pruning_ratio_dict_sets_every_layer_inside():
    import torch
    import torchvision

    import prune_explorer as pe

    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    p = pe.pruner.MagnitudePruner(m, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5, ignored_layers=[m.fc],
                                  pruning_ratio_dict={m.layer4: 0.2, m.layer4[1].conv1: 0.75})
    p.step()
    assert m.layer4[0].conv1.out_channels == int(512 * 0.8)  # the container's ratio
    assert m.layer4[1].conv1.out_channels == 512 - int(512 * 0.75)  # an explicit inner key wins
    assert m.layer3[0].conv1.out_channels == 128  # elsewhere the global ratio
