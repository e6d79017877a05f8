"""nn.MultiheadAttention along embed_dim."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prune_explorer.layers as L
from prune_explorer.errors import PruningError

E, H = 8, 2
IDXS = [0, 5]
KEEP = [1, 2, 3, 4, 6, 7]
KEEP3 = KEEP + [E + i for i in KEEP] + [2 * E + i for i in KEEP]


def _run(mha, n, kdim=None, vdim=None, device="cpu"):
    shape = (2, 5) if mha.batch_first else (5, 2)
    q = torch.randn(*shape, n, device=device)
    k = torch.randn(*shape, kdim or n, device=device)
    v = torch.randn(*shape, vdim or n, device=device)
    out, w = mha(q, k, v)
    assert out.shape == (*shape, n)
    mha.eval()
    with torch.no_grad():  # may take the fused fast path
        out2, _ = mha(q, k, v, need_weights=False)
    assert out2.shape == (*shape, n)
    mha.train()


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("add_bias_kv", [False, True])
@pytest.mark.parametrize("fn", ["prune_multihead_attention_out_channels", "prune_multihead_attention_in_channels"])
def test_mha_same_dims(batch_first, bias, add_bias_kv, fn, device):
    mha = nn.MultiheadAttention(E, H, bias=bias, add_bias_kv=add_bias_kv, batch_first=batch_first,
                                add_zero_attn=add_bias_kv).to(device)
    ref = copy.deepcopy(mha)
    assert getattr(L, fn)(mha, IDXS) is mha
    n = len(KEEP)
    assert (mha.embed_dim, mha.kdim, mha.vdim, mha.head_dim, mha.num_heads) == (n, n, n, n // H, H)
    assert mha._qkv_same_embed_dim
    assert torch.equal(mha.in_proj_weight, ref.in_proj_weight[KEEP3][:, KEEP])
    assert torch.equal(mha.out_proj.weight, ref.out_proj.weight[KEEP][:, KEEP])
    assert (mha.out_proj.in_features, mha.out_proj.out_features) == (n, n)
    assert f"in_features={n}, out_features={n}" in repr(mha)
    if bias:
        assert torch.equal(mha.in_proj_bias, ref.in_proj_bias[KEEP3])
        assert torch.equal(mha.out_proj.bias, ref.out_proj.bias[KEEP])
    else:
        assert mha.in_proj_bias is None and mha.out_proj.bias is None
    if add_bias_kv:
        assert torch.equal(mha.bias_k, ref.bias_k[..., KEEP])
        assert torch.equal(mha.bias_v, ref.bias_v[..., KEEP])
    _run(mha, n, device=device)


def test_mha_separate_kv_dims(device):
    mha = nn.MultiheadAttention(E, H, kdim=5, vdim=7).to(device)
    ref = copy.deepcopy(mha)
    L.prune_multihead_attention_out_channels(mha, IDXS)
    n = len(KEEP)
    assert (mha.embed_dim, mha.kdim, mha.vdim) == (n, 5, 7)
    assert not mha._qkv_same_embed_dim and mha.in_proj_weight is None
    assert torch.equal(mha.q_proj_weight, ref.q_proj_weight[KEEP][:, KEEP])
    assert torch.equal(mha.k_proj_weight, ref.k_proj_weight[KEEP])
    assert torch.equal(mha.v_proj_weight, ref.v_proj_weight[KEEP])
    assert tuple(mha.k_proj_weight.shape) == (n, 5) and tuple(mha.v_proj_weight.shape) == (n, 7)
    assert torch.equal(mha.in_proj_bias, ref.in_proj_bias[KEEP3])
    _run(mha, n, kdim=5, vdim=7, device=device)


def test_mha_kdim_equal_to_embed_dim(device):
    mha = nn.MultiheadAttention(E, H, kdim=E, vdim=3).to(device)
    ref = copy.deepcopy(mha)
    L.prune_multihead_attention_out_channels(mha, IDXS)
    n = len(KEEP)
    assert (mha.embed_dim, mha.kdim, mha.vdim) == (n, n, 3)
    assert torch.equal(mha.k_proj_weight, ref.k_proj_weight[KEEP][:, KEEP])
    assert torch.equal(mha.v_proj_weight, ref.v_proj_weight[KEEP])
    _run(mha, n, kdim=n, vdim=3, device=device)


def test_mha_divisibility_and_invalid(snapshot):
    mha = nn.MultiheadAttention(12, 3, add_bias_kv=True)
    snap = snapshot(mha)
    with pytest.raises(PruningError, match=r"MultiheadAttention\(embed_dim=12, num_heads=3.*multiple of 3") as ei:
        L.prune_multihead_attention_out_channels(mha, [0, 1])
    assert "remove a multiple of 3" in str(ei.value)
    snap.assert_unchanged()
    for idxs, pat in [([12, 0, 1], "out of range"), ([0, 0, 1], "duplicates"), (list(range(12)), "leave none")]:
        with pytest.raises(PruningError, match=pat):
            L.prune_multihead_attention_in_channels(mha, idxs)
        snap.assert_unchanged()


def test_mha_pruner_properties():
    mha = nn.MultiheadAttention(12, 4)
    p = L.DEFAULT_REGISTRY.get(mha)
    assert p is L.MHA_PRUNER
    # whole heads (3 channels) or one offset per head (4 channels) both keep it valid: no single multiple
    assert p.channel_multiple(mha, "out") == 1 and p.get_out_channel_groups(mha) == 4
    assert p.in_out_coupled(mha)
    assert p.get_out_channels(mha) == p.get_in_channels(mha) == 12
    # the out_proj inside is an ordinary Linear for the registry
    assert L.DEFAULT_REGISTRY.get(mha.out_proj) is L.LINEAR_PRUNER


def test_mha_whole_heads_and_head_dims():
    mha = nn.MultiheadAttention(12, 4, batch_first=True)  # 4 heads of 3
    x = torch.randn(2, 5, 12)
    L.prune_multihead_attention_out_channels(mha, [3, 4, 5])  # head 1
    assert (mha.num_heads, mha.head_dim, mha.embed_dim) == (3, 3, 9)
    L.prune_multihead_attention_out_channels(mha, [0, 3, 6])  # offset 0 of every head
    assert (mha.num_heads, mha.head_dim, mha.embed_dim) == (3, 2, 6)
    assert mha(x[..., :6], x[..., :6], x[..., :6])[0].shape == (2, 5, 6)


def test_mha_twice_and_grad(device):
    mha = nn.MultiheadAttention(8, 2).to(device)
    x = torch.randn(3, 1, 8, device=device)
    mha(x, x, x)[0].sum().backward()
    g = mha.in_proj_weight.grad.clone()
    L.prune_multihead_attention_out_channels(mha, IDXS)
    assert torch.equal(mha.in_proj_weight.grad, g[KEEP3][:, KEEP])
    L.prune_multihead_attention_out_channels(mha, [0, 1])
    assert mha.embed_dim == 4 and mha.head_dim == 2
    _run(mha, 4, device=device)
