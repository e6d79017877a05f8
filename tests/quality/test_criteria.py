"""Group-aware calibrated criteria (Wanda-sp, FLAP's fluctuation): scores match a direct computation."""

import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.calibration import Calibration


def _setup():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))
    data = [torch.randn(16, 6) for _ in range(3)]
    dg = pe.DependencyGraph().build_dependency(m, data[0])
    x = torch.cat([torch.relu(m[0](d)) for d in data]).detach()
    return m, data, dg, x


def test_wanda_matches_direct_computation():
    m, data, dg, x = _setup()
    imp = pe.importance.WandaImportance(normalizer=None)
    imp.calibrate(m, Calibration(data, progress=False))
    group = dg.get_pruning_group(m[0], pe.prune_linear_out_channels, list(range(8)))
    direct = m[2].weight.detach().abs().sum(0) * x.pow(2).mean(0).sqrt()
    assert torch.allclose(imp(group), direct, rtol=1e-5)


def test_fluctuation_matches_direct_computation_and_normalises():
    m, data, dg, x = _setup()
    imp = pe.importance.FluctuationImportance(normalizer=None)
    imp.calibrate(m, Calibration(data, progress=False))
    group = dg.get_pruning_group(m[0], pe.prune_linear_out_channels, list(range(8)))
    direct = x.var(0, unbiased=False) * m[2].weight.detach().pow(2).sum(0)
    assert torch.allclose(imp(group), direct, rtol=1e-4)
    normed = pe.importance.FluctuationImportance(normalizer="max")
    normed.calibrate(m, Calibration(data, progress=False))
    assert torch.allclose(normed(group), direct / direct.max(), rtol=1e-4)


def test_group_reduction_over_several_consumers():
    torch.manual_seed(0)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 3), nn.Linear(6, 3)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.b(h) + self.c(h)

    m = Two()
    data = [torch.randn(8, 4) for _ in range(2)]
    imp = pe.importance.WandaImportance(group_reduction="sum", normalizer=None)
    imp.calibrate(m, Calibration(data, progress=False))
    dg = pe.DependencyGraph().build_dependency(m, data[0])
    group = dg.get_pruning_group(m.a, pe.prune_linear_out_channels, list(range(6)))
    rms = torch.cat([torch.relu(m.a(d)) for d in data]).detach().pow(2).mean(0).sqrt()
    direct = (m.b.weight.detach().abs().sum(0) + m.c.weight.detach().abs().sum(0)) * rms
    assert torch.allclose(imp(group), direct, rtol=1e-5)


def test_scores_follow_channels_after_pruning():
    m, data, dg, x = _setup()
    imp = pe.importance.WandaImportance(normalizer=None)
    imp.calibrate(m, Calibration(data, progress=False))
    full = imp(dg.get_pruning_group(m[0], pe.prune_linear_out_channels, list(range(8))))
    dg.get_pruning_group(m[2], pe.prune_linear_out_channels, [1]).prune()  # the consumer loses a row
    dg.get_pruning_group(m[0], pe.prune_linear_out_channels, [0, 2]).prune()
    after = imp(dg.get_pruning_group(m[0], pe.prune_linear_out_channels, list(range(6))))
    kept = [1, 3, 4, 5, 6, 7]
    w = m[2].weight.detach().abs().sum(0)
    assert torch.allclose(after, w * x[:, kept].pow(2).mean(0).sqrt(), rtol=1e-5)
    assert after.shape == (6,) and full.shape == (8,)
