"""When rounding a group's target down to its units removes nothing, the pruner takes the nearest feasible count.

A group whose units are larger than its target (a grouped conv reading it ties the same offset of every group into
one unit) used to be left alone with "no removal up to that count keeps the constraints"; Torch-Pruning's
rounding (fewer channels removed) still applies whenever it removes something.
"""

import numpy as np
import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.pruner import guards as G

from small_models import GroupedConvs


def _pruner(model, ratio):
    return pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 8, 8), pe.importance.MagnitudeImportance(p=2),
                                     pruning_ratio=ratio, ignored_layers=[model.out])


@pytest.mark.parametrize("ratio, removed", [(0.3, 4), (0.25, 4), (0.1, 0)])
def test_units_larger_than_the_target_take_the_nearest_feasible_count(ratio, removed):
    model = GroupedConvs(width=8, relu=True)  # conv1's channels: 2 units of 4 (offsets 0 and 1 of every group)
    pruner = _pruner(model, ratio)
    group = next(g for g in pruner.get_all_groups() if g.root_name == "conv1")
    assert sorted(len(u) for u in group.units) == [4, 4]
    target = 8 - int(8 * (1 - ratio))
    assert 0 < target < 4  # rounding down would remove nothing
    pruner.step()
    assert model.conv1.out_channels == 8 - removed
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 2, 8, 8)
    skipped = [s for s in pruner.skipped if s.root == "conv1"]
    if removed:
        assert skipped == []
    else:  # 1 channel asked for: removing none is nearer than removing 4; the reason says so
        assert [s.kind for s in skipped] == [G.CONSTRAINT]
        assert "nearest removal" in skipped[0].reason and "4 channels" in skipped[0].reason


def test_rounding_down_is_kept_when_it_removes_something():
    """round_to=8 on 100 channels at ratio 0.5: Torch-Pruning keeps 56 (rounds the kept count up), not 48."""
    ok, cum = G.feasible_prefixes([1] * 100, 100, 1, 8)
    assert G.chosen_prefix(ok, cum, 50) == 44
    model = nn.Sequential(nn.Conv2d(3, 100, 1), nn.ReLU(), nn.Conv2d(100, 2, 1))
    pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 4, 4), pe.importance.MagnitudeImportance(),
                              pruning_ratio=0.5, round_to=8, ignored_layers=[model[2]]).step()
    assert model[0].out_channels == 56


def test_chosen_prefix_prefers_the_larger_count_on_a_tie_and_respects_feasibility():
    ok = np.array([True, False, True])
    cum = np.array([0, 3, 6])
    assert G.chosen_prefix(ok, cum, 3) == 2  # 0 and 6 are both 3 away: remove
    assert G.chosen_prefix(ok, cum, 0) == 0
    ok = np.array([True, False, False])  # nothing but 0 is feasible (e.g. the guards)
    assert G.chosen_prefix(ok, cum, 3) == 0
