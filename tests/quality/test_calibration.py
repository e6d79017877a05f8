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


@pytest.mark.parametrize("conv,shape", [
    (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 7)),
    (lambda: nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2, dilation=1), (2, 4, 7, 9)),
    (lambda: nn.Conv2d(2, 3, (3, 2), padding="same", dilation=2), (1, 2, 6, 5)),
    (lambda: nn.Conv1d(2, 3, 5, padding=2, padding_mode="reflect"), (2, 2, 9)),
    (lambda: nn.Conv3d(2, 2, 3, padding=1, padding_mode="circular", stride=2), (1, 2, 5, 4, 6)),
])
def test_tap_sums_match_a_convolution_with_one_hot_kernels(conv, shape):
    """What each tap reads, summed over output positions, equals the convolution's output with a one-hot kernel
    at that tap (zero padding included); count: the output positions."""
    import torch.nn.functional as F
    from prune_explorer.calibration.conv_taps import tap_sums

    torch.manual_seed(0)
    layer = conv()
    x = torch.randn(shape)
    sums, count = tap_sums(layer, x)
    nd = x.dim() - 2
    fn = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    taps = sums.shape[1]
    for c in range(x.shape[1]):
        xc = x[:, c:c + 1].double()
        pad = layer.padding
        if layer.padding_mode != "zeros":
            xc = F.pad(xc, [p for p in reversed(layer.padding) for _ in range(2)], mode=layer.padding_mode)
            pad = 0
        for t in range(taps):
            w = torch.zeros(taps, dtype=torch.float64)
            w[t] = 1
            out = fn(xc, w.reshape(1, 1, *layer.kernel_size), stride=layer.stride, padding=pad, dilation=layer.dilation)
            assert torch.allclose(sums[c, t], out.sum())
    assert count == out.numel()


def test_row_statistics_follow_pruned_channels():
    """Per-channel rows (a convolution's tap means) stay attached to their channels while the layer is pruned."""
    from prune_explorer.calibration import InputStatistics

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1))
    stats = InputStatistics(taps=True)
    stats.calibrate(m, Calibration([torch.randn(4, 2, 5, 5)], progress=False))
    full = stats.tap_means(m[2]).clone()
    assert full.shape == (6, 9)
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 2, 5, 5))
    group = dg.get_pruning_group(m[0], pe.prune_conv_out_channels, [1, 4])
    for item in group.items:
        stats.stats.anchor_space(item.dep.space)
    group.prune()
    assert torch.equal(stats.tap_means(m[2]), full[[0, 2, 3, 5]])
