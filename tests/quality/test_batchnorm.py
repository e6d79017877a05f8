"""BatchNorm re-estimation (opt-in): the running statistics become the calibration data's, nothing else changes,
undo restores them exactly, a failed pass leaves the model as it was."""

import copy

import pytest
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.calibration import Calibration, reestimate_batchnorm
from prune_explorer.errors import CalibrationError


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                      nn.Flatten(), nn.Linear(8 * 4 * 4, 6), nn.BatchNorm1d(6))
    with torch.no_grad():  # stale statistics, as a pruned model has
        m[1].running_mean.fill_(3.0)
        m[1].running_var.fill_(9.0)
    return m.eval()


def test_statistics_become_the_calibration_data_s_and_undo_restores_them():
    m = _model()
    data = [torch.randn(16, 3, 4, 4) * 2 + 1 for _ in range(3)]
    weights = {k: v.clone() for k, v in m.state_dict().items() if "running" not in k and "num_batches" not in k}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    undo = reestimate_batchnorm(m, Calibration(data, progress=False))
    assert len(undo) == 2 and not m.training and all(not c.training for c in m.modules())
    assert m[1].momentum == 0.1  # restored
    with torch.no_grad():  # the mean over batches of each batch's mean / unbiased variance
        z = [m[0](x) for x in data]
    mean = torch.stack([a.mean((0, 2, 3)) for a in z]).mean(0)
    var = torch.stack([a.transpose(0, 1).reshape(8, -1).var(1) for a in z]).mean(0)
    assert torch.allclose(m[1].running_mean, mean, atol=1e-5)
    assert torch.allclose(m[1].running_var, var, atol=1e-4)
    assert all(torch.equal(m.state_dict()[k], v) for k, v in weights.items())  # no weight touched
    undo()
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())


def test_reestimation_repairs_the_magnitude_pruned_digits_cnn():
    """On the trained digits CNN (benchmarks/quality_models.py), magnitude pruning at half the MACs breaks the
    BatchNorm statistics; re-estimating them on 256 training images restores most of the test accuracy."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks"))
    import quality_models as qm

    xtr, _, xte, yte = qm.digits_data()
    m = qm.load_digits_cnn()
    pe.pruner.MagnitudePruner(m, xtr[:1], pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.3).step()
    stale = qm.accuracy(m, xte, yte)
    undo = reestimate_batchnorm(m, Calibration([xtr[i:i + 64] for i in range(0, 256, 64)], progress=False))
    assert len(undo) == 10  # stem, down, two per residual block
    assert qm.accuracy(m, xte, yte) > stale + 30
    undo()
    assert qm.accuracy(m, xte, yte) == stale


def test_failures_leave_the_model_unchanged():
    m = _model()
    before = copy.deepcopy(m.state_dict())

    def bad():
        yield torch.randn(4, 3, 4, 4)
        yield torch.randn(4, 5, 4, 4)  # wrong channel count: the pass fails on the second batch

    with pytest.raises(RuntimeError):
        reestimate_batchnorm(m, Calibration(bad, progress=False))
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())
    assert m[1].momentum == 0.1 and not m.training
    with pytest.raises(CalibrationError, match="no batch"):
        reestimate_batchnorm(m, Calibration([], progress=False))
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(CalibrationError, match="no BatchNorm"):
        reestimate_batchnorm(nn.Sequential(nn.Linear(3, 3)), Calibration([torch.randn(2, 3)], progress=False))
