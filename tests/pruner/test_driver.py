"""The pruning driver (``pruner.driver``): several decided cuts applied in one undo scope, rolled back whole on
failure, trials restored exactly, and its extension points (applier, after_apply hooks, group sources) used."""

import copy

import pytest
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.pruner.driver import KEEP, ROLLBACK, Cut, sequential_applier


def _net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                         nn.Conv2d(8, 4, 3))


@pytest.fixture()
def pruner():
    model = _net()
    return pe.pruner.BasePruner(model, torch.randn(1, 3, 12, 12), pe.importance.MagnitudeImportance(),
                                ignored_layers=[model[5]])


def _cuts(pruner, n=2):
    return [Cut(g, list(range(n))) for g in pruner.get_all_groups()]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_apply_prunes_every_cut_and_a_failure_rolls_back_all_of_them(pruner):
    model = pruner.model
    before = _state(model)
    pruner.DG.undo_depth = 4
    applied = pruner.driver.apply(_cuts(pruner), on_error=ROLLBACK)
    assert [r.root for r in applied.records] == ["0", "3"] and model[0].out_channels == 6
    for rec in reversed(applied.records):
        pruner.DG.undo(rec)
    assert model[0].out_channels == 8

    def fail():
        raise RuntimeError("verify says no")

    with pytest.raises(RuntimeError, match="verify says no"):
        pruner.driver.apply(_cuts(pruner), on_error=ROLLBACK, verify=fail)
    assert model[0].out_channels == 8 and model[3].out_channels == 8 and not pruner.DG.history
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_keep_leaves_what_was_pruned_before_the_failure(pruner):
    cuts = _cuts(pruner)

    def gen():
        yield cuts[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pruner.driver.apply(gen(), on_error=KEEP)
    assert pruner.model[0].out_channels == 6 and pruner.model[3].out_channels == 8


def test_trial_restores_the_model_exactly(pruner):
    before = _state(pruner.model)
    with pruner.driver.trial(_cuts(pruner, 4)) as applied:
        assert pruner.model[3].out_channels == 4 and len(applied.records) == 2
    assert pruner.model[3].out_channels == 8 and not pruner.DG.history
    assert all(torch.equal(before[k], v) for k, v in pruner.model.state_dict().items())


def test_extension_points_applier_hooks_and_group_sources(pruner):
    seen, hooked = [], []

    def batched(driver, cuts, pruned, refused=None):  # a strategy that takes every cut at once
        cuts = list(cuts)
        seen.append(len(cuts))
        sequential_applier(driver, cuts, pruned, refused)

    pruner.driver.applier = batched
    pruner.driver.after_apply.append(lambda driver, applied: hooked.append(len(applied.records)))
    pruner.driver.apply(_cuts(pruner))
    assert seen == [2] and hooked == [2]

    other = pe.pruner.BasePruner(copy.deepcopy(_net()), torch.randn(1, 3, 12, 12), pe.importance.MagnitudeImportance())
    n = len(list(other.get_all_groups()))
    other.driver.group_sources.append(lambda: list(other.graph_groups())[:1])
    assert len(list(other.get_all_groups())) == n + 1
