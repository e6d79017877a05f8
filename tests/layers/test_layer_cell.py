"""nn.RNNCell / nn.LSTMCell / nn.GRUCell: the pruner, and the family through the graph and the importance criteria."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prune_explorer as pe
import prune_explorer.layers as L
from prune_explorer.errors import PruningError

CELLS = [nn.RNNCell, nn.LSTMCell, nn.GRUCell]


def _h(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("cls", CELLS)
def test_out_channels_keep_the_other_units_exact(cls, device, snapshot):
    torch.manual_seed(0)
    cell = cls(5, 7).to(device)
    x = torch.randn(3, 5, device=device)
    before = _h(cell(x))  # zero initial state: each hidden unit depends on its own gate rows only
    snap = snapshot(cell)
    with pytest.raises(PruningError, match=r"index \[7\] out of range for 7 output channels"):
        L.prune_rnn_cell_out_channels(cell, [1, 7])
    snap.assert_unchanged()
    assert L.prune_rnn_cell_out_channels(cell, [1, 4]) is cell
    keep = [0, 2, 3, 5, 6]
    assert cell.hidden_size == 5 and cell.weight_hh.shape[1] == 5
    assert torch.allclose(_h(cell(x)), before[:, keep], atol=1e-6)
    h = torch.randn(3, 5, device=device)
    state = (h, torch.randn(3, 5, device=device)) if cls is nn.LSTMCell else h
    assert _h(cell(x, state)).shape == (3, 5)


@pytest.mark.parametrize("cls", CELLS)
def test_in_channels_equal_a_zeroed_input(cls, device):
    torch.manual_seed(0)
    cell = cls(5, 4).to(device)
    x = torch.randn(2, 5, device=device)
    x0 = x.clone()
    x0[:, [0, 3]] = 0
    before = _h(cell(x0))
    L.prune_rnn_cell_in_channels(cell, [0, 3])
    assert cell.input_size == 3
    assert torch.allclose(_h(cell(x[:, [1, 2, 4]])), before, atol=1e-6)


def test_registry_and_family():
    for cls in CELLS:
        assert L.DEFAULT_REGISTRY.get(cls(2, 3)) is L.RNN_CELL_PRUNER
        assert L.FAMILIES.family_of(cls) is L.RNN_CELL_FAMILY
    assert nn.RNNCellBase in pe.graph.DEFAULT_ROOT_TYPES
    assert pe.prune_rnn_cell_out_channels == L.RNN_CELL_PRUNER.prune_out_channels


class Decoder(nn.Module):
    """A linear encoder feeding an LSTM cell unrolled over time steps, read by a linear head. (A zero initial state
    built from ``self.cell.hidden_size``, a plain int, would keep the hidden units fixed: its size is a literal.)"""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(3, 6)
        self.cell = nn.LSTMCell(6, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        state = None
        for t in range(x.shape[1]):
            state = self.cell(self.enc(x[:, t]), state)
        return self.head(state[0])


def test_an_unrolled_cell_through_the_graph_and_importance():
    torch.manual_seed(0)
    m, x = Decoder().eval(), torch.randn(2, 4, 3)
    dg = pe.DependencyGraph().build_dependency(m, x)
    assert dg.traced_on_meta
    groups = {g.root_name: g for g in dg.get_all_groups()}
    assert set(groups) == {"enc", "cell"}
    members = {(dep.target.name, dep.side): idxs for dep, idxs in groups["cell"]}
    assert set(members) == {("cell", "out"), ("head", "in")}
    enc_members = {(dep.target.name, dep.side) for dep, _ in groups["enc"]}
    assert enc_members == {("enc", "out"), ("cell", "in")}
    scores = pe.importance.MagnitudeImportance()(groups["cell"])
    assert scores.shape == (8,) and bool((scores > 0).all())
    macs = pe.measure.count_ops_and_params(m, x)[0]
    dg.get_pruning_group(m.cell, pe.prune_rnn_cell_out_channels, [0, 3, 5]).prune()
    dg.get_pruning_group(m.enc, pe.prune_linear_out_channels, [1]).prune()
    assert (m.cell.hidden_size, m.cell.input_size, m.head.in_features, m.enc.out_features) == (5, 5, 5, 5)
    assert m(x).shape == (2, 2) and pe.measure.count_ops_and_params(m, x)[0] < macs
