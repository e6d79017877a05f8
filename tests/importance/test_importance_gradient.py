"""Taylor and Hessian importance: values from gradients, and clear errors when the gradients are missing."""

from __future__ import annotations

import pytest
import torch

from prune_explorer.importance import HessianImportance, ImportanceError, TaylorImportance

from imp_helpers import group_of
from small_models import ConvBNConv

X = torch.randn(4, 3, 8, 8)


def _members(m, f):
    return torch.stack([
        f(m.conv1.weight).flatten(1).sum(1),
        f(m.bn.weight),
        f(m.conv2.weight).transpose(0, 1).flatten(1).sum(1),
    ])


def test_taylor_without_gradients_names_the_fix():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X[:1])
    with pytest.raises(ImportanceError, match=r"loss.backward\(\)"):
        TaylorImportance()(g)


def test_taylor_is_w_times_grad():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X[:1])
    m(X).pow(2).mean().backward()
    got = TaylorImportance(normalizer=None)(g)
    want = _members(m, lambda p: (p.detach() * p.grad).abs()).mean(0)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    multi = TaylorImportance(normalizer=None, multivariable=True)(g)
    want_m = _members(m, lambda p: p.detach() * p.grad).abs().mean(0)
    torch.testing.assert_close(multi, want_m, rtol=1e-4, atol=1e-7)


def test_hessian_needs_accumulated_gradients():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X[:1])
    imp = HessianImportance()
    with pytest.raises(ImportanceError, match="accumulate_grad"):
        imp(g)
    with pytest.raises(ImportanceError, match="no gradient"):
        imp.accumulate_grad(m)


def test_hessian_is_w2_times_mean_squared_grad():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X[:1])
    imp = HessianImportance(normalizer=None)
    sq = {}
    for i in range(3):
        m.zero_grad()
        m(X[i:i + 1]).pow(2).mean().backward()
        imp.accumulate_grad(m)
        for name, p in m.named_parameters():
            sq[name] = sq.get(name, 0) + p.grad.detach().pow(2)
    h = {name: v / 3 for name, v in sq.items()}
    params = dict(m.named_parameters())
    got = imp(g)
    want = torch.stack([
        (params["conv1.weight"].detach().pow(2) * h["conv1.weight"]).flatten(1).sum(1),
        params["bn.weight"].detach().pow(2) * h["bn.weight"],
        (params["conv2.weight"].detach().pow(2) * h["conv2.weight"]).transpose(0, 1).flatten(1).sum(1),
    ]).mean(0)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-9)
    imp.zero_grad()
    with pytest.raises(ImportanceError):
        imp(g)
