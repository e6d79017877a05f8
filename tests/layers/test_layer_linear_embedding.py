"""Linear and Embedding / EmbeddingBag."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prune_explorer.layers as L
from prune_explorer.errors import PruningError


@pytest.mark.parametrize("bias", [True, False])
def test_linear_out(bias, device):
    fc = nn.Linear(5, 6, bias=bias).to(device)
    ref = copy.deepcopy(fc)
    L.prune_linear_out_channels(fc, [5, 2])
    keep = [0, 1, 3, 4]
    assert (fc.in_features, fc.out_features) == (5, 4)
    assert repr(fc) == f"Linear(in_features=5, out_features=4, bias={bias})"
    assert torch.equal(fc.weight, ref.weight[keep])
    if bias:
        assert torch.equal(fc.bias, ref.bias[keep])
    x = torch.randn(3, 5, device=device)
    torch.testing.assert_close(fc(x), ref(x)[:, keep])


def test_linear_in(device):
    fc = nn.Linear(5, 6).to(device)
    ref = copy.deepcopy(fc)
    L.prune_linear_in_channels(fc, [0, 3])
    keep = [1, 2, 4]
    assert (fc.in_features, fc.out_features) == (3, 6)
    assert torch.equal(fc.weight, ref.weight[:, keep])
    assert torch.equal(fc.bias, ref.bias)
    x = torch.randn(3, 5, device=device)
    x0 = x.clone()
    x0[:, [0, 3]] = 0
    torch.testing.assert_close(fc(x[:, keep]), ref(x0))


def test_linear_subclass_and_invalid(snapshot):
    fc = nn.modules.linear.NonDynamicallyQuantizableLinear(4, 4)
    assert L.DEFAULT_REGISTRY.get(fc) is L.LINEAR_PRUNER
    snap = snapshot(fc)
    for idxs, pat in [([4], "out of range"), ([0, 0], "duplicates"), (list(range(4)), "would leave none"),
                      ([True], "bool")]:
        with pytest.raises(PruningError, match=pat) as ei:
            L.prune_linear_in_channels(fc, idxs)
        assert "NonDynamicallyQuantizableLinear" in str(ei.value)
        snap.assert_unchanged()


@pytest.mark.parametrize("cls", [nn.Embedding, nn.EmbeddingBag])
def test_embedding_out(cls, device):
    emb = cls(10, 6).to(device)
    ref = copy.deepcopy(emb)
    L.prune_embedding_out_channels(emb, [1, 4])
    keep = [0, 2, 3, 5]
    assert emb.embedding_dim == 4 and emb.num_embeddings == 10
    assert "10, 4" in repr(emb)
    assert torch.equal(emb.weight, ref.weight[:, keep])
    tokens = torch.tensor([[1, 2, 9]], device=device)
    torch.testing.assert_close(emb(tokens), ref(tokens)[..., keep])


def test_embedding_in_is_not_prunable(snapshot):
    emb = nn.Embedding(10, 6, padding_idx=0)
    snap = snapshot(emb)
    assert L.EMBEDDING_PRUNER.get_in_channels(emb) is None
    with pytest.raises(PruningError, match=r"Embedding.*token ids.*prune_embedding_out_channels"):
        L.prune_embedding_in_channels(emb, [3])
    with pytest.raises(PruningError, match=r"Embedding.*no prunable input channels"):
        L.EMBEDDING_PRUNER.check(emb, [3], "in")
    with pytest.raises(PruningError, match="Embedding"):
        L.prune_embedding_out_channels(emb, [6])
    snap.assert_unchanged()
