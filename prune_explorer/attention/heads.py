"""Attention blocks as the dependency graph sees them: heads, key-value heads, head size, and what was removed.

While tracing, every reshape that splits a channel dim into several dims (``view(B, N, self.num_heads,
self.head_dim)``, timm's ``reshape(B, N, 3, self.num_heads, self.head_dim)``, ``nn.MultiheadAttention``'s
``embed_dim``) is recorded with the channel ids of the grid it makes; those whose channels then meet an attention
product (``q @ k^T``, ``scaled_dot_product_attention``) are attention heads. :func:`attention_blocks` reads them
back at any time: per block (the module holding the projections), the heads and head size that are left, those
it had when the graph was built, and which heads (query-head indices) and head dims (offsets within a head) were
removed, in the original numbering. That is what a pruning plan records per block, and what the pruner's
``head_pruning_ratio`` counts.

>>> import torch, torch.nn as nn, prune_explorer as pe
>>> mha = nn.MultiheadAttention(16, 4, batch_first=True)
>>> class M(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.inp, self.attn, self.out = nn.Linear(3, 16), mha, nn.Linear(16, 2)
...     def forward(self, x):
...         h = self.inp(x)
...         return self.out(h + self.attn(h, h, h, need_weights=False)[0])
>>> m = M()
>>> dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 5, 3), head_pruning="heads")
>>> g = next(g for g in dg.get_all_groups() if g.kind == "attention-heads")
>>> _ = g.select(g.units[1]).prune()
>>> (blk,) = dg.attention_blocks()
>>> blk.name, blk.num_heads, blk.head_dim, blk.removed_heads
('attn', 3, 4, [1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch.nn as nn

from .._index import unique_ints
from ..graph.model.group import DIMS_KIND, HEADS_KIND

__all__ = ["AttentionHeads", "AttentionProducts", "attention_blocks", "attention_kind", "attention_products",
           "find_attention", "heads_of_layer", "HEADS_KIND", "DIMS_KIND"]


@dataclass
class AttentionHeads:
    """One attention block (see the module docstring). Counts are heads / channels; ``removed_heads`` are
    query-head indices and ``removed_head_dims`` offsets within a head, both in the block's original numbering."""

    name: str
    kind: str  # "heads" (whole heads are removed) or "dims" (the same offsets from every head)
    layers: Tuple[str, ...]
    num_heads: int
    num_key_value_heads: int
    head_dim: int
    initial_num_heads: int
    initial_num_key_value_heads: int
    initial_head_dim: int
    removed_heads: List[int] = field(default_factory=list)
    removed_head_dims: List[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-able form (what a plan stores per block)."""
        return dict(self.__dict__, layers=list(self.layers))


def find_attention(graph, tracer) -> Tuple[List[tuple], np.ndarray]:
    """The head splits of a finished trace whose channels meet an attention product (``q @ k^T``,
    ``scaled_dot_product_attention``, ``nn.MultiheadAttention``), as ``(splits, head_kind)`` for the graph to keep:
    ``splits`` lists ``(grid, head axis, head-dim axis, kind)``; ``head_kind`` says per class whether it is attention
    heads (kind 2, ``"attention-heads"``: whole heads are the units), head dims (kind 1, ``"attention-dims"``: one
    offset in every head) or neither (0)."""
    of, never = graph.classes.of, graph.classes.never
    contracted = np.zeros(of.size, dtype=bool)  # per channel id: met an attention product
    for t in tracer.contracted_ids:
        ids = t.numpy().reshape(-1)
        contracted[ids[ids >= 0]] = True
    splits = []
    head_kind = np.zeros(of.size, dtype=np.int8)  # per class: 0 none, 1 head dims, 2 whole heads
    for grid, h_axis, d_axis, free in tracer.head_splits:
        ids = grid.reshape(-1)
        ids = ids[ids > 0]
        if not ids.size or not contracted[ids].any():
            continue
        kind = 2 if free == h_axis else 1
        splits.append((grid, h_axis, d_axis, kind))
        if grid.shape[h_axis] == 1:
            continue  # one key-value head (multi-query attention): counted by attention_blocks, no unit of its own
        c = of[ids]
        c = c[~never[c]]
        head_kind[c] = np.maximum(head_kind[c], kind)
    return splits, head_kind


def attention_kind(head_kind: np.ndarray, classes: np.ndarray):
    """``"attention-heads"`` when ``classes`` include whole attention heads, ``"attention-dims"`` when they include
    head dims (one offset in every head), None for other channels (``head_kind``: from :func:`find_attention`)."""
    if not len(classes):
        return None
    k = int(head_kind[classes].max())
    return (DIMS_KIND, HEADS_KIND)[k - 1] if k else None


def _owner_name(graph, gid: int) -> Tuple[str, str]:
    """``(layer name, block name)`` of the layer owning channel ``gid``."""
    s = graph.space_of_channel(gid)
    name = s.name
    if isinstance(s.owner, nn.MultiheadAttention):
        return name, name
    return name, name.rpartition(".")[0]


def _alive_lines(alive: np.ndarray, axis: int) -> np.ndarray:
    other = tuple(a for a in range(alive.ndim) if a != axis)
    return alive.any(axis=other) if other else alive


def attention_blocks(graph) -> List[AttentionHeads]:
    """The attention blocks of ``graph`` as the model is now (see the module docstring)."""
    by_block: Dict[str, list] = {}
    for grid, h_axis, d_axis, kind in graph.head_splits:
        ids = grid.reshape(-1)
        first = ids[ids > 0]
        if not first.size:
            continue
        layer, block = _owner_name(graph, int(first[0]))
        alive = np.where(grid > 0, graph.alive_mask[np.maximum(grid, 0)], True)
        heads = _alive_lines(alive, h_axis)
        dims = _alive_lines(alive, d_axis)
        by_block.setdefault(block, []).append((layer, kind, heads, dims))
    out = []
    for block, splits in by_block.items():
        if all(s[2].size == 1 for s in splits):
            continue  # a single head (or a view that only adds a size-1 dim): no heads to count
        splits.sort(key=lambda s: -s[2].size)  # most heads first: the queries
        layer, kind, q_heads, q_dims = splits[0]
        kv_heads = min((s[2] for s in splits), key=lambda h: h.size)
        out.append(AttentionHeads(
            name=block, kind="heads" if kind == 2 else "dims",
            layers=tuple(dict.fromkeys(s[0] for s in splits)),
            num_heads=int(q_heads.sum()), num_key_value_heads=int(kv_heads.sum()), head_dim=int(q_dims.sum()),
            initial_num_heads=int(q_heads.size), initial_num_key_value_heads=int(kv_heads.size),
            initial_head_dim=int(q_dims.size),
            removed_heads=np.flatnonzero(~q_heads).tolist(), removed_head_dims=np.flatnonzero(~q_dims).tolist()))
    return out


def heads_of_layer(graph, layer) -> Optional[int]:
    """The head count the graph found in ``layer``'s output channels (None if it found no attention heads there)."""
    spaces = [s for s in graph.spaces_of(layer) if s.side == "out" or s.passthrough]
    if not spaces:
        return None
    lo, hi = spaces[0].offset, spaces[0].offset + spaces[0].size
    for grid, h_axis, _, _ in graph.head_splits:
        ids = grid.reshape(-1)
        ids = ids[ids > 0]
        if ids.size and lo <= int(ids[0]) < hi:
            return int(grid.shape[h_axis])
    return None


@dataclass
class AttentionProducts:
    """What the two products of one attention block cost in MACs, in terms of channel spaces (see
    :func:`attention_products`). ``q @ k^T`` costs ``tokens * keys * heads * head_dim``: proportional to the query
    channels, which the channel space ``query_space`` holds (``query_channels`` of them as built). ``attn @ v`` costs
    ``tokens * keys * heads * value_head_dim``: proportional to the value channels (``value_space``,
    ``value_channels`` as built: key-value heads x value head size) times ``heads / kv_heads``, a ratio pruning keeps
    (whole heads go by key-value group). Space indices are those of ``graph.spaces``."""

    name: str
    query_space: int
    query_channels: int
    value_space: int
    value_channels: int
    heads: int
    kv_heads: int

    def shares(self) -> Tuple[float, float]:
        """The fractions of the block's product MACs spent in ``q @ k^T`` and in ``attn @ v``, as built."""
        qk = float(self.query_channels)
        av = float(self.value_channels) * self.heads / max(self.kv_heads, 1)
        return qk / (qk + av), av / (qk + av)


def attention_products(graph) -> List[AttentionProducts]:
    """Per attention block, the channel spaces its ``q @ k^T`` and ``attn @ v`` products follow (as built).

    The query split is the block's split with the most heads; the value split is another split of the block whose
    channels are not coupled with the queries' (the keys' are: ``q @ k^T`` contracts them); when there is none
    (one fused split for q, k and v, as in ``nn.MultiheadAttention``), both products follow the query space."""
    of = graph.classes.of
    by_block: Dict[str, list] = {}
    for grid, h_axis, _d_axis, _kind in graph.head_splits:
        ids = grid.reshape(-1)
        ids = ids[ids > 0]
        if not ids.size:
            continue
        _, block = _owner_name(graph, int(ids[0]))
        by_block.setdefault(block, []).append((ids, int(grid.shape[h_axis])))
    out = []
    for block, splits in by_block.items():
        if all(h == 1 for _, h in splits):
            continue
        splits.sort(key=lambda s: -s[1])
        q_ids, heads = splits[0]
        q_classes = set(unique_ints(of[q_ids]).tolist())
        values = [s for s in splits[1:] if not set(unique_ints(of[s[0]]).tolist()) <= q_classes]
        v_ids, kv_heads = values[0] if values else (q_ids, heads)
        out.append(AttentionProducts(
            name=block, query_space=graph.space_of_channel(int(q_ids[0])).index, query_channels=int(q_ids.size),
            value_space=graph.space_of_channel(int(v_ids[0])).index, value_channels=int(v_ids.size), heads=heads,
            kv_heads=kv_heads))
    return out
