"""Which weights belong to which channel: the per-member slicing every importance criterion is built on.

A group member is one side of one layer (``dep.space``) and the channel indices ``idxs`` it loses. For each
member, :func:`channel_parts` returns the *parts* of the layer's parameters that the channels own, as
``Part(param, select, is_bias)``: ``select(t)`` takes a tensor shaped like ``param`` (its data, its gradient, an
accumulated Hessian...) and returns a 2-D tensor ``[len(idxs), k]`` whose row ``r`` holds every entry of ``t``
that belongs to channel ``idxs[r]`` (see :mod:`prune_explorer.layers.slicing`).

What a channel owns is part of its layer family's definition (``LayerFamily.parts``, next to the family's pruner
in :mod:`prune_explorer.layers`): conv rows / columns (grouped and transposed layouts included), linear rows /
columns, norm scales and shifts, attention projections, recurrent gates, loose parameters along their pruned dim.
A layer of no known family (one with a customised pruner) owns every parameter of its own that has a dim of the
channel count (dim 0 preferred for "out", dim 1 for "in", else the first such dim). Members that own no parameter
(a non-affine norm, a PReLU with one shared weight) return no part.

>>> import torch, torch.nn as nn, prune_explorer as pe
>>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1))
>>> dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 8, 8))
>>> group = dg.get_pruning_group(m[0], pe.prune_conv_out_channels, [2, 5])
>>> [(tuple(p.param.shape), tuple(p.select(p.param).shape)) for p in channel_parts(group[0].dep, group[0].idxs)]
[((8, 3, 3, 3), (2, 27)), ((8,), (2, 1))]
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn as nn

from .._index import long_tensor
from ..layers.family import FAMILIES
from ..layers.slicing import Part, Rows
from .held import active

__all__ = ["Part", "channel_parts", "raw_channel_parts", "parts_at"]


def _generic_parts(layer, side: str, n_channels: int, idx) -> List[Part]:
    """A layer of no known family: every own parameter with a dim of the channel count."""
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
        parts.append(Part(p, Rows(d, idx), name.endswith("bias")))
    return parts


def channel_parts(dep, idxs: Sequence[int]) -> List[Part]:
    """The parameter parts owned by channels ``idxs`` (current indices) of member ``dep`` (see the module doc).

    While a decision reads through held cuts (:mod:`.held`), ``idxs`` are positions on the uncut model and each part
    reads the tensor as the held cuts will leave it."""
    parts = raw_channel_parts(dep, idxs)
    held = active()
    return parts if held is None or not parts else [held.wrap(p) for p in parts]


def raw_channel_parts(dep, idxs: Sequence[int]) -> List[Part]:
    """:func:`channel_parts` on the model as it is (no held cuts)."""
    idx = long_tensor(idxs)
    if idx.numel() == 0:
        return []
    return parts_at(dep, idx)


def parts_at(dep, idx: torch.Tensor) -> List[Part]:
    """:func:`raw_channel_parts` of the channels ``idx`` (a non-empty 1-d ``torch.long`` tensor, on the CPU), handed
    to the layer family as it is: a plain part selects through this very tensor as a rule (``Rows(dim, idx)``), which
    :meth:`~.held.HeldCuts._read_layout` tells by identity, without comparing indices."""
    space = dep.space
    layer = space.owner
    family = FAMILIES.family_of(layer)
    if family is not None and family.parts is not None:
        return family.parts(layer, space, idx)
    return _generic_parts(layer, space.side, space.current_size, idx)
