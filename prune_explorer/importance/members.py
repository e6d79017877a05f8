"""Which weights belong to which channel: the per-member slicing every importance criterion is built on.

A group member is one side of one layer (``dep.space``) and the channel indices ``idxs`` it loses. For each
member, :func:`channel_parts` returns the *parts* of the layer's parameters that the channels own, as
``Part(param, select, is_bias)``: ``select(t)`` takes a tensor shaped like ``param`` (its data, its gradient, an
accumulated Hessian...) and returns a 2-D tensor ``[len(idxs), k]`` whose row ``r`` holds every entry of ``t``
that belongs to channel ``idxs[r]``. Selection is done with ``index_select`` / advanced indexing, so it is
differentiable (the regularizers use that) and never aliases the parameter.

What a channel owns, per layer family (current sizes, ``G`` = groups)::

    Conv out            weight rows ``o`` (weight[o]), bias[o]
    Conv in             dense: weight[:, i]; grouped: weight rows of i's group, column i % (in/G)
    ConvTranspose       the same with the two weight dims swapped
    depthwise conv      (one space for in and out) weight[c], bias[c]
    Linear out / in     weight[o] and bias[o] / weight[:, i]
    BN, IN, GN, PReLU   weight[c], bias[c] (affine only)
    LayerNorm, RMSNorm  weight[..., c], bias[..., c]
    Embedding           weight[:, c]
    MultiheadAttention  rows c, E+c, 2E+c and column c of in_proj_weight (or q/k/v_proj_weight), in_proj_bias,
                        bias_k/bias_v[..., c], out_proj.weight row c and column c, out_proj.bias[c]
    LSTM / GRU / RNN    out (hidden unit j): rows q*H+j of every gate block q of every weight_ih/weight_hh/bias in
                        every layer and direction, column j of weight_hh, columns j (and H+j) of weight_ih of the
                        layers above the first; in: columns of weight_ih_l0 (and _reverse)
    loose Parameter     entries along ``dep.space.dim``
    other (custom)      every own parameter with a dim of the channel count (dim 0 preferred for "out", dim 1 for
                        "in", else the first such dim)

Members that own no parameter (a non-affine norm, a PReLU with one shared weight) return no part.
"""

from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Sequence

import torch
import torch.nn as nn

from .._index import long_tensor

__all__ = ["Part", "channel_parts"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


class Part(NamedTuple):
    """``select(t)`` -> ``[n_channels, k]``: the entries of a tensor shaped like ``param`` owned by each channel."""

    param: torch.Tensor
    select: Callable[[torch.Tensor], torch.Tensor]
    is_bias: bool


class _Rows:
    """Entries along ``dim`` -> rows: ``t.index_select(dim, idx)`` with ``dim`` moved first, flattened to
    ``[len(idx), k]``. :meth:`power_sum` gives each row's ``sum |x|^p`` without gathering the rows (reductions over
    a strided gather are up to 20x slower than over the tensor in place)."""

    __slots__ = ("dim", "idx", "n", "_whole")

    def __init__(self, dim: int, idx: torch.Tensor):
        self.dim, self.idx, self.n = dim, idx, idx.numel()
        self._whole = None

    def _covers(self, size: int) -> bool:
        """``idx`` is ``0, 1, ..., size - 1``: every channel, in order (no gather needed)."""
        if self.n != size or not size:
            return False
        if self._whole is None:
            arr = self.idx.numpy()
            self._whole = bool(arr[0] == 0 and arr[-1] == size - 1 and (arr[1:] > arr[:-1]).all())
        return self._whole

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self._covers(t.shape[self.dim]):
            return t.movedim(self.dim, 0).reshape(self.n, -1)
        return t.index_select(self.dim, self.idx.to(t.device)).movedim(self.dim, 0).reshape(self.n, -1)

    def power_sum(self, t: torch.Tensor, p: float) -> torch.Tensor:
        """``[len(idx)]``: ``sum |x|^p`` over each row of ``self(t)``, in float32."""
        t = t.float()
        v = t * t if p == 2 else (t.abs() if p == 1 else t.abs().pow(p))
        size = t.shape[self.dim]
        v = v.reshape(math.prod(t.shape[: self.dim]), size, -1)
        v = v.sum(2) if v.shape[2] > 1 else v.reshape(v.shape[0], size)
        v = v.sum(0) if v.shape[0] > 1 else v.reshape(size)
        if self._covers(size):
            return v
        return v.index_select(0, self.idx.to(v.device))


_rows = _Rows


def _blocks(n_blocks: int, dim: int, idx: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``t`` split along ``dim`` into ``n_blocks`` equal blocks (gates, q/k/v thirds); channel ``c`` owns entry ``c``
    of every block."""

    def f(t: torch.Tensor) -> torch.Tensor:
        shape = t.shape
        size = shape[dim] // n_blocks
        v = t.reshape(*shape[:dim], n_blocks, size, *shape[dim + 1 :])
        v = v.index_select(dim + 1, idx.to(t.device)).movedim(dim + 1, 0)
        return v.reshape(idx.numel(), -1)

    return f


def _grouped(groups: int, chan_dim: int, other_dim: int, idx: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Grouped conv, the side stored along ``chan_dim`` with ``per = size / groups`` entries per group: channel ``c``
    of group ``q = c // per_c`` owns entry ``c % per`` of ``chan_dim`` in the rows of group ``q`` along ``other_dim``."""

    def f(t: torch.Tensor) -> torch.Tensor:
        idx_d = idx.to(t.device)
        n_other = t.shape[other_dim]
        per_other = n_other // groups
        per = t.shape[chan_dim]  # entries per group on the channel side (the weight stores one group's worth)
        q = torch.div(idx_d, per, rounding_mode="floor")
        off = idx_d - q * per
        tt = t.movedim(other_dim, 0).movedim(chan_dim if chan_dim > other_dim else chan_dim + 1, 1)
        tt = tt.reshape(groups, per_other, per, -1)
        sel = tt[q, :, off, :]  # [n, per_other, k]
        return sel.reshape(idx.numel(), -1)

    return f


def _param(module: nn.Module, name: str):
    p = getattr(module, name, None)
    return p if isinstance(p, torch.Tensor) else None


def _conv_parts(layer, side: str, passthrough: bool, idx: torch.Tensor) -> List[Part]:
    w, b = _param(layer, "weight"), _param(layer, "bias")
    parts: List[Part] = []
    transposed = bool(getattr(layer, "transposed", False))
    g = layer.groups
    out_dim, in_dim = (1, 0) if transposed else (0, 1)
    if passthrough:  # depthwise: weight dim 0 holds the channel either way (in=out=groups)
        parts.append(Part(w, _rows(0, idx), False))
        if b is not None:
            parts.append(Part(b, _rows(0, idx), True))
        return parts
    if side == "out":
        if g == 1 or not transposed:
            parts.append(Part(w, _rows(out_dim, idx), False))
        else:
            parts.append(Part(w, _grouped(g, out_dim, in_dim, idx), False))
        if b is not None:
            parts.append(Part(b, _rows(0, idx), True))
    else:
        if g == 1 or transposed:
            parts.append(Part(w, _rows(in_dim, idx), False))
        else:
            parts.append(Part(w, _grouped(g, in_dim, out_dim, idx), False))
    return parts


def _mha_parts(layer: nn.MultiheadAttention, idx: torch.Tensor) -> List[Part]:
    parts: List[Part] = []
    w = _param(layer, "in_proj_weight")
    if w is not None:
        parts.append(Part(w, _blocks(3, 0, idx), False))
        parts.append(Part(w, _rows(1, idx), False))
    e = layer.embed_dim
    for name, dim_in in (("q_proj_weight", True), ("k_proj_weight", layer.kdim == e), ("v_proj_weight", layer.vdim == e)):
        p = _param(layer, name)
        if p is not None:
            parts.append(Part(p, _rows(0, idx), False))
            if dim_in:
                parts.append(Part(p, _rows(1, idx), False))
    b = _param(layer, "in_proj_bias")
    if b is not None:
        parts.append(Part(b, _blocks(3, 0, idx), True))
    for name in ("bias_k", "bias_v"):
        p = _param(layer, name)
        if p is not None:
            parts.append(Part(p, _rows(p.dim() - 1, idx), True))
    out = layer.out_proj
    parts.append(Part(out.weight, _rows(0, idx), False))
    parts.append(Part(out.weight, _rows(1, idx), False))
    if out.bias is not None:
        parts.append(Part(out.bias, _rows(0, idx), True))
    return parts


def _rnn_parts(layer: nn.RNNBase, side: str, idx: torch.Tensor) -> List[Part]:
    parts: List[Part] = []
    dirs = ["", "_reverse"] if layer.bidirectional else [""]
    if side == "in":
        for sfx in dirs:
            parts.append(Part(getattr(layer, f"weight_ih_l0{sfx}"), _rows(1, idx), False))
        return parts
    gates = _GATES.get(layer.mode, 1)
    for k in range(layer.num_layers):
        for sfx in dirs:
            wih = getattr(layer, f"weight_ih_l{k}{sfx}")
            whh = getattr(layer, f"weight_hh_l{k}{sfx}")
            parts.append(Part(wih, _blocks(gates, 0, idx), False))
            parts.append(Part(whh, _blocks(gates, 0, idx), False))
            parts.append(Part(whh, _rows(1, idx), False))
            if k > 0:  # the layer below's outputs: [forward H | backward H] when bidirectional
                parts.append(Part(wih, _blocks(len(dirs), 1, idx), False))
            for bname in (f"bias_ih_l{k}{sfx}", f"bias_hh_l{k}{sfx}"):
                b = _param(layer, bname)
                if b is not None:
                    parts.append(Part(b, _blocks(gates, 0, idx), True))
    return parts


def _generic_parts(layer, side: str, n_channels: int, idx: torch.Tensor) -> List[Part]:
    """A layer type this module does not know: every own parameter with a dim of the channel count."""
    parts: List[Part] = []
    if not isinstance(layer, nn.Module):
        return parts
    pref = 0 if side == "out" else 1
    for name, p in layer.named_parameters(recurse=False):
        if p.dim() == 0:
            continue
        dims = [d for d in range(p.dim()) if p.shape[d] == n_channels]
        if not dims:
            continue
        d = pref if pref in dims else dims[0]
        parts.append(Part(p, _rows(d, idx), name.endswith("bias")))
    return parts


def channel_parts(dep, idxs: Sequence[int]) -> List[Part]:
    """The parameter parts owned by channels ``idxs`` (current indices) of member ``dep`` (see the module doc)."""
    space = dep.space
    layer = space.owner
    idx = long_tensor(idxs)
    if idx.numel() == 0:
        return []
    if space.dim is not None:  # a loose parameter
        return [Part(layer, _rows(space.dim % layer.dim(), idx), False)]
    side = space.side
    if isinstance(layer, nn.modules.conv._ConvNd):
        return _conv_parts(layer, side, space.passthrough, idx)
    if isinstance(layer, nn.Linear):
        w, b = layer.weight, _param(layer, "bias")
        if side == "out":
            return [Part(w, _rows(0, idx), False)] + ([Part(b, _rows(0, idx), True)] if b is not None else [])
        return [Part(w, _rows(1, idx), False)]
    if isinstance(layer, nn.MultiheadAttention):
        return _mha_parts(layer, idx)
    if isinstance(layer, nn.RNNBase):
        return _rnn_parts(layer, side, idx)
    if isinstance(layer, (nn.Embedding, nn.EmbeddingBag)):
        return [Part(layer.weight, _rows(1, idx), False)] if side == "out" else []
    if hasattr(layer, "normalized_shape"):  # LayerNorm, RMSNorm: the channel is the last normalised dim
        out = []
        for name, is_bias in (("weight", False), ("bias", True)):
            p = _param(layer, name)
            if p is not None:
                out.append(Part(p, _rows(p.dim() - 1, idx), is_bias))
        return out
    if isinstance(layer, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.PReLU)):
        out = []
        for name, is_bias in (("weight", False), ("bias", True)):
            p = _param(layer, name)
            if p is not None and p.numel() > 1:
                out.append(Part(p, _rows(0, idx), is_bias))
        return out
    return _generic_parts(layer, side, space.current_size, idx)
