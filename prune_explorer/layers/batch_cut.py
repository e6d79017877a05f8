"""Cutting many layers in one pass: every cut's :class:`~.edits.CutSpec` read first, each tensor copied once.

A batch of cuts (``DG.prune_groups``: one cut per member space, a conv often losing output channels to one group
and input channels to another) is given as ``(layer, pruner, side, checked indices)``. :func:`cut_layers` asks each
pruner for its cut as data (:meth:`~.base.BasePruningFunc.cut_spec`), sets the attributes at once (a later cut of
the same layer reads them, as it would after the earlier cut), composes the selections of every tensor (a second
selection along a dim indexes the first one's kept entries), and builds each new tensor from the original once: one
``index_select`` per cut dim, the leading dim first, then the same for its ``.grad``; ``requires_grad`` and a
channels-last layout are kept, as :meth:`~.edits.LayerEdit.select` keeps them. The result is the tensors and
attributes that pruning the layers cut after cut leaves, without a :class:`~.edits.LayerEdit` per cut.

Only pruners whose own class declares :attr:`~.base.BasePruningFunc.COMPOSABLE_CUTS` may be given (their
``cut_spec`` reads attributes, not tensors). A cut whose pruner gives no spec is made by its pruner's ``remove``,
after the pending selections of that layer are copied.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

import numpy as np
import torch

from .edits import _selected, assign, index_array, read

__all__ = ["cut_layers"]


def cut_layers(cuts: Iterable[Tuple[Any, Any, str, Any]]) -> None:
    """Make the cuts ``(layer, pruner, side, idxs)`` in order: ``idxs`` are what ``pruner.check(layer, idxs, side)``
    returned on the layer as it is when the call starts (a layer cut again is checked again, on its cut state).

    Not atomic: on an exception the layers may be left partly cut, and the caller puts them back (the dependency
    graph snapshots every member's module before a batch, :mod:`prune_explorer.graph.edit.records`).

    >>> import torch.nn as nn
    >>> from prune_explorer.layers import CONV_PRUNER
    >>> conv = nn.Conv2d(4, 6, 3)
    >>> cut_layers([(conv, CONV_PRUNER, "out", CONV_PRUNER.check(conv, [0, 5], "out")),
    ...             (conv, CONV_PRUNER, "in", CONV_PRUNER.check(conv, [1], "in"))])
    >>> conv, tuple(conv.weight.shape)
    (Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1)), (4, 3, 3, 3))
    """
    pending: Dict[tuple, list] = {}  # (id(module), name) -> [module, name, (dim, keep) of every selection so far]
    touched = set()  # ids of the layers cut so far
    for layer, pruner, side, idxs in cuts:
        key = id(layer)
        if key in touched:
            idxs = pruner.check(layer, idxs, side)  # its size changed with an earlier cut of this batch
        if not len(idxs):
            continue
        touched.add(key)
        spec = pruner.cut_spec(layer, idxs, side)
        if spec is None:  # its remove reads the tensors: the selections pending are copied first
            _copy(pending)
            pending.clear()
            pruner.remove(layer, idxs, side)
            continue
        for obj, name, dims_keeps, value in spec.items:
            if dims_keeps is None:
                assign(obj, name, value)
                continue
            entry = pending.get((id(obj), name))
            if entry is None:
                pending[(id(obj), name)] = [obj, name, dims_keeps]
            else:
                entry[2] = entry[2] + dims_keeps
    _copy(pending)


def _copy(pending: Dict[tuple, list]) -> None:
    """Replace each tensor ``module.name`` of ``pending`` by its entries that its selections keep (each index array
    made a tensor once)."""
    index: Dict[Any, tuple] = {}  # id(keep) (and the device, off the CPU) -> (keep, its index tensor)

    def index_of(keep: Any, device: torch.device) -> torch.Tensor:
        key = id(keep) if device.type == "cpu" else (id(keep), device)
        hit = index.get(key)
        if hit is None or hit[0] is not keep:
            t = torch.from_numpy(index_array(keep))
            hit = index[key] = (keep, t if device.type == "cpu" else t.to(device))
        return hit[1]

    for module, name, dims_keeps in pending.values():
        old = read(module, name)
        if old is None:
            continue
        if len(dims_keeps) > 1:  # composed: a second selection along a dim indexes the first one's kept entries
            keeps: Dict[int, np.ndarray] = {}
            nd = old.dim()
            for dim, keep in dims_keeps:
                d, k = dim % nd, index_array(keep)
                keeps[d] = keeps[d][k] if d in keeps else k
            dims_keeps = sorted(keeps.items())  # the leading dim first: whole rows, then the others
        assign(module, name, _selected(old, dims_keeps, index_of))
