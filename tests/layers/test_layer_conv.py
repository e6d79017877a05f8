"""Convolutions: dense, grouped, depthwise (with channel multiplier), transposed; Conv1d/2d/3d."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prune_explorer.layers as L
from prune_explorer.errors import PruningError

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _x(n, c, d, device, size=6):
    return torch.randn(n, c, *([size] * d), device=device)


def _keep(n, idxs):
    return [i for i in range(n) if i not in set(idxs)]


def _zero_channels(x, idxs):
    x = x.clone()
    x[:, idxs] = 0
    return x


# ---------------------------------------------------------------------------------------------- dense


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_out(d, transposed, bias, device):
    cls = (CONVT if transposed else CONV)[d]
    conv = cls(3, 8, 3, bias=bias).to(device)
    ref = copy.deepcopy(conv)
    idxs = [6, 0, 3]
    out = L.prune_conv_out_channels(conv, idxs)
    assert out is conv
    keep = _keep(8, idxs)
    assert conv.out_channels == 5 and conv.in_channels == 3
    assert f"{cls.__name__}(3, 5," in repr(conv)
    wdim = 1 if transposed else 0
    assert torch.equal(conv.weight, ref.weight.index_select(wdim, torch.tensor(keep, device=device)))
    if bias:
        assert torch.equal(conv.bias, ref.bias[keep])
    else:
        assert conv.bias is None
    assert isinstance(conv.weight, nn.Parameter) and conv.weight.device.type == device.type
    x = _x(2, 3, d, device)
    torch.testing.assert_close(conv(x), ref(x)[:, keep])


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("transposed", [False, True])
def test_dense_in(d, transposed, device):
    cls = (CONVT if transposed else CONV)[d]
    conv = cls(6, 4, 3).to(device)
    ref = copy.deepcopy(conv)
    idxs = [1, 5]
    L.prune_conv_in_channels(conv, idxs)
    keep = _keep(6, idxs)
    assert conv.in_channels == 4 and conv.out_channels == 4
    wdim = 0 if transposed else 1
    assert torch.equal(conv.weight, ref.weight.index_select(wdim, torch.tensor(keep, device=device)))
    assert torch.equal(conv.bias, ref.bias)
    x = _x(2, 6, d, device)
    torch.testing.assert_close(conv(x[:, keep]), ref(_zero_channels(x, idxs)))


def test_convtranspose_aliases_are_the_conv_pruner():
    assert L.prune_convtranspose_out_channels == L.prune_conv_out_channels
    assert L.prune_convtranspose_in_channels == L.prune_conv_in_channels
    conv = nn.ConvTranspose2d(4, 6, 2, stride=2, output_padding=0)
    L.prune_convtranspose_out_channels(conv, [0])
    L.prune_convtranspose_in_channels(conv, [3])
    assert tuple(conv.weight.shape) == (3, 5, 2, 2)
    assert conv(torch.randn(1, 3, 4, 4)).shape == (1, 5, 8, 8)


# ---------------------------------------------------------------------------------------------- depthwise


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("fn_name", ["prune_depthwise_conv_out_channels", "prune_depthwise_conv_in_channels",
                                     "prune_conv_out_channels", "prune_conv_in_channels"])
def test_depthwise_multiplier_1_prunes_both_sides(transposed, fn_name, device):
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    conv = cls(6, 6, 3, groups=6, padding=1).to(device)
    ref = copy.deepcopy(conv)
    idxs = [0, 4]
    getattr(L, fn_name)(conv, idxs)
    keep = _keep(6, idxs)
    assert (conv.in_channels, conv.out_channels, conv.groups) == (4, 4, 4)
    assert "groups=4" in repr(conv)
    assert torch.equal(conv.weight, ref.weight[keep])
    assert torch.equal(conv.bias, ref.bias[keep])
    x = _x(1, 6, 2, device)
    torch.testing.assert_close(conv(x[:, keep]), ref(x)[:, keep])


@pytest.mark.parametrize("transposed", [False, True])
def test_depthwise_multiplier_in(transposed, device):
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    conv = cls(4, 12, 3, groups=4).to(device)  # multiplier 3: input c -> outputs 3c, 3c+1, 3c+2
    ref = copy.deepcopy(conv)
    L.prune_depthwise_conv_in_channels(conv, [1])
    keep_in, keep_out = [0, 2, 3], [0, 1, 2, 6, 7, 8, 9, 10, 11]
    assert (conv.in_channels, conv.out_channels, conv.groups) == (3, 9, 3)
    assert torch.equal(conv.weight, ref.weight[keep_in if transposed else keep_out])
    assert torch.equal(conv.bias, ref.bias[keep_out])
    x = _x(1, 4, 2, device)
    torch.testing.assert_close(conv(x[:, keep_in]), ref(x)[:, keep_out])


def test_depthwise_multiplier_out_whole_blocks(device):
    conv = nn.Conv1d(3, 6, 3, groups=3).to(device)
    ref = copy.deepcopy(conv)
    L.prune_conv_out_channels(conv, [5, 4])  # the block of input channel 2
    assert (conv.in_channels, conv.out_channels, conv.groups) == (2, 4, 2)
    x = _x(2, 3, 1, device)
    torch.testing.assert_close(conv(x[:, [0, 1]]), ref(x)[:, :4])


def test_depthwise_multiplier_partial_block_is_an_error(snapshot):
    conv = nn.Conv2d(3, 6, 3, groups=3)
    snap = snapshot(conv)
    with pytest.raises(PruningError, match=r"Conv2d.*multiplier 2.*whole blocks") as ei:
        L.prune_depthwise_conv_out_channels(conv, [2, 5])  # same count, but not whole blocks
    assert "prune_depthwise_conv_in_channels" in str(ei.value)
    snap.assert_unchanged()
    with pytest.raises(PruningError, match="multiple of 2"):
        L.prune_depthwise_conv_out_channels(conv, [2])
    snap.assert_unchanged()


def test_depthwise_pruner_rejects_non_depthwise(snapshot):
    conv = nn.Conv2d(4, 8, 3)
    snap = snapshot(conv)
    with pytest.raises(PruningError, match="not a depthwise"):
        L.prune_depthwise_conv_out_channels(conv, [0])
    snap.assert_unchanged()


def test_depthwise_helpers():
    dw = nn.Conv2d(3, 6, 3, groups=3)
    assert L.conv_kind(dw) == "depthwise"
    assert L.DEFAULT_REGISTRY.get(dw) is L.DEPTHWISE_CONV_PRUNER
    p = L.DEPTHWISE_CONV_PRUNER
    assert p.in_out_coupled(dw)
    assert p.channel_multiple(dw, "out") == 2 and p.channel_multiple(dw, "in") == 1
    assert p.coupled_indices(dw, [0, 2], "in") == [0, 1, 4, 5]
    assert p.coupled_indices(dw, [5, 4], "out") == [2]
    with pytest.raises(PruningError):
        L.CONV_PRUNER.coupled_indices(nn.Conv2d(3, 3, 1), [0], "in")


# ---------------------------------------------------------------------------------------------- grouped


@pytest.mark.parametrize("transposed", [False, True])
def test_grouped_in_same_offsets(transposed, device):
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    conv = cls(8, 6, 3, groups=2).to(device)  # 4 input channels per group
    ref = copy.deepcopy(conv)
    idxs = [1, 3, 5, 7]  # offsets {1, 3} in both groups
    L.prune_conv_in_channels(conv, idxs)
    keep = _keep(8, idxs)
    assert (conv.in_channels, conv.out_channels, conv.groups) == (4, 6, 2)
    if transposed:
        assert torch.equal(conv.weight, ref.weight[keep])
    else:
        assert torch.equal(conv.weight, ref.weight[:, [0, 2]])
    x = _x(1, 8, 2, device)
    torch.testing.assert_close(conv(x[:, keep]), ref(_zero_channels(x, idxs)))


@pytest.mark.parametrize("transposed", [False, True])
def test_grouped_out_equal_counts_different_offsets(transposed, device):
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    conv = cls(6, 9, 3, groups=3, bias=True).to(device)  # 2 inputs and 3 outputs per group
    ref = copy.deepcopy(conv)
    idxs = [0, 4, 8]  # offset 0, 1, 2 of groups 0, 1, 2
    L.prune_conv_out_channels(conv, idxs)
    keep = _keep(9, idxs)
    assert conv.out_channels == 6 and conv.groups == 3
    assert torch.equal(conv.bias, ref.bias[keep])
    x = _x(1, conv.in_channels, 2, device)
    torch.testing.assert_close(conv(x), ref(x)[:, keep])


def test_grouped_in_mismatched_offsets_is_an_error(snapshot):
    conv = nn.Conv2d(8, 6, 3, groups=2)
    snap = snapshot(conv)
    with pytest.raises(PruningError, match=r"Conv2d.*same within-group offsets") as ei:
        L.prune_conv_in_channels(conv, [1, 6])
    assert "groups=2" in str(ei.value)
    snap.assert_unchanged()
    with pytest.raises(PruningError, match="multiple of 2"):
        L.prune_conv_in_channels(conv, [1])
    snap.assert_unchanged()


def test_grouped_out_unequal_counts_is_an_error(snapshot):
    conv = nn.Conv1d(4, 8, 3, groups=2)
    snap = snapshot(conv)
    with pytest.raises(PruningError, match=r"Conv1d.*same number of output channels.*\[2, 0\]"):
        L.prune_conv_out_channels(conv, [0, 1])
    snap.assert_unchanged()


def test_grouped_channel_multiple():
    conv = nn.Conv2d(8, 12, 1, groups=4)
    assert L.conv_kind(conv) == "grouped"
    assert L.CONV_PRUNER.channel_multiple(conv, "in") == 4
    assert L.CONV_PRUNER.channel_multiple(conv, "out") == 4
    assert L.CONV_PRUNER.get_out_channel_groups(conv) == 4
    assert not L.CONV_PRUNER.in_out_coupled(conv)
    assert L.DEFAULT_REGISTRY.get(conv) is L.CONV_PRUNER


# ---------------------------------------------------------------------------------------------- generic


def test_invalid_indices_leave_conv_unchanged(snapshot):
    conv = nn.Conv2d(3, 4, 3)
    conv.weight.grad = torch.ones_like(conv.weight)
    snap = snapshot(conv)
    for idxs, pat in [([4], "out of range"), ([-1], "out of range"), ([1, 1], "duplicates"),
                      ([0, 1, 2, 3], "would leave none"), ([0.5], "ints"), ("0", "sequence")]:
        with pytest.raises(PruningError, match=pat) as ei:
            L.prune_conv_out_channels(conv, idxs)
        assert "Conv2d" in str(ei.value)
        snap.assert_unchanged()
    with pytest.raises(PruningError, match="input channels"):
        L.prune_conv_in_channels(conv, [3])
    snap.assert_unchanged()


def test_grad_dtype_requires_grad_are_kept(device):
    conv = nn.Conv2d(3, 4, 3).to(device=device, dtype=torch.float64)
    conv.weight.grad = torch.randn_like(conv.weight)
    conv.bias.requires_grad_(False)
    g = conv.weight.grad.clone()
    old_weight = conv.weight
    old_values = old_weight.detach().clone()
    L.prune_conv_out_channels(conv, [1])
    assert conv.weight is not old_weight
    assert torch.equal(old_weight, old_values)  # never modified in place
    assert conv.weight.dtype == torch.float64 and conv.weight.device.type == device.type
    assert conv.weight.requires_grad and not conv.bias.requires_grad
    assert conv.weight.is_leaf
    assert torch.equal(conv.weight.grad, g[[0, 2, 3]])
    assert conv.bias.grad is None
    conv(torch.randn(1, 3, 5, 5, device=device, dtype=torch.float64)).sum().backward()


def test_empty_idxs_is_a_noop(snapshot):
    conv = nn.Conv2d(3, 4, 3)
    snap = snapshot(conv)
    assert L.prune_conv_out_channels(conv, []) is conv
    assert L.prune_conv_in_channels(conv, torch.tensor([], dtype=torch.long)) is conv
    snap.assert_unchanged()


def test_repeated_pruning_and_tensor_indices():
    conv = nn.Conv2d(8, 8, 3)
    L.prune_conv_out_channels(conv, torch.tensor([7, 0]))
    L.prune_conv_out_channels(conv, (5,))
    L.prune_conv_in_channels(conv, range(4))
    assert tuple(conv.weight.shape) == (5, 4, 3, 3)
    assert conv(torch.randn(1, 4, 5, 5)).shape == (1, 5, 3, 3)


def test_channels_last_weights_stay_channels_last(device):
    conv = nn.Conv2d(4, 6, 3).to(device).to(memory_format=torch.channels_last)
    conv.weight.grad = torch.randn_like(conv.weight)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    L.prune_conv_out_channels(conv, [0])
    L.prune_conv_in_channels(conv, [1])
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.grad.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 6, 6, device=device).to(memory_format=torch.channels_last)
    assert conv(x).shape == (1, 5, 4, 4)


@pytest.mark.parametrize("bias", [True, False])
def test_conv_parts_own_the_bias_on_the_output_side_only(bias):
    """A conv's output channels (and a depthwise conv's channels) own their weight rows and bias entries; its input
    channels own weight columns only: the rows each part selects are the layer's own entries."""
    import prune_explorer as pe
    from prune_explorer.importance.members import raw_channel_parts

    m = nn.Sequential(nn.Conv2d(4, 6, 3, bias=bias), nn.Conv2d(6, 6, 3, groups=6, bias=bias),
                      nn.Conv2d(6, 5, 1, bias=bias))
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 4, 9, 9))
    idx = [1, 4]
    group = dg.get_pruning_group(m[0], pe.prune_conv_out_channels, idx)
    seen = 0
    for it in group.items:
        layer, space = it.dep.space.owner, it.dep.space
        if not isinstance(layer, nn.Conv2d):
            continue
        parts = raw_channel_parts(it.dep, it.idxs)
        w = layer.weight.detach()
        if space.side == "in" and not space.passthrough:  # m[2]'s inputs: weight columns, no bias
            assert [p.is_bias for p in parts] == [False]
            assert torch.equal(parts[0].select(w), w[:, idx].transpose(0, 1).reshape(2, -1))
        else:  # m[0]'s outputs, m[1]'s channels (depthwise)
            assert [p.is_bias for p in parts] == ([False, True] if bias else [False])
            assert torch.equal(parts[0].select(w), w[idx].reshape(2, -1))
            if bias:
                b = layer.bias.detach()
                assert torch.equal(parts[1].select(b), b[idx].reshape(2, 1))
        seen += 1
    assert seen == 3
