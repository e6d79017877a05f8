"""Fast conversions of channel-index sequences (lists, arrays, tensors) to int64 numpy arrays and torch tensors.

``torch.as_tensor(list_of_ints)`` costs about 0.1 µs per element, ten times ``np.fromiter``; the pruning hot paths
(importance, layer pruning, planning) convert thousands of indices per group, so they go through these helpers.
They trust their input to be integers (callers that face user input validate it first, see
:func:`prune_explorer.layers.base.normalize_indices`).

>>> long_array([3, 1]).tolist(), long_tensor(range(3)).tolist()
([3, 1], [0, 1, 2])
>>> unique_ints(np.array([5, 2, 5, 7, 2])).tolist()
[2, 5, 7]
>>> concat_ranges(np.array([10, 3]), np.array([2, 3])).tolist()
[10, 11, 3, 4, 5]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["long_array", "long_tensor", "unique_ints", "concat_ranges"]


def long_array(idxs: Any) -> np.ndarray:
    """``idxs`` (list, tuple, range, numpy array or tensor of ints) as a 1-D ``int64`` numpy array."""
    if isinstance(idxs, np.ndarray):
        return idxs.reshape(-1).astype(np.int64, copy=False)
    if isinstance(idxs, torch.Tensor):
        return idxs.detach().reshape(-1).to("cpu", torch.long).numpy()
    if not isinstance(idxs, (list, tuple, range)):
        idxs = list(idxs)
    return np.fromiter(idxs, dtype=np.int64, count=len(idxs))


def long_tensor(idxs: Any, device: Any = None) -> torch.Tensor:
    """``idxs`` as a 1-D ``torch.long`` tensor on ``device`` (CPU when None)."""
    if isinstance(idxs, torch.Tensor):
        t = idxs.detach().reshape(-1).to(torch.long)
    else:
        t = torch.from_numpy(long_array(idxs))
    return t if device is None else t.to(device)


def unique_ints(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` for a 1-D integer array (sorted, duplicate-free), by a sort: numpy 2.3+ answers ``np.unique``
    through a hash table, about 20 times slower on the tens of thousands of channel ids of a large group."""
    s = np.sort(a)
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``int64 [lengths.sum()]``: the ranges ``starts[i], starts[i] + 1, ..., starts[i] + lengths[i] - 1``, one after
    another (the positions of blocks laid end to end, in a flat array that holds them elsewhere)."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
