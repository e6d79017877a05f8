"""Which parameter entries belong to which channel: the selectors a layer family uses to describe its weights.

A family's ``parts(layer, space, idx)`` (see :mod:`.family`) returns, for the channels ``idx`` of one side of a
layer, the *parts* of its parameters those channels own, as ``Part(param, select, is_bias)``: ``select(t)`` takes a
tensor shaped like ``param`` (its data, its gradient, an accumulated Hessian...) and returns a 2-D tensor
``[len(idx), k]`` whose row ``r`` holds every entry of ``t`` that belongs to channel ``idx[r]``. Selection uses
``index_select`` / advanced indexing, so it is differentiable (the regularizers rely on that) and never aliases the
parameter. The importance criteria are built on these parts (:mod:`prune_explorer.importance.members`).

>>> import torch
>>> w = torch.arange(12.).reshape(3, 4)           # a Linear weight: 3 output channels, 4 input channels
>>> Rows(0, torch.tensor([2]))(w)                  # output channel 2 owns weight row 2
tensor([[ 8.,  9., 10., 11.]])
>>> Rows(1, torch.tensor([0, 3]))(w)               # input channels 0 and 3 own columns 0 and 3
tensor([[ 0.,  4.,  8.],
        [ 3.,  7., 11.]])
>>> blocks(3, 0, torch.tensor([1]))(torch.arange(6.))   # 3 gate blocks of 2: channel 1 owns entries 1, 3, 5
tensor([[1., 3., 5.]])
"""

from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Sequence

import torch
import torch.nn as nn

from .edits import read

__all__ = ["Part", "Rows", "row_power_sums", "every_power_sum", "blocks", "grouped", "param_of", "affine_parts"]

Selector = Callable[[torch.Tensor], torch.Tensor]


class Part(NamedTuple):
    """``select(t)`` -> ``[n_channels, k]``: the entries of a tensor shaped like ``param`` owned by each channel."""

    param: torch.Tensor
    select: Selector
    is_bias: bool


#: rows of the leading dims reduced at a time by :meth:`Rows.power_sum` (a fixed count: each channel's sum is the
#: same whatever the other channels present, as held cuts require)
_BLOCK_ROWS = 128


class Rows:
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
        size = t.shape[self.dim]
        if 4 * self.n < size:  # a few channels of many (the inputs of a layer after a concatenation): gather them
            # first, so that scoring every group of a layer reads its weight about once, not once per group
            return row_power_sums(t.index_select(self.dim, self.idx.to(t.device)), self.dim, p)
        v = every_power_sum(t, self.dim, p)
        if self._covers(size):
            return v
        return v.index_select(0, self.idx.to(v.device))


def every_power_sum(t: torch.Tensor, dim: int, p: float) -> torch.Tensor:
    """``[t.shape[dim]]``: ``sum |x|^p`` of every entry along ``dim`` (over every other dim), in float32, reduced in
    place (the way :meth:`Rows.power_sum` takes for a quarter of the rows or more: its values for any rows are
    these at those rows)."""
    shape = t.shape
    size = shape[dim]
    lead = math.prod(shape[:dim]) if dim else 1
    if lead == 1 and p in (1, 2):  # channels lead (a weight's output side): one fused pass, no temporary
        t = t if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else t.float()
        v = torch.linalg.vector_norm(t.reshape(size, -1), p, dim=1, dtype=torch.float32)
        return v * v if p == 2 else v
    # over the leading dims first (outer reductions, vectorised along the channels), then the rest
    rows = (t if t.dtype == torch.float32 else t.float()).reshape(lead, -1)
    if lead <= _BLOCK_ROWS:  # one block: the rows themselves (the view rows[0:lead] is)
        b = _power(rows, p)
        v = b.sum(0) if lead > 1 else b.reshape(-1)
    else:  # |x|^p of a block of rows at a time: the temporary stays in cache (the blocks depend on ``lead`` only,
        # never on ``size``); the later blocks write it into the first block's (one allocation, not one per block)
        buf = _power(rows[:_BLOCK_ROWS], p)
        v = buf.sum(0)
        for start in range(_BLOCK_ROWS, lead, _BLOCK_ROWS):
            b = rows[start:start + _BLOCK_ROWS]
            sq = buf[:b.shape[0]]
            _power_into(b, p, sq)
            v.add_(sq.sum(0) if sq.shape[0] > 1 else sq.reshape(-1))
    if size and v.shape[0] == size:  # one entry per channel: v.reshape(size) is v
        return v
    v = v.reshape(size, -1)
    return v.sum(1) if v.shape[1] > 1 else v.reshape(size)


def _power(x: torch.Tensor, p: float) -> torch.Tensor:
    """``|x|^p`` as a new tensor (``x * x`` for ``p = 2``)."""
    return x * x if p == 2 else (x.abs() if p == 1 else x.abs().pow(p))


def _power_into(x: torch.Tensor, p: float, out: torch.Tensor) -> None:
    """``out[...] = |x|^p``: :func:`_power`'s values written into ``out`` (contiguous, of ``x``'s shape)."""
    if p == 2:
        torch.mul(x, x, out=out)
    else:
        torch.abs(x, out=out)
        if p != 1:
            out.pow_(p)


def row_power_sums(t: torch.Tensor, dim: int, p: float) -> torch.Tensor:
    """``[t.shape[dim]]``: ``sum |x|^p`` of each entry along ``dim`` over every other dim, in float32: ``|t|^p``
    written straight into a buffer laid out with the rows contiguous, each row then summed. A reduction over a
    strided view (``dim`` the last one with entries, as in a linear weight's inputs) would add in an order that
    depends on how many rows there are; the held reads (:mod:`prune_explorer.importance.held`) need a row's sum to be
    bit for bit the same whichever other rows are read with it."""
    n = t.shape[dim]
    x = t.movedim(dim, 0)
    if x.dtype != torch.float32:
        x = x.float()
    flat = _transposed(x, n)
    if flat is not None:  # a transposed matrix (a linear weight's or 1x1 conv's inputs): the rows laid out
        buf = torch.empty(flat.shape, dtype=torch.float32, device=x.device)  # contiguous by torch's transposing
        buf.copy_(flat)  # copy (several times faster than an element-wise op writing across layouts), then
        if p == 2:  # |x|^p in place: the same values
            buf.mul_(buf)
        else:
            buf.abs_()
            if p != 1:
                buf.pow_(p)
        return buf.sum(1)
    buf = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    _power_into(x, p, buf)
    return buf.reshape(n, -1).sum(1)


def _transposed(x: torch.Tensor, n: int):
    """``x`` (``n`` rows first) as an ``[n, k]`` view when that view is a contiguous ``[k, n]`` matrix transposed
    (``k > 1``, ``n > 1``), else None."""
    if x.dim() < 2 or n < 2 or x.stride(0) != 1:
        return None
    try:
        flat = x.view(n, -1)
    except RuntimeError:
        return None
    return flat if flat.shape[1] > 1 and flat.stride(1) == n else None


def blocks(n_blocks: int, dim: int, idx: torch.Tensor) -> Selector:
    """``t`` split along ``dim`` into ``n_blocks`` equal blocks (gates, q/k/v thirds); channel ``c`` owns entry ``c``
    of every block."""

    def select(t: torch.Tensor) -> torch.Tensor:
        shape = t.shape
        size = shape[dim] // n_blocks
        v = t.reshape(*shape[:dim], n_blocks, size, *shape[dim + 1:])
        v = v.index_select(dim + 1, idx.to(t.device)).movedim(dim + 1, 0)
        return v.reshape(idx.numel(), -1)

    return select


def grouped(groups: int, chan_dim: int, other_dim: int, idx: torch.Tensor) -> Selector:
    """Grouped conv, the side stored along ``chan_dim`` with ``per = size / groups`` entries per group: channel ``c``
    of group ``q = c // per`` owns entry ``c % per`` of ``chan_dim`` in the rows of group ``q`` along ``other_dim``."""

    def select(t: torch.Tensor) -> torch.Tensor:
        idx_d = idx.to(t.device)
        per_other = t.shape[other_dim] // groups
        per = t.shape[chan_dim]  # entries per group on the channel side (the weight stores one group's worth)
        tt = t.movedim(other_dim, 0).movedim(chan_dim if chan_dim > other_dim else chan_dim + 1, 1)
        tt = tt.reshape(groups, per_other, per, -1)
        if 4 * idx.numel() >= groups * per:
            # many channels: every channel's row laid out once ([groups * per, per_other * k], row c = q * per +
            # off), then the channels' rows (the same entries, fewer index ops than the indexing below)
            return tt.transpose(1, 2).reshape(groups * per, -1).index_select(0, idx_d)
        q = torch.div(idx_d, per, rounding_mode="floor")
        off = idx_d - q * per
        return tt[q, :, off, :].reshape(idx.numel(), -1)  # [n, per_other * k]

    return select


def param_of(module: nn.Module, name: str):
    """``module.name`` if it is a tensor (a parameter or buffer), else None (read from the module's dicts where
    ``getattr`` would only look there: :func:`~.edits.read`)."""
    p = read(module, name)
    return p if isinstance(p, torch.Tensor) else None


def affine_parts(layer: nn.Module, idx: torch.Tensor, dim_of: Callable[[torch.Tensor], int],
                 names: Sequence[str] = ("weight", "bias"), min_numel: int = 1) -> List[Part]:
    """Parts for per-channel affine parameters (norm scales and shifts): entry ``idx`` along ``dim_of(param)`` of
    each named parameter that exists and has at least ``min_numel`` entries; a parameter named ``bias`` is a bias."""
    out = []
    for name in names:
        p = param_of(layer, name)
        if p is not None and p.numel() >= min_numel:
            out.append(Part(p, Rows(dim_of(p), idx), name == "bias"))
    return out
