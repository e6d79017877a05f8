"""The shared machinery: index validation, side names, errors, atomic assignment, docstring examples."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch
from torch import nn

import prune_explorer.layers as L
from prune_explorer.errors import PruneExplorerError, PruningError
from prune_explorer.layers.edits import LayerEdit

MODULES = ["base", "edits", "family", "slicing", "conv", "linear", "norm", "embedding", "attention", "recurrent", "cell",
           "parameter", "registry"]


@pytest.mark.parametrize("name", MODULES + [None])
def test_docstring_examples(name):
    mod = importlib.import_module("prune_explorer.layers" + (f".{name}" if name else ""))
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_normalize_indices_accepts_int_like():
    assert L.normalize_indices([3, 1]) == [1, 3]
    assert L.normalize_indices((2,)) == [2]
    assert L.normalize_indices(range(3)) == [0, 1, 2]
    assert L.normalize_indices({4, 0}) == [0, 4]
    assert L.normalize_indices(torch.tensor([[2], [0]])) == [0, 2]
    assert L.normalize_indices(np.array([5, 1], dtype=np.int64)) == [1, 5]
    assert L.normalize_indices([np.int32(3)]) == [3]
    assert L.normalize_indices([]) == []


@pytest.mark.parametrize("bad,pat", [
    ([1, 2, 1], r"duplicates \[1\]"), ([0.0], "ints"), ([True], "bool"), (torch.tensor([1.0]), "dtype"),
    (torch.tensor([True]), "dtype"), (3, "sequence"), ("12", "sequence"), (None, "sequence"), (["a"], "ints"),
])
def test_normalize_indices_rejects(bad, pat):
    with pytest.raises(PruningError, match=pat):
        L.normalize_indices(bad)


def test_side_names():
    assert [L.normalize_side(s) for s in ("out", "in", "output", "INPUT", True, False)] == \
        ["out", "in", "out", "in", "out", "in"]
    with pytest.raises(PruningError):
        L.normalize_side("sideways")
    with pytest.raises(PruningError, match="side"):
        L.LINEAR_PRUNER.check(nn.Linear(2, 2), [0], "both")


def test_error_carries_layer_side_and_fix():
    fc = nn.Linear(4, 3)
    with pytest.raises(PruningError) as ei:
        L.prune_linear_out_channels(fc, [0, 7])
    err = ei.value
    assert isinstance(err, PruneExplorerError) and isinstance(err, ValueError)
    assert err.layer is fc and err.side == "out" and err.idxs == [0, 7]
    msg = str(err)
    assert msg.startswith("Linear(in_features=4, out_features=3, bias=True): cannot prune output channels [0, 7]")
    assert "index [7] out of range for 3 output channels (valid: 0..2)" in msg and "Fix:" in msg


def test_long_index_lists_are_shortened():
    fc = nn.Linear(4, 100)
    with pytest.raises(PruningError, match=r"\(100 in all\)"):
        L.prune_linear_out_channels(fc, list(range(100)))


def test_lazy_and_parametrized_layers_are_refused(snapshot):
    lazy = nn.LazyLinear(3)
    with pytest.raises(PruningError, match="lazy"):
        L.prune_linear_out_channels(lazy, [0])
    from torch.nn.utils import parametrizations

    fc = parametrizations.weight_norm(nn.Linear(3, 3))
    snap = snapshot(fc)
    with pytest.raises(PruningError, match="parametrizations"):
        L.prune_linear_out_channels(fc, [0])
    snap.assert_unchanged()


def test_layer_edit_rolls_back_every_assignment(snapshot):
    fc = nn.Linear(3, 3)
    snap = snapshot(fc)
    plan = LayerEdit()
    plan.select(fc, "weight", (0, [0]))
    plan.set(fc, "out_features", 1)
    plan.set(fc, "bias", "not a tensor")  # Module.__setattr__ refuses this -> TypeError
    with pytest.raises(TypeError):
        plan.apply()
    snap.assert_unchanged()

    plan = LayerEdit()
    plan.select(fc, "weight", (0, [0]))

    def fail():
        raise RuntimeError("late failure")

    with pytest.raises(RuntimeError, match="late failure"):
        plan.apply(finalize=fail)
    snap.assert_unchanged()


def test_check_does_not_modify(snapshot):
    conv = nn.Conv2d(4, 4, 3, groups=2)
    snap = snapshot(conv)
    assert L.CONV_PRUNER.check(conv, [3, 1], "out") == [1, 3]
    snap.assert_unchanged()


def test_tp_helper_prune_parameter_and_grad():
    p = nn.Parameter(torch.arange(6.0).reshape(3, 2))
    p.grad = torch.ones(3, 2)
    new = L.BasePruningFunc._prune_parameter_and_grad(p, [0, 2], 0)
    assert new.tolist() == [[0.0, 1.0], [4.0, 5.0]] and new.grad.shape == (2, 2)


# Every built-in pruner, on both sides where it has one: invalid requests raise a PruningError naming the
# layer and leave the module exactly as it was.
CASES = [
    (lambda: nn.Conv2d(4, 6, 3), "prune_conv_out_channels", 6),
    (lambda: nn.Conv2d(4, 6, 3), "prune_conv_in_channels", 4),
    (lambda: nn.ConvTranspose3d(4, 6, 3), "prune_convtranspose_out_channels", 6),
    (lambda: nn.ConvTranspose1d(4, 6, 3), "prune_convtranspose_in_channels", 4),
    (lambda: nn.Conv2d(4, 4, 3, groups=4), "prune_depthwise_conv_out_channels", 4),
    (lambda: nn.Conv2d(4, 4, 3, groups=4), "prune_depthwise_conv_in_channels", 4),
    (lambda: nn.Linear(4, 6), "prune_linear_out_channels", 6),
    (lambda: nn.Linear(4, 6), "prune_linear_in_channels", 4),
    (lambda: nn.BatchNorm1d(4), "prune_batchnorm_in_channels", 4),
    (lambda: nn.InstanceNorm1d(4, affine=True), "prune_instancenorm_out_channels", 4),
    (lambda: nn.GroupNorm(1, 4), "prune_groupnorm_in_channels", 4),
    (lambda: nn.LayerNorm(4), "prune_layernorm_in_channels", 4),
    (lambda: nn.PReLU(4), "prune_prelu_in_channels", 4),
    (lambda: nn.Embedding(5, 4), "prune_embedding_out_channels", 4),
    (lambda: nn.MultiheadAttention(4, 1), "prune_multihead_attention_out_channels", 4),
    (lambda: nn.LSTM(4, 6, bidirectional=True), "prune_lstm_out_channels", 6),
    (lambda: nn.LSTM(4, 6, num_layers=2), "prune_lstm_in_channels", 4),
    (lambda: nn.GRU(4, 6, num_layers=2, bidirectional=True), "prune_gru_out_channels", 6),
    (lambda: nn.GRU(4, 6), "prune_gru_in_channels", 4),
]


@pytest.mark.parametrize("factory,fn,n", CASES, ids=[c[1] for c in CASES])
def test_every_pruner_rejects_invalid_requests_atomically(factory, fn, n, snapshot):
    m = factory()
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    snap = snapshot(m)
    for idxs, pat in [([n], "out of range"), ([-1], "out of range"), ([0, 0], "duplicates"),
                      (list(range(n)), "would leave none"), ([0.5], "ints")]:
        with pytest.raises(PruningError, match=pat) as ei:
            getattr(L, fn)(m, idxs)
        assert type(m).__name__ in str(ei.value)
        snap.assert_unchanged()
    # and a valid request goes through, with channel counts updated
    pruner = L.pruner_of(getattr(L, fn))
    side = L.pruning_fn_side(getattr(L, fn))
    getattr(L, fn)(m, [0])
    assert pruner.get_channels(m, side) == n - 1
