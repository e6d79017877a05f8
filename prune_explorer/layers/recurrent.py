"""Pruning of recurrent layers: ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` (any ``num_layers``, bidirectional).

Shapes (``H = hidden_size``, ``g`` gates: 4 for LSTM (i, f, g, o), 3 for GRU (r, z, n), 1 for RNN;
``D = 2`` if bidirectional else 1; suffix ``_reverse`` for the backward direction)::

    weight_ih_l0{,_reverse}   (g*H, input_size)
    weight_ih_l{k>0}{...}     (g*H, D*H)          # input = [forward H | backward H] of the layer below
    weight_hh_l{k}{...}       (g*H, H)
    bias_ih_l{k}, bias_hh_l{k}  (g*H,)

Output side: the ``H`` hidden units. Removing hidden unit ``j`` removes, in every layer and direction,
row ``q*H + j`` of each gate block ``q`` of ``weight_ih``/``weight_hh``/biases, column ``j`` of
``weight_hh``, and from the input of every layer above the first, column ``j`` (and ``H + j`` when
bidirectional) of ``weight_ih``. ``hidden_size`` is updated. The module's output has ``D*H`` features:
hidden unit ``j`` is output features ``j`` and ``H + j`` (:meth:`RNNPruner.output_feature_indices`).

Input side: the ``input_size`` features (columns of ``weight_ih_l0`` and ``weight_ih_l0_reverse``).

After assigning the new parameters the pruner refreshes the module's flat-weight list
(``_init_flat_weights``), so the forward pass (and cuDNN's flattened weights on GPU) use the new tensors.
LSTMs with projections (``proj_size > 0``) are not supported and raise
:class:`~prune_explorer.errors.PruningError`.

Example::

    >>> import torch, torch.nn as nn
    >>> lstm = nn.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True)
    >>> _ = prune_lstm_out_channels(lstm, [0, 1, 2])
    >>> _ = prune_lstm_in_channels(lstm, [5])
    >>> lstm
    LSTM(5, 5, num_layers=2, batch_first=True, bidirectional=True)
    >>> lstm(torch.randn(2, 7, 5))[0].shape
    torch.Size([2, 7, 10])
"""

from __future__ import annotations

from collections.abc import Sequence


from torch import nn

from .base import BasePruningFunc
from .edits import LayerEdit, keep_indices
from .family import LayerFamily, register_family
from .slicing import Part, Rows, blocks, param_of

__all__ = [
    "RNN_PRUNER",
    "LSTM_PRUNER",
    "GRU_PRUNER",
    "RECURRENT_FAMILY",
    "refresh_flat_weights",
    "gate_rows",
    "gate_parts",
    "RNNPruner",
    "LSTMPruner",
    "GRUPruner",
    "prune_lstm_out_channels",
    "prune_lstm_in_channels",
    "prune_gru_out_channels",
    "prune_gru_in_channels",
    "prune_rnn_out_channels",
    "prune_rnn_in_channels",
]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def gate_rows(keep: list[int], hidden: int, gates: int) -> list[int]:
    """The rows of a gate-stacked weight (``gates`` blocks of ``hidden`` rows) that the hidden units ``keep`` own.

    >>> gate_rows([0, 2], hidden=3, gates=2)
    [0, 2, 3, 5]
    """
    return [q * hidden + j for q in range(gates) for j in keep]


def gate_parts(layer: nn.Module, names, gates: int, idx, is_bias: bool) -> list:
    """Parts of the named gate-stacked tensors that exist: channel ``j`` owns entry ``j`` of every gate block."""
    return [Part(p, blocks(gates, 0, idx), is_bias) for p in (param_of(layer, n) for n in names) if p is not None]


def refresh_flat_weights(layer: nn.RNNBase) -> None:
    """Make ``layer`` use its current parameters in forward (re-collect and re-flatten its weights)."""
    if hasattr(layer, "_init_flat_weights"):
        layer._init_flat_weights()
    else:  # pragma: no cover - older torch
        layer._flat_weights = [getattr(layer, n, None) for n in layer._flat_weights_names]
        layer.flatten_parameters()


class RNNPruner(BasePruningFunc):
    """Prunes ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: ``hidden_size`` (out) and ``input_size`` (in).

    >>> gru = nn.GRU(4, 6, bidirectional=True)
    >>> GRUPruner().prune_out_channels(gru, [5]).weight_ih_l0.shape   # 3 gates * 5 hidden units
    torch.Size([15, 4])
    """

    TARGET_MODULES = (nn.RNNBase,)

    def specialize(self, layer: nn.RNNBase) -> BasePruningFunc:
        """The LSTM / GRU pruner for those layers (their pruning functions carry Torch-Pruning's names); a subclass
        (a customised pruner) is always returned as is."""
        if type(self) is RNNPruner:
            return {"LSTM": LSTM_PRUNER, "GRU": GRU_PRUNER}.get(getattr(layer, "mode", None), self)
        return self

    def variants(self) -> tuple:
        return (self, LSTM_PRUNER, GRU_PRUNER) if type(self) is RNNPruner else (self,)

    CHANNEL_ATTRS = ("hidden_size", "input_size")

    def get_out_features(self, layer: nn.RNNBase) -> int:
        """Size of the output tensor's feature dim: ``hidden_size * (2 if bidirectional else 1)``."""
        return layer.hidden_size * (2 if layer.bidirectional else 1)

    def output_feature_indices(self, layer: nn.RNNBase, idxs: Sequence[int]) -> list[int]:
        """The output features that hidden units ``idxs`` produce: ``j``, and ``H + j`` if bidirectional.

        >>> RNNPruner().output_feature_indices(nn.LSTM(2, 4, bidirectional=True), [1])
        [1, 5]
        """
        idxs = sorted(idxs)
        if layer.bidirectional:
            return idxs + [layer.hidden_size + j for j in idxs]
        return idxs

    def check_layer(self, layer: nn.RNNBase, side: str) -> None:
        super().check_layer(layer, side)
        if getattr(layer, "proj_size", 0):
            raise self.error(
                layer, side, None, f"LSTMs with projections (proj_size={layer.proj_size}) are not supported",
                "leave this layer out of pruning (ignored_layers), or use proj_size=0",
            )
        if layer.mode not in _GATES:
            raise self.error(layer, side, None, f"unknown recurrent mode {layer.mode!r}",
                             "register a customised pruner for this layer type")

    @staticmethod
    def _directions(layer: nn.RNNBase) -> list[str]:
        return ["", "_reverse"] if layer.bidirectional else [""]

    def remove(self, layer: nn.RNNBase, idxs: list[int], side: str) -> None:
        """Out: hidden units ``idxs`` from every layer and direction; in: input features ``idxs`` (columns of
        ``weight_ih_l0`` and its reverse)."""
        edit = LayerEdit()
        if side == "out":
            h = layer.hidden_size
            keep = keep_indices(h, idxs)
            rows = gate_rows(keep, h, _GATES[layer.mode])
            below = keep + [h + j for j in keep] if layer.bidirectional else keep
            for k in range(layer.num_layers):
                for sfx in self._directions(layer):
                    edit.select(layer, f"weight_ih_l{k}{sfx}", (0, rows), *([(1, below)] if k > 0 else []))
                    edit.select(layer, f"weight_hh_l{k}{sfx}", (0, rows), (1, keep))
                    edit.select(layer, f"bias_ih_l{k}{sfx}", (0, rows)).select(layer, f"bias_hh_l{k}{sfx}", (0, rows))
            edit.set(layer, "hidden_size", len(keep))
        else:
            keep = keep_indices(layer.input_size, idxs)
            for sfx in self._directions(layer):
                edit.select(layer, f"weight_ih_l0{sfx}", (1, keep))
            edit.set(layer, "input_size", len(keep))
        edit.apply(finalize=lambda: refresh_flat_weights(layer))


class LSTMPruner(RNNPruner):
    """Prunes ``nn.LSTM`` (4 gates per hidden unit); see :class:`RNNPruner`."""

    TARGET_MODULES = (nn.LSTM,)


class GRUPruner(RNNPruner):
    """Prunes ``nn.GRU`` (3 gates per hidden unit); see :class:`RNNPruner`."""

    TARGET_MODULES = (nn.GRU,)


RNN_PRUNER, LSTM_PRUNER, GRU_PRUNER = RNNPruner(), LSTMPruner(), GRUPruner()
prune_lstm_out_channels, prune_lstm_in_channels = LSTM_PRUNER.pruning_fns()
prune_gru_out_channels, prune_gru_in_channels = GRU_PRUNER.pruning_fns()
prune_rnn_out_channels, prune_rnn_in_channels = RNN_PRUNER.pruning_fns()


def recurrent_channel_map(ctx, module: nn.RNNBase, name: str, call, x) -> None:
    """Reads the last dim of its input; the initial states and every output carry the hidden units (twice in the
    output of a bidirectional layer: forward then backward)."""
    in_ids, hid = ctx.channels(module, name, "in"), ctx.channels(module, name, "out")
    ctx.consume(x, -1, in_ids, name)
    if getattr(module, "proj_size", 0):
        ctx.fix(hid, f"{name} uses proj_size, which is not prunable")
    for h in call.inputs[1:]:  # initial states (h0, c0): hidden size on the last dim
        if h.ndim and h.shape[-1] == hid.numel():
            ctx.consume(h, -1, hid, name)
        else:
            ctx.fix(h, f"initial state of {name}")
    dirs = 2 if module.bidirectional else 1
    outs = call.outputs
    if outs:
        o = outs[0]
        ctx.label(o, o.ndim - 1, hid.repeat(dirs) if o.shape[-1] == dirs * hid.numel() else None)
        for st in outs[1:]:
            ctx.label(st, st.ndim - 1, hid if st.shape[-1] == hid.numel() else None)


def recurrent_parts(layer: nn.RNNBase, space, idx) -> list:
    """Out (hidden unit ``j``): rows ``q*H+j`` of every gate block ``q`` of every weight and bias in every layer and
    direction, column ``j`` of ``weight_hh``, columns ``j`` (and ``H+j``) of ``weight_ih`` above the first layer;
    in: columns of ``weight_ih_l0`` (and ``_reverse``)."""
    dirs = ["", "_reverse"] if layer.bidirectional else [""]
    if space.side == "in":
        return [Part(getattr(layer, f"weight_ih_l0{sfx}"), Rows(1, idx), False) for sfx in dirs]
    gates = _GATES.get(layer.mode, 1)
    parts = []
    for k in range(layer.num_layers):
        for sfx in dirs:
            wih, whh = getattr(layer, f"weight_ih_l{k}{sfx}"), getattr(layer, f"weight_hh_l{k}{sfx}")
            parts += gate_parts(layer, (f"weight_ih_l{k}{sfx}", f"weight_hh_l{k}{sfx}"), gates, idx, False)
            parts.append(Part(whh, Rows(1, idx), False))
            if k > 0:  # the layer below's outputs: [forward H | backward H] when bidirectional
                parts.append(Part(wih, blocks(len(dirs), 1, idx), False))
            parts += gate_parts(layer, (f"bias_ih_l{k}{sfx}", f"bias_hh_l{k}{sfx}"), gates, idx, True)
    return parts


RECURRENT_FAMILY = register_family(LayerFamily(
    "recurrent", RNN_PRUNER, channel_map=recurrent_channel_map, parts=recurrent_parts, root=True,
    standard_types=(nn.LSTM, nn.GRU, nn.RNN),
))
