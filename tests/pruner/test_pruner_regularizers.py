"""Sparse-training regularizers: BNScalePruner (L1 on BN scales, group lasso) and GroupNormPruner."""

from __future__ import annotations

import torch

from prune_explorer.importance import BNScaleImportance, MagnitudeImportance
from prune_explorer.pruner import BNScalePruner, GroupNormPruner, MagnitudePruner

from small_models import ConvStack, TinyResNet

X = torch.randn(2, 3, 8, 8)


def _backward(m):
    m.zero_grad()
    m(X).pow(2).mean().backward()
    return {n: p.grad.clone() for n, p in m.named_parameters()}


def test_bn_scale_l1_adds_reg_times_sign():
    m = TinyResNet()
    with torch.no_grad():
        m.bn.weight.uniform_(-1, 1)
    pr = BNScalePruner(m, X, BNScaleImportance(), reg=1e-2, ignored_layers=[m.fc, m.blocks[2].bn2])
    g0 = _backward(m)
    pr.regularize(m)
    for n, p in m.named_parameters():
        if n.endswith("weight") and ("bn" in n.split(".")[-2]) and n != "blocks.2.bn2.weight":
            torch.testing.assert_close(p.grad, g0[n] + 1e-2 * torch.sign(p.detach()))
        else:
            torch.testing.assert_close(p.grad, g0[n])


def test_bn_group_lasso_gradient():
    m = TinyResNet()
    pr = BNScalePruner(m, X, BNScaleImportance(), reg=1e-2, group_lasso=True, ignored_layers=[m.fc])
    g0 = _backward(m)
    pr.regularize()
    # the first group (stem) holds bn and every block's bn2: channel c's norm over all of them
    bns = [m.bn] + [b.bn2 for b in m.blocks]
    norm = torch.stack([b.weight.detach() for b in bns]).pow(2).sum(0).sqrt()
    for b in bns:
        name = next(n for n, mod in m.named_modules() if mod is b) + ".weight"
        torch.testing.assert_close(b.weight.grad, g0[name] + 1e-2 * b.weight.detach() / norm, rtol=1e-4, atol=1e-6)


def test_growing_group_norm_matches_the_formula():
    m = ConvStack(width=6, depth=1)
    pr = GroupNormPruner(m, X, MagnitudeImportance(), reg=1e-3, alpha=4)
    g0 = _backward(m)
    pr.regularize(m)
    # group of body.0: body.0 rows + last's columns
    w_out = m.body[0].weight.detach()
    w_in = m.last.weight.detach()
    n = (w_out.pow(2).flatten(1).sum(1) + w_in.pow(2).transpose(0, 1).flatten(1).sum(1)).sqrt()
    gamma = 4 ** ((n.max() - n) / (n.max() - n.min()))
    # last's columns also belong to body.0's group only; body.0's columns belong to first's group
    n_first = (m.first.weight.detach().pow(2).flatten(1).sum(1) + w_out.pow(2).transpose(0, 1).flatten(1).sum(1)).sqrt()
    gamma_first = 4 ** ((n_first.max() - n_first) / (n_first.max() - n_first.min()))
    want_body = g0["body.0.weight"] + 1e-3 * (gamma.view(-1, 1, 1, 1) + gamma_first.view(1, -1, 1, 1)) * w_out
    torch.testing.assert_close(m.body[0].weight.grad, want_body, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(m.last.weight.grad, g0["last.weight"] + 1e-3 * gamma.view(1, -1, 1, 1) * w_in,
                               rtol=1e-4, atol=1e-7)


def test_regularizer_follows_pruning():
    m = ConvStack(width=8, depth=1)
    pr = GroupNormPruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, iterative_steps=2)
    _backward(m)
    pr.regularize()
    pr.step()
    _backward(m)  # shapes changed: the regularizer must use the new groups
    pr.regularize()
    pr.update_regularizer()
    pr.regularize()
    assert m.body[0].weight.grad.shape == m.body[0].weight.shape


def test_sparse_training_then_pruning_removes_the_penalised_channels():
    torch.manual_seed(0)
    m = TinyResNet()
    pr = BNScalePruner(m, X, BNScaleImportance(), reg=0.05, pruning_ratio=0.5, ignored_layers=[m.fc])
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        m(X).pow(2).mean().backward()
        pr.regularize(m)
        opt.step()
    pr.step()
    assert m(X).shape == (2, 10)
    assert m.blocks[0].conv1.out_channels == 8


def test_base_pruner_has_no_regularizer():
    m = ConvStack(width=4, depth=1)
    g0 = _backward(m)
    MagnitudePruner(m, X, MagnitudeImportance()).regularize(m)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, g0[n])
