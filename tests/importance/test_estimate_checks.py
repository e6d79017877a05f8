"""``BasePruner.estimate_importance`` hands back one float32 CPU score per root channel, detached, whatever form a
criterion returns (a float32 vector as it is, other dtypes, lists, tensors that need a gradient converted), and
refuses scores of the wrong shape or with NaN by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prune_explorer as pe


class Fixed(pe.importance.Importance):
    """Scores made by ``make(n)`` for a group of ``n`` root channels."""

    def __init__(self, make):
        self.make = make

    def __call__(self, group):
        return self.make(len(group.root_idxs))


def _pruner(make):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    pruner = pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 6, 6), Fixed(make), pruning_ratio=0.5,
                                       ignored_layers=[model[2]])
    group = next(g for g in pruner.DG.get_all_groups() if g.root_module is model[0])
    return pruner, group


@pytest.mark.parametrize("make", [
    lambda n: torch.arange(n, dtype=torch.float32),
    lambda n: torch.arange(n, dtype=torch.float64),
    lambda n: list(range(n)),
    lambda n: torch.arange(n, dtype=torch.float32).requires_grad_(),
    lambda n: torch.arange(n, dtype=torch.float32).repeat_interleave(2)[::2],
    lambda n: torch.arange(n, dtype=torch.float32).reshape(1, n)[0],
], ids=["float32", "float64", "list", "needs-grad", "strided", "row"])
def test_scores_come_back_as_float32_cpu_vectors(make):
    pruner, group = _pruner(make)
    got = pruner.estimate_importance(group)
    assert got.dtype == torch.float32 and got.device.type == "cpu" and got.dim() == 1 and not got.requires_grad
    assert torch.equal(got, torch.arange(8, dtype=torch.float32))


@pytest.mark.parametrize("make,match", [
    (lambda n: torch.zeros(n + 1), r"scores of shape \(9,\) .* covers 8 channels"),
    (lambda n: torch.zeros(2, n), r"scores of shape \(2, 8\) .* covers 8 channels"),
    (lambda n: torch.full((n,), float("nan")), r"NaN scores for 8 of the 8 channels"),
])
def test_bad_scores_are_refused_by_name(make, match):
    pruner, group = _pruner(make)
    with pytest.raises(pe.PruneExplorerError, match=match):
        pruner.estimate_importance(group)
