"""Connected components of "same channel" pairs, vectorised.

Tracing produces, for every coupling it discovers, a pair of arrays ``(a, b)`` of global channel ids meaning
"channel ``a[i]`` and channel ``b[i]`` must be removed together". :func:`connected_components` turns all pairs into a
class label per channel id in ``O((n + m) log n)`` numpy work (hooking + pointer jumping), without a Python loop
over channels.

Example::

    >>> import numpy as np
    >>> labels = connected_components(5, [np.array([0, 3])], [np.array([1, 4])])
    >>> labels.tolist()
    [0, 0, 2, 3, 3]
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..._index import concat_ranges


def connected_components(n: int, a_parts: Sequence[np.ndarray], b_parts: Sequence[np.ndarray],
                         ranges: Sequence[Tuple[int, int, int]] = ()) -> np.ndarray:
    """Return ``labels`` (int64, shape ``(n,)``): the smallest id of each channel's component.

    ``ranges``: more pairs, ``(a0, b0, k)`` for ``(a0 + i, b0 + i)``, ``i < k`` (two blocks of consecutive ids, see
    ``Couplings.pair_range``). Blocks joined by ranges are folded onto their lowest block first (:func:`_fold_blocks`),
    so only the other pairs go through the vectorised union-find; the labels are the same.

    >>> connected_components(8, [np.array([2])], [np.array([6])], ranges=[(4, 1, 2), (6, 4, 2)]).tolist()
    [0, 1, 1, 3, 1, 1, 1, 1]
    """
    if ranges:
        mapped = _fold_blocks(n, ranges)
        if mapped is None:  # blocks that are not whole, disjoint ones: every pair as such
            a, b = range_pairs(ranges)
            return connected_components(n, list(a_parts) + [a], list(b_parts) + [b])
        # the other pairs between the folded ids: the smallest folded id of a component is its smallest id (an id
        # folds onto a smaller id of its own component)
        labels = connected_components(n, [mapped[_flat_ids(a_parts)]] if a_parts else [],
                                      [mapped[_flat_ids(b_parts)]] if b_parts else [])
        return labels[mapped]
    parent = np.arange(n, dtype=np.int64)
    if not a_parts:
        return parent
    a = _flat_ids(a_parts)
    b = _flat_ids(b_parts)
    if a.size == 0:
        return parent
    first = True
    while True:
        if first:  # every id is its own root: every pair hooks (no gather, no mask; a pair a == b hooks a to itself)
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            first = False
        else:
            pa, pb = parent[a], parent[b]
            lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
            changed = lo != hi
            if not changed.any():
                break
            lo, hi = lo[changed], hi[changed]
        # hook every larger root under the smallest root it is paired with
        np.minimum.at(parent, hi, lo)
        # pointer jumping until every node points at its root
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent


def _flat_ids(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The id arrays of ``parts`` as one flat int64 array (no conversion for parts that are int64 already)."""
    flat = [p.reshape(-1) if isinstance(p, np.ndarray) and p.dtype == np.int64 else
            np.asarray(p, dtype=np.int64).reshape(-1) for p in parts]
    return flat[0] if len(flat) == 1 else np.concatenate(flat)


def range_pairs(ranges: Sequence[Tuple[int, int, int]]) -> Tuple[np.ndarray, np.ndarray]:
    """The pairs of ``ranges`` (``(a0, b0, k)``: ``(a0 + i, b0 + i)`` for ``i < k``) as two int64 arrays, in order.

    >>> [p.tolist() for p in range_pairs([(5, 1, 2), (9, 3, 1)])]
    [[5, 6, 9], [1, 2, 3]]
    """
    a0, b0, k = np.array(ranges, dtype=np.int64).reshape(-1, 3).T
    return concat_ranges(a0, k), concat_ranges(b0, k)


def _fold_blocks(n: int, ranges: Sequence[Tuple[int, int, int]]) -> Optional[np.ndarray]:
    """``mapped`` (int64, ``(n,)``): each id of a block of consecutive ids joined to others by ``ranges`` replaced by
    the id at the same offset of the lowest block it is joined to (every other id is itself). None unless each block
    start comes with one length and the blocks do not overlap (then the ranges are taken as plain pairs)."""
    length, parent = {}, {}
    for a0, b0, k in ranges:
        for s in (a0, b0):
            if length.setdefault(s, k) != k:
                return None
            parent.setdefault(s, s)

    def root(s):
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for a0, b0, _ in ranges:
        ra, rb = root(a0), root(b0)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    starts = sorted(length)
    ends = [s + length[s] for s in starts]
    if starts[0] < 1 or ends[-1] > n or any(e > s for e, s in zip(ends, starts[1:])):
        return None
    moved = [s for s in starts if root(s) != s]
    mapped = np.arange(n, dtype=np.int64)
    if moved:
        k = [length[s] for s in moved]
        ids, folded = range_pairs(list(zip(moved, [root(s) for s in moved], k)))
        mapped[ids] = folded
    return mapped
