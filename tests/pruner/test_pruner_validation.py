"""Bad options fail before anything is built or pruned, with a message naming the option and the fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune_explorer.importance import MagnitudeImportance
from prune_explorer.pruner import BasePruner, PrunerConfigError

from small_models import ConvStack, AttnModel

X = torch.randn(1, 3, 8, 8)


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("kwargs,match", [
    (dict(pruning_ratio=1.0), r"pruning_ratio=1\.0 must be a number in \[0, 1\)"),
    (dict(pruning_ratio=-0.1), "pruning_ratio"),
    (dict(pruning_ratio="half"), "pruning_ratio"),
    (dict(max_pruning_ratio=0.0), r"max_pruning_ratio=0\.0 must be a number in \(0, 1\]"),
    (dict(max_pruning_ratio=1.5), "max_pruning_ratio"),
    (dict(iterative_steps=0), "iterative_steps=0 must be an int >= 1"),
    (dict(iterative_steps=2.5), "iterative_steps"),
    (dict(round_to=0), "round_to=0 must be None or an int >= 1"),
    (dict(head_pruning_ratio=1.0), "head_pruning_ratio"),
    (dict(ignored_layers=[nn.Conv2d(1, 1, 1)]), "ignored_layers: Conv2d .* is not a submodule of the model"),
    (dict(ignored_layers=["frist"]), "ignored_layers: there is no layer named 'frist'.*Did you mean 'first'"),
        (dict(ignored_layers=[3]), "ignored_layers: a layer is given as a module, a parameter or its qualified name"),
    (dict(pruning_ratio_dict={nn.Linear(2, 2): 0.3}), "pruning_ratio_dict key: Linear .* is not a submodule"),
    (dict(pruning_ratio_dict={(): 0.3}), "empty tuple"),
    (dict(out_channel_groups={nn.Linear(2, 2): 2}), "out_channel_groups: Linear .* not a submodule"),
    (dict(iterative_pruning_ratio_scheduler=3), "scheduler must be callable"),
    (dict(importance=None), "importance must be a callable"),
])
def test_bad_options_leave_the_model_untouched(kwargs, match):
    m = ConvStack(width=8, depth=1)
    before = _state(m)
    kw = dict(importance=MagnitudeImportance())
    kw.update(kwargs)
    with pytest.raises(PrunerConfigError, match=match):
        BasePruner(m, X, **kw)
    after = _state(m)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_bad_ratio_in_dict_and_duplicated_module():
    m = ConvStack(width=8, depth=2)
    with pytest.raises(PrunerConfigError, match=r"pruning_ratio_dict\[body.0\]=1\.2|pruning_ratio_dict\[body.0\]"):
        BasePruner(m, X, MagnitudeImportance(), pruning_ratio_dict={m.body[0]: 1.2})
    with pytest.raises(PrunerConfigError, match="appears in two keys"):
        BasePruner(m, X, MagnitudeImportance(), pruning_ratio_dict={m.body[0]: 0.2, (m.body[0], m.body[1]): 0.3})


def test_num_heads_must_divide_the_layer():
    m = AttnModel()
    with pytest.raises(PrunerConfigError, match=r"num_heads\[attn.q\]=5 does not divide its 32 output features"):
        BasePruner(m, torch.randn(1, 3, 8), MagnitudeImportance(), num_heads={m.attn.q: 5})
    with pytest.raises(PrunerConfigError, match="must be an int >= 1"):
        BasePruner(m, torch.randn(1, 3, 8), MagnitudeImportance(), num_heads={m.attn.q: 0})


def test_not_a_model():
    with pytest.raises(PrunerConfigError, match="model must be an nn.Module"):
        BasePruner(lambda x: x, X, MagnitudeImportance())


def test_ignored_container_ignores_its_submodules_and_parameters_are_accepted():
    m = ConvStack(width=8, depth=2)
    pr = BasePruner(m, X, MagnitudeImportance(), ignored_layers=[m.body, m.first.weight])
    assert m.body[0] in pr.ignored_layers and m.body[1] in pr.ignored_layers
    pr.step()
    # body.0 and body.1 keep their outputs; first's outputs are read by body.0 only: still prunable
    assert m.body[0].out_channels == 8 and m.body[1].out_channels == 8
    assert m.first.out_channels == 4
