"""prune_explorer.validation: the one home of channel-index and ratio checks, and the callers that use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.errors import PruningError
from prune_explorer.validation import check_indices, check_range, check_ratio, check_ratios, is_ratio, short_list


class OtherError(ValueError):
    pass


@pytest.mark.parametrize("idxs", [[3, 0, 2], (3, 0, 2), np.array([3, 0, 2]), np.array([3, 0, 2], dtype=np.uint8),
                                  torch.tensor([3, 0, 2]), [np.int64(3), 0, np.int32(2)], iter([3, 0, 2])])
def test_accepts_every_integer_sequence_and_keeps_order(idxs):
    out = check_indices(idxs, 4)
    assert out.dtype == np.int64 and out.tolist() == [3, 0, 2]
    assert check_indices(np.array([3, 0, 2]), 4, sort=True).tolist() == [0, 2, 3]


@pytest.mark.parametrize("bad,pat,kind", [
    ([1.0], "must be integers.*float 1.0", "type"), ([True], "bool", "type"), (["a"], "sequence of ints", "type"),
    (torch.tensor([1.5]), "dtype torch.float32", "type"), (np.array([0.5]), "dtype float64", "type"),
    (3, "sequence of ints, got int 3", "type"), ("12", "sequence", "type"), (None, "sequence", "type"),
    ([4], r"index \[4\] out of range for 4 channels \(valid: 0..3\)", "range"),
    ([-1, 9], r"indices \[-1, 9\] out of range", "range"),
    ([1, 2, 1, 2], r"duplicates \[1, 2\] \(channels listed twice\)", "duplicate"),
])
def test_refuses_bad_indices_with_a_fix(bad, pat, kind):
    with pytest.raises(PruningError, match=pat) as ei:
        check_indices(bad, 4)
    err = ei.value
    assert err.kind == kind and "Fix:" in str(err) and str(err) == f"{err.problem}. Fix: {err.fix}"


def test_error_class_wording_and_keep_rule():
    with pytest.raises(OtherError, match=r"index \[5\] out of range for conv.out with 5 channels"):
        check_indices([5], 5, of="conv.out", error=OtherError)
    with pytest.raises(PruningError, match="my idxs must be integers"):
        check_indices([0.5], 5, what="my idxs")
    with pytest.raises(PruningError, match="removing 3 of 3 channels would leave none") as ei:
        check_indices([0, 1, 2], 3, min_keep=1)
    assert ei.value.kind == "empty" and ei.value.checked_idxs.tolist() == [0, 1, 2]
    assert check_indices([0, 1], 3, min_keep=1).tolist() == [0, 1]
    assert check_indices([], 0).size == 0
    with pytest.raises(PruningError, match=r"out of range for 0 channels \(it has none\)"):
        check_range(np.array([0]), 0)
    assert short_list(range(3)) == "[0, 1, 2]" and short_list(range(30), 2) == "[0, 1, ...] (30 in all)"


def test_ratios():
    assert [is_ratio(x) for x in (0, 0.5, 0.999, 1.0, -0.1, float("nan"), True, "0.5", None)] == \
        [True, True, True, False, False, False, False, False, False]
    assert is_ratio(1.0, low_open=True, high_open=False) and not is_ratio(0.0, low_open=True, high_open=False)
    assert check_ratio("r", np.float32(0.25)) == 0.25 and type(check_ratio("r", 0)) is float
    with pytest.raises(OtherError, match=r"max_pruning_ratio=0\.0 must be a number in \(0, 1\]"):
        check_ratio("max_pruning_ratio", 0.0, error=OtherError, low_open=True, high_open=False)
    with pytest.raises(PruningError, match=r"d\[fc\]=1\.5 must be a number in \[0, 1\).*Fix: pass e.g. d\[fc\]=0.5"):
        check_ratios("d", {"fc": 1.5})
    with pytest.raises(PruningError, match="must be a dict"):
        check_ratios("d", [0.5])
    assert check_ratios("d", {nn.Linear: 0.5}, label=lambda k: k.__name__) == {nn.Linear: 0.5}


def test_layers_graph_and_history_use_the_same_rules():
    """The layer pruners, the dependency graph and a saved history refuse the same bad indices (floats are never
    truncated to ints) and leave the model unchanged."""
    fc = nn.Linear(4, 3)
    for bad in ([1.0], [1, 1], [3]):
        with pytest.raises(PruningError):
            pe.prune_linear_out_channels(fc, bad)
    assert fc.out_features == 3
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 8, 8))
    for bad, pat in ([1.0], "integers"), ([2, 2], "duplicates"), ([8], r"out of range for 0.out with 8 channels"):
        with pytest.raises(PruningError, match=pat):
            dg.get_pruning_group(m[0], pe.prune_conv_out_channels, bad)
    assert m[0].out_channels == 8
    history = [{"root": "0", "root_fn": "prune_conv_out_channels", "members": [
        {"name": "0", "fn": "prune_conv_out_channels", "side": "out", "idxs": [1, 1]}]}]
    with pytest.raises(PruningError, match="do not fit its 8 channels.*listed twice"):
        pe.history.apply_history(m, history)
    assert m[0].out_channels == 8
