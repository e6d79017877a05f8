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

from typing import Sequence

import numpy as np


def connected_components(n: int, a_parts: Sequence[np.ndarray], b_parts: Sequence[np.ndarray]) -> np.ndarray:
    """Return ``labels`` (int64, shape ``(n,)``): the smallest id of each channel's component."""
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
