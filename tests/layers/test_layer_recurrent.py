"""LSTM / GRU / RNN: hidden units and input features, multi-layer and bidirectional."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prune_explorer.layers as L
from prune_explorer.errors import PruningError

GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}
FNS = {
    nn.LSTM: ("prune_lstm_out_channels", "prune_lstm_in_channels"),
    nn.GRU: ("prune_gru_out_channels", "prune_gru_in_channels"),
    nn.RNN: ("prune_rnn_out_channels", "prune_rnn_in_channels"),
}


def _sfx(m):
    return ["", "_reverse"] if m.bidirectional else [""]


def _isolate_hidden(m, idxs):
    """Zero every connection leaving hidden units ``idxs``, so removing them cannot change the others."""
    h = m.hidden_size
    with torch.no_grad():
        for k in range(m.num_layers):
            for s in _sfx(m):
                getattr(m, f"weight_hh_l{k}{s}")[:, idxs] = 0
                if k > 0:
                    cols = idxs + ([h + j for j in idxs] if m.bidirectional else [])
                    getattr(m, f"weight_ih_l{k}{s}")[:, cols] = 0
    return m


def _outputs(m, x):
    out, state = m(x)
    states = state if isinstance(state, tuple) else (state,)
    return out, states


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_prune_hidden(cls, num_layers, bidirectional, batch_first, device):
    m = cls(5, 6, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first).to(device)
    idxs = [1, 4]
    keep = [0, 2, 3, 5]
    _isolate_hidden(m, idxs)
    ref = copy.deepcopy(m)
    fn_out, _ = FNS[cls]
    assert getattr(L, fn_out)(m, idxs) is m
    g, h = GATES[cls], 6
    rows = [q * h + j for q in range(g) for j in keep]
    assert m.hidden_size == 4 and m.input_size == 5
    assert f"{cls.__name__}(5, 4" in repr(m)
    for k in range(num_layers):
        for s in _sfx(m):
            below = keep + [h + j for j in keep] if (bidirectional and k > 0) else keep
            w_ih = getattr(ref, f"weight_ih_l{k}{s}")[rows]
            if k > 0:
                w_ih = w_ih[:, below]
            assert torch.equal(getattr(m, f"weight_ih_l{k}{s}"), w_ih)
            assert torch.equal(getattr(m, f"weight_hh_l{k}{s}"), getattr(ref, f"weight_hh_l{k}{s}")[rows][:, keep])
            for b in ("bias_ih", "bias_hh"):
                assert torch.equal(getattr(m, f"{b}_l{k}{s}"), getattr(ref, f"{b}_l{k}{s}")[rows])
    # forward uses the new parameters (flat weights refreshed)
    assert all(a is getattr(m, n) for a, n in zip(m._flat_weights, m._flat_weights_names))
    x = torch.randn(3, 7, 5, device=device)
    out, states = _outputs(m, x)
    ref_out, ref_states = _outputs(ref, x)
    feats = L.RNN_PRUNER.output_feature_indices(ref, idxs)
    kept_feats = [i for i in range(ref_out.shape[-1]) if i not in feats]
    assert out.shape[-1] == 4 * (2 if bidirectional else 1) == L.RNN_PRUNER.get_out_features(m)
    torch.testing.assert_close(out, ref_out[..., kept_feats])
    for s, rs in zip(states, ref_states):
        torch.testing.assert_close(s, rs[..., keep])
    out.sum().backward()
    assert m.weight_hh_l0.grad.shape == m.weight_hh_l0.shape


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_prune_input(cls, bidirectional, device):
    m = cls(6, 4, num_layers=2, bidirectional=bidirectional, batch_first=True).to(device)
    ref = copy.deepcopy(m)
    _, fn_in = FNS[cls]
    getattr(L, fn_in)(m, [0, 3])
    keep = [1, 2, 4, 5]
    assert m.input_size == 4 and m.hidden_size == 4
    for s in _sfx(m):
        assert torch.equal(getattr(m, f"weight_ih_l0{s}"), getattr(ref, f"weight_ih_l0{s}")[:, keep])
        assert torch.equal(getattr(m, f"weight_ih_l1{s}"), getattr(ref, f"weight_ih_l1{s}"))
    x = torch.randn(2, 5, 6, device=device)
    x0 = x.clone()
    x0[..., [0, 3]] = 0
    torch.testing.assert_close(m(x[..., keep])[0], ref(x0)[0])


def test_prune_both_sides_then_forward(device):
    m = nn.LSTM(8, 10, num_layers=2, bidirectional=True, dropout=0.1).to(device)
    L.prune_lstm_out_channels(m, [0, 9])
    L.prune_lstm_in_channels(m, [7])
    L.prune_lstm_out_channels(m, [3])
    assert (m.input_size, m.hidden_size) == (7, 7)
    assert tuple(m.weight_ih_l1_reverse.shape) == (28, 14)
    out, (h, c) = m(torch.randn(4, 2, 7, device=device))
    assert out.shape == (4, 2, 14) and h.shape == c.shape == (4, 2, 7)


def test_no_bias(device):
    m = nn.GRU(3, 5, bias=False, num_layers=2).to(device)
    L.prune_gru_out_channels(m, [2])
    assert m.weight_hh_l1.shape == (12, 4)
    assert m(torch.randn(2, 1, 3, device=device))[0].shape == (2, 1, 4)


def test_proj_size_is_not_supported(snapshot):
    m = nn.LSTM(4, 6, proj_size=2)
    snap = snapshot(m)
    for fn in (L.prune_lstm_out_channels, L.prune_lstm_in_channels):
        with pytest.raises(PruningError, match=r"LSTM.*proj_size=2.*not supported"):
            fn(m, [0])
    snap.assert_unchanged()


@pytest.mark.parametrize("side", ["out", "in"])
@pytest.mark.parametrize("idxs,pat", [([6], "out of range"), ([2, 2], "duplicates"),
                                      (list(range(6)), "leave none"), ([1.0], "ints")])
def test_invalid_leaves_lstm_unchanged(side, idxs, pat, snapshot):
    m = nn.LSTM(6, 6, num_layers=2, bidirectional=True)
    snap = snapshot(m)
    fn = L.prune_lstm_out_channels if side == "out" else L.prune_lstm_in_channels
    with pytest.raises(PruningError, match=pat) as ei:
        fn(m, idxs)
    assert "LSTM" in str(ei.value)
    snap.assert_unchanged()


def test_failure_during_refresh_rolls_back(monkeypatch, snapshot):
    m = nn.LSTM(4, 5, num_layers=2)
    snap = snapshot(m)
    calls = []

    def boom():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated failure")
        type(m)._init_flat_weights(m)

    monkeypatch.setattr(m, "_init_flat_weights", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        L.prune_lstm_out_channels(m, [0])
    monkeypatch.undo()
    snap.assert_unchanged()
    m(torch.randn(2, 1, 4))


def test_registry_picks_rnn_pruners():
    assert L.DEFAULT_REGISTRY.get(nn.LSTM(2, 2)) is L.LSTM_PRUNER
    assert L.DEFAULT_REGISTRY.get(nn.GRU(2, 2)) is L.GRU_PRUNER
    assert L.DEFAULT_REGISTRY.get(nn.RNN(2, 2)) is L.RNN_PRUNER
