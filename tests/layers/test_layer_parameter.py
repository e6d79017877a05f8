"""Loose parameters: ParameterPruner and replace_parameter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prune_explorer.layers as L
from prune_explorer.errors import PruningError


def test_prune_parameter_returns_new_parameter(device):
    p = nn.Parameter(torch.arange(24.0, device=device).reshape(2, 3, 4))
    before = p.detach().clone()
    new = L.prune_parameter_out_channels(p, [0, 3], dim=2)
    assert isinstance(new, nn.Parameter) and new is not p
    assert tuple(new.shape) == (2, 3, 2) and new.requires_grad and new.device.type == device.type
    assert torch.equal(new, before[..., [1, 2]])
    assert torch.equal(p, before)  # the original is untouched


def test_default_dim_is_last_and_fixed_dim():
    p = nn.Parameter(torch.randn(3, 5))
    assert L.PARAMETER_PRUNER.dim == -1
    assert L.prune_parameter_in_channels(p, [4]).shape == (3, 4)
    pruner = L.ParameterPruner(0)
    assert pruner.get_out_channels(p) == 3 and pruner.get_out_channels(p, dim=1) == 5
    assert torch.equal(pruner.prune_out_channels(p, [1]), p.detach()[[0, 2]])
    assert L.ParameterPruner(pruning_dim=1).pruning_dim == 1
    assert repr(pruner) == "ParameterPruner(dim=0)"


def test_grad_dtype_requires_grad(device):
    p = nn.Parameter(torch.randn(4, 2, dtype=torch.float64, device=device), requires_grad=False)
    new = L.prune_parameter_out_channels(p, [1], dim=0)
    assert new.dtype == torch.float64 and not new.requires_grad
    q = nn.Parameter(torch.randn(4, 2, device=device))
    q.grad = torch.randn_like(q)
    new = L.prune_parameter_out_channels(q, [1, 2], dim=0)
    assert torch.equal(new.grad, q.grad[[0, 3]])


def test_plain_tensor_gives_plain_tensor():
    t = torch.arange(5)
    new = L.prune_parameter_out_channels(t, [0], dim=0)
    assert not isinstance(new, nn.Parameter) and new.tolist() == [1, 2, 3, 4]


def test_module_with_one_parameter_is_updated(snapshot):
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.arange(4.0))

    m = Scale()
    assert L.prune_parameter_out_channels(m, [2], dim=0) is m
    assert m.scale.tolist() == [0.0, 1.0, 3.0]
    two = nn.Linear(2, 2)
    snap = snapshot(two)
    with pytest.raises(PruningError, match="2 parameters"):
        L.prune_parameter_out_channels(two, [0], dim=0)
    snap.assert_unchanged()


def test_parameter_errors():
    p = nn.Parameter(torch.randn(3, 4))
    with pytest.raises(PruningError, match=r"Parameter of shape \(3, 4\) along dim 0.*out of range"):
        L.prune_parameter_out_channels(p, [3], dim=0)
    with pytest.raises(PruningError, match="duplicates"):
        L.prune_parameter_out_channels(p, [1, 1], dim=0)
    with pytest.raises(PruningError, match="leave none"):
        L.prune_parameter_out_channels(p, [0, 1, 2], dim=0)
    with pytest.raises(PruningError, match="pruning dim 2 is out of range"):
        L.prune_parameter_out_channels(p, [0], dim=2)
    with pytest.raises(PruningError, match="scalar"):
        L.prune_parameter_out_channels(nn.Parameter(torch.tensor(1.0)), [0])
    assert L.prune_parameter_out_channels(p, [], dim=0) is p


def test_replace_parameter_nested_and_tied():
    model = nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 10, bias=False))
    model[1].weight = model[0].weight  # tied weights
    old = model[0].weight
    new = L.prune_parameter_out_channels(old, [0, 1], dim=1)
    returned = L.replace_parameter(model, "0.weight", new)
    assert returned is old
    assert model[0].weight is new and model[1].weight is new
    assert len(list(model.parameters())) == 1


def test_replace_parameter_top_level_and_tensor():
    m = nn.Module()
    m.cls_token = nn.Parameter(torch.zeros(1, 1, 8), requires_grad=False)
    L.replace_parameter(m, "cls_token", torch.ones(1, 1, 6))
    assert isinstance(m.cls_token, nn.Parameter) and not m.cls_token.requires_grad
    assert m.cls_token.shape == (1, 1, 6)


def test_replace_parameter_rnn_refreshes_flat_weights():
    lstm = nn.LSTM(3, 2)
    new = nn.Parameter(lstm.weight_ih_l0.detach().clone() * 0)
    L.replace_parameter(lstm, "weight_ih_l0", new)
    assert lstm._flat_weights[0] is new
    lstm(torch.randn(2, 1, 3))


def test_replace_parameter_errors():
    m = nn.Sequential(nn.Linear(2, 2, bias=False))
    for name in ("0.bias", "1.weight", "weight", "0.weight.x"):
        with pytest.raises(PruningError, match="no parameter"):
            L.replace_parameter(m, name, torch.zeros(2, 2))
    with pytest.raises(PruningError, match="tensor"):
        L.replace_parameter(m, "0.weight", [[0.0]])
