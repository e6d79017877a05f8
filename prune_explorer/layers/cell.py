"""Recurrent cells: ``nn.RNNCell``, ``nn.LSTMCell``, ``nn.GRUCell`` (one time step, usually called in a loop).

Shapes (``H = hidden_size``, ``g`` gates: 4 for LSTMCell (i, f, g, o), 3 for GRUCell (r, z, n), 1 for RNNCell)::

    weight_ih  (g*H, input_size)      weight_hh  (g*H, H)      bias_ih, bias_hh  (g*H,)

Output side: the ``H`` hidden units. Removing unit ``j`` removes row ``q*H + j`` of every gate block ``q`` of both
weights and biases, and column ``j`` of ``weight_hh`` (the state the cell reads back). Input side: the
``input_size`` features (columns of ``weight_ih``). The hidden state a cell reads (``hx``, and ``cx`` for an
LSTM cell) holds the same hidden units as its outputs, so a cell called in a loop keeps one channel space.

Example::

    >>> import torch, torch.nn as nn
    >>> cell = nn.LSTMCell(4, 6)
    >>> prune_rnn_cell_out_channels(cell, [0, 5])
    LSTMCell(4, 4)
    >>> [tuple(t.shape) for t in cell(torch.randn(2, 4))]
    [(2, 4), (2, 4)]
"""

from __future__ import annotations

from torch import nn

from .base import BasePruningFunc
from .edits import LayerEdit, keep_indices
from .recurrent import gate_parts, gate_rows
from .family import LayerFamily, register_family
from .slicing import Part, Rows

__all__ = ["RNNCellPruner", "RNN_CELL_PRUNER", "RNN_CELL_FAMILY", "prune_rnn_cell_out_channels",
           "prune_rnn_cell_in_channels"]


def _gates(layer: nn.RNNCellBase) -> int:
    return layer.weight_ih.shape[0] // layer.hidden_size


class RNNCellPruner(BasePruningFunc):
    """Prunes ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell``: ``hidden_size`` (out) and ``input_size`` (in).

    >>> RNNCellPruner().prune_in_channels(nn.GRUCell(5, 3), [0, 4]).weight_ih.shape
    torch.Size([9, 3])
    """

    TARGET_MODULES = (nn.RNNCellBase,)

    CHANNEL_ATTRS = ("hidden_size", "input_size")

    def remove(self, layer: nn.RNNCellBase, idxs: list[int], side: str) -> None:
        """Out: hidden units ``idxs`` (their rows in every gate block, their column of ``weight_hh``); in: input
        features ``idxs`` (columns of ``weight_ih``)."""
        edit = LayerEdit()
        if side == "out":
            keep = keep_indices(layer.hidden_size, idxs)
            rows = gate_rows(keep, layer.hidden_size, _gates(layer))
            edit.select(layer, "weight_ih", (0, rows)).select(layer, "weight_hh", (0, rows), (1, keep))
            edit.select(layer, "bias_ih", (0, rows)).select(layer, "bias_hh", (0, rows))
            edit.set(layer, "hidden_size", len(keep))
        else:
            keep = keep_indices(layer.input_size, idxs)
            edit.select(layer, "weight_ih", (1, keep)).set(layer, "input_size", len(keep))
        edit.apply()


RNN_CELL_PRUNER = RNNCellPruner()
prune_rnn_cell_out_channels, prune_rnn_cell_in_channels = RNN_CELL_PRUNER.pruning_fns()


def rnn_cell_channel_map(ctx, module: nn.RNNCellBase, name: str, call, x) -> None:
    """Reads the last dim of its input; the states it reads and returns hold its hidden units."""
    in_ids, hid = ctx.channels(module, name, "in"), ctx.channels(module, name, "out")
    ctx.consume(x, -1, in_ids, name)
    for state in call.inputs[1:]:
        if state.ndim and state.shape[-1] == hid.numel():
            ctx.consume(state, -1, hid, name)
        else:
            ctx.fix(state, f"state of {name}")
    for out in call.outputs:
        ctx.label(out, out.ndim - 1, hid if out.ndim and out.shape[-1] == hid.numel() else None)


def rnn_cell_parts(layer: nn.RNNCellBase, space, idx) -> list:
    """Out (hidden unit ``j``): entry ``j`` of every gate block of the weights and biases, column ``j`` of
    ``weight_hh``; in: columns of ``weight_ih``."""
    if space.side == "in":
        return [Part(layer.weight_ih, Rows(1, idx), False)]
    g = _gates(layer)
    return (gate_parts(layer, ("weight_ih", "weight_hh"), g, idx, False) + [Part(layer.weight_hh, Rows(1, idx), False)]
            + gate_parts(layer, ("bias_ih", "bias_hh"), g, idx, True))


RNN_CELL_FAMILY = register_family(LayerFamily(
    "rnn_cell", RNN_CELL_PRUNER, channel_map=rnn_cell_channel_map, parts=rnn_cell_parts, root=True,
    functional_ops=("rnn_tanh_cell", "rnn_relu_cell", "lstm_cell", "gru_cell"),
    standard_types=(nn.RNNCell, nn.LSTMCell, nn.GRUCell),
))
