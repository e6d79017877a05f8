"""Bad input that used to pass silently gets a clear error naming the problem and the fix, and changes nothing:
example inputs the model cannot run (an integer tensor into a float conv traces fine on meta stand-ins), and an
importance that returns NaN scores."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prune_explorer as pe


def _net():
    """conv (no bias) + BatchNorm, as in ResNets: with no bias, a float conv on meta tensors accepts an integer
    input that the real conv refuses."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 4, 1, bias=False)).eval()


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(
        sa[k].shape == sb[k].shape and torch.allclose(sa[k].double(), sb[k].double(), rtol=0, atol=0, equal_nan=True)
        for k in sa)


@pytest.mark.parametrize("inputs", [torch.randint(0, 5, (1, 3, 8, 8)), torch.zeros(1, 3, 8, 8, dtype=torch.float64)],
                         ids=["int64", "float64"])
def test_inputs_the_model_cannot_run_are_refused_by_name(inputs):
    model = _net()
    before = copy.deepcopy(model)
    kind = "Long" if inputs.dtype == torch.int64 else "Double"
    with pytest.raises(pe.TracingError, match=rf"(?s){kind}.*example_inputs has the shape, dtype"):
        pe.DependencyGraph().build_dependency(model, inputs)
    with pytest.raises(pe.TracingError, match=kind):
        pe.pruner.MagnitudePruner(model, inputs, pe.importance.MagnitudeImportance(), ignored_layers=[model[6]])
    assert _same(model, before)
    with pytest.raises(RuntimeError):  # the graph was right to refuse: the model does not run on them
        model(inputs)


class NaNOnSecondGroup(pe.importance.MagnitudeImportance):
    """An importance that scores the second group it sees with NaN."""

    def __init__(self):
        super().__init__(p=2)
        self.calls = 0

    def __call__(self, group):
        self.calls += 1
        scores = super().__call__(group)
        return torch.full_like(scores, float("nan")) if self.calls == 2 else scores


def test_nan_scores_are_refused_and_the_step_rolled_back():
    model = _net()
    before = copy.deepcopy(model)
    pruner = pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 8, 8), NaNOnSecondGroup(), pruning_ratio=0.5,
                                       ignored_layers=[model[6]])
    with pytest.raises(pe.PruneExplorerError, match=r"NaN scores for 16 of the 16 channels .* rooted at 3"):
        pruner.step()
    assert _same(model, before)  # the first group, pruned before the NaN, is rolled back too
    assert pruner.history == [] and pruner.skipped == [] and pruner.current_step == 0


def test_nan_weights_give_nan_scores_and_the_error_says_what_to_check():
    model = _net()
    with torch.no_grad():
        model[3].weight[3] = float("nan")
    before = copy.deepcopy(model)
    pruner = pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 8, 8), pe.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=0.5, ignored_layers=[model[6]])
    with pytest.raises(pe.PruneExplorerError, match=r"NaN or infinite weights.*torch\.isfinite"):
        pruner.step()
    assert _same(model, before)
