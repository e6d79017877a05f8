"""``slicing.grouped`` reads a grouped conv's rows exactly: channel ``c`` of group ``q = c // per`` is entry ``c %
per`` of the channel side in the rows of group ``q`` on the other side, ``[n, per_other * k]``, whether it lays every
channel's row out first (many channels) or indexes the few it reads; an index past the channels is an IndexError."""

from __future__ import annotations

import pytest
import torch

from prune_explorer.layers.slicing import grouped


def _reference(t: torch.Tensor, groups: int, chan_dim: int, other_dim: int, idx: torch.Tensor) -> torch.Tensor:
    """Channel by channel: the rows of its group along ``other_dim``, at its entry along ``chan_dim``."""
    per, per_other = t.shape[chan_dim], t.shape[other_dim] // groups
    rows = []
    for c in idx.tolist():
        q, off = divmod(c, per)
        block = t.narrow(other_dim, q * per_other, per_other).select(chan_dim, off)
        rows.append(block.reshape(per_other, -1).reshape(-1))  # other side first, then the rest (kernel)
    return torch.stack(rows)


CASES = [((208, 8, 3, 3), 26, 1, 0), ((24, 4, 3, 3), 6, 1, 0), ((16, 64, 3, 3), 8, 0, 1), ((64, 8), 8, 1, 0),
         ((12, 6, 1, 1), 3, 1, 0)]


@pytest.mark.parametrize("shape,groups,chan_dim,other_dim", CASES)
def test_grouped_rows_are_each_channels_rows(shape, groups, chan_dim, other_dim):
    g = torch.Generator().manual_seed(2)
    t = torch.randn(shape, generator=g)
    views = [t, t.transpose(-1, -2) if t.dim() == 4 else t.t().contiguous().t()]  # a strided layout too
    size = shape[chan_dim] * groups
    picks = [torch.arange(size), torch.arange(0, size, 2), torch.tensor([size - 1]), torch.arange(0, size, 7),
             torch.randperm(size, generator=g)[: size // 3 + 1], torch.arange(size).flip(0)]
    for x in views:
        for idx in picks:
            got = grouped(groups, chan_dim, other_dim, idx)(x)
            assert got.shape == (idx.numel(), x.numel() // size)
            assert torch.equal(got, _reference(x, groups, chan_dim, other_dim, idx)), (x.stride(), idx.tolist())


@pytest.mark.parametrize("idx", [[208], list(range(1, 209))])
def test_grouped_index_past_the_channels(idx):
    t = torch.randn(208, 8, 3, 3)
    with pytest.raises(IndexError):
        grouped(26, 1, 0, torch.tensor(idx))(t)
