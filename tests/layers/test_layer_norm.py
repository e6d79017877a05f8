"""BatchNorm, SyncBatchNorm, InstanceNorm, GroupNorm, LayerNorm, RMSNorm, PReLU."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prune_explorer.layers as L
from prune_explorer.errors import PruningError

BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
IN = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def _x(c, d, device):
    return torch.randn(2, c, *([4] * d), device=device)


def _randomize_stats(m):
    with torch.no_grad():
        if getattr(m, "running_mean", None) is not None:
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
        if getattr(m, "weight", None) is not None:
            m.weight.uniform_(0.5, 2)
        if getattr(m, "bias", None) is not None:
            m.bias.uniform_(-1, 1)
    return m


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("fn", ["prune_batchnorm_out_channels", "prune_batchnorm_in_channels"])
def test_batchnorm(d, fn, device):
    bn = _randomize_stats(BN[d](6).to(device)).eval()
    ref = copy.deepcopy(bn)
    getattr(L, fn)(bn, [0, 4])
    keep = [1, 2, 3, 5]
    assert bn.num_features == 4 and repr(bn).startswith(f"BatchNorm{d}d(4,")
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(bn, name), getattr(ref, name)[keep]), name
    assert torch.equal(bn.num_batches_tracked, ref.num_batches_tracked)
    x = _x(6, d, device)
    torch.testing.assert_close(bn(x[:, keep]), ref(x)[:, keep])
    bn.train()
    bn(x[:, keep])


def test_batchnorm_without_bias_or_stats(device):
    bn = nn.BatchNorm2d(4, affine=False, track_running_stats=False).to(device)
    L.prune_batchnorm_out_channels(bn, [1])
    assert bn.num_features == 3 and bn.weight is None and bn.running_mean is None
    bn(_x(3, 2, device))
    try:
        bn2 = nn.BatchNorm2d(4, bias=False)
    except TypeError:  # older torch without the bias flag
        return
    L.prune_batchnorm_out_channels(bn2, [1])
    assert bn2.bias is None and bn2.weight.shape == (3,)
    bn2(_x(3, 2, "cpu"))


def test_syncbatchnorm(device):
    bn = _randomize_stats(nn.SyncBatchNorm(5).to(device)).eval()
    ref = copy.deepcopy(bn)
    assert L.DEFAULT_REGISTRY.get(bn) is L.BATCHNORM_PRUNER
    L.prune_batchnorm_out_channels(bn, [2])
    keep = [0, 1, 3, 4]
    assert bn.num_features == 4
    assert torch.equal(bn.running_var, ref.running_var[keep])
    x = _x(5, 2, device)
    torch.testing.assert_close(bn(x[:, keep]), ref(x)[:, keep])


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("affine,stats", [(False, False), (True, False), (False, True), (True, True)])
def test_instancenorm(d, affine, stats, device):
    m = _randomize_stats(IN[d](6, affine=affine, track_running_stats=stats).to(device)).eval()
    ref = copy.deepcopy(m)
    L.prune_instancenorm_in_channels(m, [5, 0])
    keep = [1, 2, 3, 4]
    assert m.num_features == 4 and repr(m).startswith(f"InstanceNorm{d}d(4,")
    for name in ("weight", "bias", "running_mean", "running_var"):
        old = getattr(ref, name)
        assert (getattr(m, name) is None) == (old is None)
        if old is not None:
            assert torch.equal(getattr(m, name), old[keep])
    x = _x(6, d, device)
    torch.testing.assert_close(m(x[:, keep]), ref(x)[:, keep])


def test_groupnorm(device):
    gn = _randomize_stats(nn.GroupNorm(3, 9).to(device))
    ref = copy.deepcopy(gn)
    idxs = [0, 4, 8]  # one per group: groups keep their members
    L.prune_groupnorm_out_channels(gn, idxs)
    keep = [1, 2, 3, 5, 6, 7]
    assert (gn.num_groups, gn.num_channels) == (3, 6) and "GroupNorm(3, 6" in repr(gn)
    assert torch.equal(gn.weight, ref.weight[keep]) and torch.equal(gn.bias, ref.bias[keep])
    x = _x(9, 2, device)
    assert gn(x[:, keep]).shape == (2, 6, 4, 4)  # group statistics change: no exact equivalence
    assert L.GROUPNORM_PRUNER.channel_multiple(gn, "out") == 3


def test_groupnorm_divisibility(snapshot):
    gn = nn.GroupNorm(4, 8)
    snap = snapshot(gn)
    with pytest.raises(PruningError, match=r"GroupNorm.*multiple of 4") as ei:
        L.prune_groupnorm_out_channels(gn, [0, 1])
    assert "remove a multiple of 4" in str(ei.value)
    snap.assert_unchanged()
    with pytest.raises(PruningError, match="would leave none"):
        L.prune_groupnorm_in_channels(gn, list(range(8)))
    snap.assert_unchanged()
    L.prune_groupnorm_in_channels(gn, [0, 1, 2, 3])  # uneven across groups: allowed, only divisibility
    assert gn.num_channels == 4
    gn(torch.randn(2, 4, 3))


def test_groupnorm_no_affine():
    gn = nn.GroupNorm(2, 4, affine=False)
    L.prune_groupnorm_out_channels(gn, [0, 3])
    assert gn.num_channels == 2 and gn.weight is None
    gn(torch.randn(1, 2, 3))


@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, False)])
def test_layernorm(affine, bias, device):
    kwargs = {"elementwise_affine": affine}
    if not bias:
        kwargs["bias"] = False
    ln = _randomize_stats(nn.LayerNorm(6, **kwargs).to(device))
    ref = copy.deepcopy(ln)
    L.prune_layernorm_out_channels(ln, [1, 2])
    keep = [0, 3, 4, 5]
    assert ln.normalized_shape == (4,) and repr(ln).startswith("LayerNorm((4,)")
    if affine:
        assert torch.equal(ln.weight, ref.weight[keep])
    else:
        assert ln.weight is None
    if affine and bias:
        assert torch.equal(ln.bias, ref.bias[keep])
    else:
        assert ln.bias is None
    x = torch.randn(2, 5, 4, device=device)
    assert ln(x).shape == (2, 5, 4)


def test_layernorm_multi_dim_prunes_last_dim(device):
    ln = _randomize_stats(nn.LayerNorm((3, 5)).to(device))
    ref = copy.deepcopy(ln)
    L.prune_layernorm_in_channels(ln, [4])
    assert ln.normalized_shape == (3, 4)
    assert torch.equal(ln.weight, ref.weight[:, :4]) and torch.equal(ln.bias, ref.bias[:, :4])
    assert L.LAYERNORM_PRUNER.get_out_channels(ln) == 4
    assert ln(torch.randn(2, 3, 4, device=device)).shape == (2, 3, 4)


@pytest.mark.skipif(not hasattr(nn, "RMSNorm"), reason="torch without nn.RMSNorm")
def test_rmsnorm(device):
    m = _randomize_stats(nn.RMSNorm(6).to(device))
    ref = copy.deepcopy(m)
    L.prune_layernorm_out_channels(m, [0])
    assert m.normalized_shape == (5,) and torch.equal(m.weight, ref.weight[1:])
    assert m(torch.randn(2, 5, device=device)).shape == (2, 5)


def test_layernorm_invalid(snapshot):
    ln = nn.LayerNorm(4)
    snap = snapshot(ln)
    with pytest.raises(PruningError, match=r"LayerNorm.*out of range"):
        L.prune_layernorm_out_channels(ln, [4])
    snap.assert_unchanged()


def test_prelu(device):
    act = nn.PReLU(5).to(device)
    with torch.no_grad():
        act.weight.copy_(torch.arange(5.0))
    ref = copy.deepcopy(act)
    L.prune_prelu_out_channels(act, [1, 3])
    assert act.num_parameters == 3 and "num_parameters=3" in repr(act)
    assert torch.equal(act.weight, ref.weight[[0, 2, 4]])
    x = torch.randn(2, 5, 3, device=device)
    torch.testing.assert_close(act(x[:, [0, 2, 4]]), ref(x)[:, [0, 2, 4]])


def test_prelu_single_parameter_is_a_noop(snapshot):
    act = nn.PReLU()
    snap = snapshot(act)
    assert L.PRELU_PRUNER.get_out_channels(act) is None
    assert L.prune_prelu_out_channels(act, [3, 7]) is act
    assert L.prune_prelu_in_channels(act, [100]) is act
    snap.assert_unchanged()
    with pytest.raises(PruningError, match="duplicates"):
        L.prune_prelu_out_channels(act, [1, 1])


@pytest.mark.parametrize("factory,fn", [
    (lambda: nn.BatchNorm2d(3), "prune_batchnorm_out_channels"),
    (lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True), "prune_instancenorm_out_channels"),
    (lambda: nn.GroupNorm(1, 3), "prune_groupnorm_out_channels"),
    (lambda: nn.LayerNorm(3), "prune_layernorm_out_channels"),
    (lambda: nn.PReLU(3), "prune_prelu_out_channels"),
])
@pytest.mark.parametrize("idxs,pat", [([3], "out of range"), ([1, 1], "duplicates"), ([0, 1, 2], "leave none")])
def test_norm_invalid_leaves_layer_unchanged(factory, fn, idxs, pat, snapshot):
    m = factory()
    snap = snapshot(m)
    with pytest.raises(PruningError, match=pat) as ei:
        getattr(L, fn)(m, idxs)
    assert type(m).__name__ in str(ei.value)
    snap.assert_unchanged()


def test_coupled_flags():
    for m, p in [(nn.BatchNorm1d(2), L.BATCHNORM_PRUNER), (nn.GroupNorm(1, 2), L.GROUPNORM_PRUNER),
                 (nn.LayerNorm(2), L.LAYERNORM_PRUNER), (nn.PReLU(2), L.PRELU_PRUNER),
                 (nn.InstanceNorm1d(2), L.INSTANCENORM_PRUNER)]:
        assert p.in_out_coupled(m)
        assert p.get_in_channels(m) == p.get_out_channels(m) == 2
        assert p.coupled_indices(m, [1], "out") == [1]
