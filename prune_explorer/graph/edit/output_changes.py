"""What an explicit pruning changes in a model's outputs.

Channels that reach a model output are kept by the automatic tools (``get_all_groups``, the pruners), but a user may
ask for them explicitly (``DG.get_pruning_group(model.fc, pe.prune_linear_out_channels, idxs)`` removes classes
from a classifier). The graph then prunes them and warns with :func:`output_changes_message`, which names each
output whose shape changes; ``group.details()`` shows the same line before anything is pruned.
"""

from __future__ import annotations

import numpy as np


def output_changes_message(graph, killed: np.ndarray) -> str:
    """Which model outputs lose entries when the channels ``killed`` (global ids, still marked alive) are removed:
    ``"output[0] dim 1: 32 -> 29, output[1] dim 1: 32 -> 31"``; ``""`` if none."""
    killed = np.unique(killed)
    alive = graph.alive_mask
    parts = []
    for name, shape, fields in graph.state.outputs:
        for f in fields:
            hit = np.isin(f, killed)
            if not hit.any():
                continue
            labeled = f >= 0
            dead_before = labeled & ~alive[np.where(labeled, f, 0)] & ~hit
            dims = [d for d, n in enumerate(f.shape) if n > 1]
            if len(dims) == 1:
                d = dims[0]
                before = shape[d] - int(dead_before.sum())
                parts.append(f"{name} dim {d}: {before} -> {before - int(hit.sum())}")
            else:
                numel = int(np.prod(shape)) if shape else 1
                scale = numel // max(f.size, 1)
                before = numel - int(dead_before.sum()) * scale
                parts.append(f"{name}: {before} -> {before - int(hit.sum()) * scale} elements")
    return ", ".join(parts)
