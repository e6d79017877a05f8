"""Calibration data as one pass with hooks: statistics match a direct computation, every data-driven criterion is
fed by the same pass, bad input is refused clearly."""

import copy

import pytest
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.calibration import Calibration, InputStatistics, calibrate
from prune_explorer.errors import CalibrationError, ImportanceError


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))


def _data(n=3):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 6, generator=g) for _ in range(n)]


def test_input_statistics_match_direct_computation():
    m, data = _mlp(), _data()
    stats = InputStatistics(covariance=[m[2]])
    assert calibrate(m, Calibration(data, progress=False), [stats]) == 3
    x = torch.cat([torch.relu(m[0](d)) for d in data]).detach().double()
    assert torch.allclose(stats.mean(m[2]), x.mean(0))
    assert torch.allclose(stats.variance(m[2]), x.var(0, unbiased=False))
    assert torch.allclose(stats.moment_matrix(m[2]), x.T @ x / len(x))
    assert stats.moment_matrix(m[0]) is None  # covariance only where asked
    assert not stats._handles  # hooks removed after the pass


def test_conv_statistics_are_per_channel_over_positions():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    data = [torch.randn(2, 3, 6, 6) for _ in range(2)]
    stats = InputStatistics()
    calibrate(m, Calibration(data, progress=False), [stats])
    x = torch.cat([torch.relu(m[0](d)) for d in data]).detach().double()
    assert torch.allclose(stats.mean(m[2]), x.mean((0, 2, 3)))


def test_num_batches_labelled_batches_and_state_kept():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)).train()
    data = [(torch.randn(4, 6), torch.randint(0, 3, (4,))) for _ in range(5)]
    stats = InputStatistics()
    before = m[1].running_mean.clone()
    assert calibrate(m, Calibration(data, num_batches=2, progress=False), [stats]) == 2
    assert stats.stats.count(m[0], "in", "x") == 8  # 2 batches of 4 samples, the labels were not fed
    assert m.training and torch.equal(m[1].running_mean, before)


def test_one_pass_feeds_gradient_and_forward_collectors():
    m, data = _mlp(), [(x, torch.randint(0, 3, (4,))) for x in _data()]
    cal = Calibration(data, progress=False)
    taylor, obdc, act = pe.importance.TaylorImportance(), pe.importance.OBDCImportance(), \
        pe.importance.ActivationImportance()
    calibrate(m, cal, [taylor, obdc, act])
    dg = pe.DependencyGraph().build_dependency(m, data[0][0])
    group = dg.get_pruning_group(m[0], pe.prune_linear_out_channels, list(range(8)))
    for imp in (taylor, obdc, act):
        s = imp(group)
        assert s.shape == (8,) and torch.isfinite(s).all() and (s > 0).any()
    # Taylor's gradients are the summed gradients of the batches' cross-entropy
    ref = copy.deepcopy(m)
    for x, y in data:
        nn.functional.cross_entropy(ref(x), y).backward()
    assert torch.allclose(m[0].weight.grad, ref[0].weight.grad, atol=1e-6)


def test_hessian_calibrate_accumulates_per_batch():
    m, data = _mlp(), [(x, torch.randint(0, 3, (4,))) for x in _data()]
    h = pe.importance.HessianImportance()
    h.calibrate(m, Calibration(data, progress=False))
    ref = copy.deepcopy(m)
    acc = torch.zeros_like(m[0].weight)
    for x, y in data:
        ref.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        acc += ref[0].weight.grad.pow(2)
    dg = pe.DependencyGraph().build_dependency(m, data[0][0])
    h(dg.get_pruning_group(m[0], pe.prune_linear_out_channels, [0, 1]))
    assert torch.allclose(m[0].weight.grad, acc / 3, atol=1e-7)


def test_bad_calibration_input_is_refused():
    with pytest.raises(CalibrationError, match="iterable of batches"):
        Calibration(torch.randn(3, 6))
    with pytest.raises(CalibrationError, match="num_batches"):
        Calibration([torch.randn(3, 6)], num_batches=0)
    m = _mlp()
    with pytest.raises(CalibrationError, match="loss_fn"):
        pe.importance.TaylorImportance().calibrate(m, Calibration([torch.randn(2, 6)], progress=False))
    assert issubclass(CalibrationError, ImportanceError)
    with pytest.raises(ImportanceError, match="calibrate"):
        dg = pe.DependencyGraph().build_dependency(m, torch.randn(2, 6))
        pe.importance.WandaImportance()(dg.get_pruning_group(m[0], pe.prune_linear_out_channels, [0]))


def test_pruner_runs_the_calibration_pass():
    m, data = _mlp(), _data()
    imp = pe.importance.WandaImportance()
    pruner = pe.pruner.MagnitudePruner(m, data[0], imp, pruning_ratio=0.5,
                                       calibration=Calibration(data, progress=False))
    pruner.step()
    assert m[0].out_features == 4 and len(imp.stats) > 0
