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
    a = np.concatenate([np.asarray(p, dtype=np.int64).ravel() for p in a_parts])
    b = np.concatenate([np.asarray(p, dtype=np.int64).ravel() for p in b_parts])
    keep = a != b
    a, b = a[keep], b[keep]
    if a.size == 0:
        return parent
    first = True
    while True:
        if first:  # every id is its own root, and a != b: every pair hooks (no gather, no mask)
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
