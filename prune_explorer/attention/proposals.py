"""Attention heads in the pruner: what ``num_heads`` declarations mean, and head dims next to whole heads.

The dependency graph understands multi-head attention itself (see :mod:`prune_explorer.attention.heads`): built with
``head_pruning="heads"`` (the pruner does so when ``prune_num_heads=True``) the units of an attention group are
whole heads (with grouped-query attention: a key/value head and the query heads that read it); built with
``"dims"`` they are one offset in every head. Such groups have ``group.kind`` ``"attention-heads"`` or
``"attention-dims"``; the pruner removes ``head_pruning_ratio`` of the heads from the first (``prune_num_heads``)
and ``pruning_ratio`` of the head dims from the second (only with ``prune_head_dims``). The head counts, head sizes
and the configs that hold them follow (size attributes and :mod:`prune_explorer.attention.head_bookkeeping`).

``num_heads`` need not be declared. A declaration is checked against what the graph found (the same head count
for q / k / v / fused qkv / ``nn.MultiheadAttention`` layers); a declared layer whose heads the graph cannot see
(e.g. a head count hidden from the tracer) keeps the old behaviour: the same offsets are removed from every
declared head (:func:`~.units.tied_units`), and whole heads are not removed (the pruner records why).

:class:`HeadDimGroups` builds the head-dim groups of a graph traced for whole heads, as
:class:`~prune_explorer.graph.model.explicit.ExplicitGroup` objects.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch.nn as nn

from .._index import unique_ints
from ..errors import PruningError
from ..graph.edit.attribute_sizes import attribute_updates
from ..graph.model.explicit import ExplicitGroup
from ..graph.model.group import DIMS_KIND, Dependency, GroupItem
from .heads import heads_of_layer

__all__ = ["declared_heads", "HeadDimGroups"]


# ------------------------------------------------------------------------------------------------------------------
# num_heads declarations
# ------------------------------------------------------------------------------------------------------------------
def declared_heads(graph, num_heads: Dict[nn.Module, int], names: Dict[int, str]) -> Tuple[Dict[int, int], Dict[nn.Module, str]]:
    """Check ``num_heads`` against the graph. Returns ``(fallback, unseen)``: ``{id(layer): heads}`` of the declared
    layers whose heads the graph does not see (their same offsets are tied, as before), and ``{layer: reason}`` for
    the record. Raises :class:`~prune_explorer.PruningError` when a declaration contradicts the model's forward."""
    fallback: Dict[int, int] = {}
    unseen: Dict[nn.Module, str] = {}
    for m, h in num_heads.items():
        seen = heads_of_layer(graph, m)
        name = names.get(id(m), type(m).__name__)
        if seen is None:
            fallback[id(m)] = int(h)
            unseen[m] = (f"the traced forward does not split {name}'s outputs into attention heads (a head count or "
                         "size hidden from the tracer)")
        elif seen != int(h):
            raise PruningError(f"num_heads[{name}]={h}, but the model's forward splits its outputs into {seen} heads. "
                               f"Fix: declare {seen} (for grouped-query attention, k and v have num_key_value_heads), "
                               "or leave num_heads out: the heads are found automatically")
    return fallback, unseen


# ------------------------------------------------------------------------------------------------------------------
# head dims next to whole heads (prune_num_heads=True and prune_head_dims=True)
# ------------------------------------------------------------------------------------------------------------------
class HeadDimGroups:
    """Head-dim groups of a graph built for whole heads.

    A graph's channel classes are either whole heads or one offset in every head, not both. When the pruner removes
    whole heads *and* narrows the heads that are left (Torch-Pruning's ``prune_num_heads=True`` with
    ``prune_head_dims=True``), its graph is built for whole heads; the head dims come from a second graph, traced for
    head dims on the model as it is (after the heads were removed; traced again whenever the first graph changed).
    Its ``attention-dims`` groups become :class:`ExplicitGroup` objects on the first graph (same members, same
    current indices), pruned exactly and atomically by it together with the size attributes (``head_dim``...) the
    second graph rewrites for them.

    ``build_dims_graph()`` traces the model for head dims (the pruner passes its tracing options).
    """

    def __init__(self, graph, build_dims_graph, ignored_layers=()):
        self.graph = graph
        self.build_dims_graph = build_dims_graph
        self.ignored_layers = list(ignored_layers)
        self._cache = None  # (graph version, dims graph)
        self.initial_head_dims = {}  # layer name -> head size when the pruner was built
        for blk in graph.attention_blocks():
            for name in blk.layers:
                self.initial_head_dims[name] = blk.initial_head_dim

    def dims_graph(self):
        if self._cache is None or self._cache[0] != self.graph.version:
            self._cache = (self.graph.version, self.build_dims_graph())
        return self._cache[1]

    def groups(self) -> List[ExplicitGroup]:
        """The ``attention-dims`` groups as the model is now, on the first graph."""
        g2 = self.dims_graph()
        by_key = {(s.name, s.side, s.dim): s for s in self.graph.spaces}
        heads_now = {}
        for blk in self.graph.attention_blocks():
            for name in blk.layers:
                heads_now[name] = blk.head_dim
        out = []
        for grp in g2.get_all_groups(ignored_layers=self.ignored_layers):
            if grp.kind != DIMS_KIND:
                continue
            root1 = by_key.get((grp.root_space.name, grp.root_space.side, grp.root_space.dim))
            items = []
            for it in grp.items:
                s2 = it.dep.space
                s1 = by_key.get((s2.name, s2.side, s2.dim))
                if root1 is None or s1 is None or s1.current_size != s2.size:
                    items = None  # a member the first graph does not have as it is: not this group
                    break
                dep = Dependency(root1.handler, s1.handler, self.graph.space_node(root1), self.graph.space_node(s1), s1)
                items.append(GroupItem(dep, it.idx_array, it.root_array))
            if not items:
                continue
            eg = ExplicitGroup(self.graph, root1, items, [list(u) for u in grp.units], kind=DIMS_KIND)
            eg.attribute_updates = lambda sub, grp=grp, g2=g2: _attributes(g2, grp, sub)
            name = grp.root_space.name
            eg.head_dims = (self.initial_head_dims.get(name), heads_now.get(name))  # (initial, now)
            out.append(eg)
        return out


def _attributes(g2, group, sub: ExplicitGroup) -> list:
    """The size attributes the dims graph rewrites when ``sub``'s root channels leave (its channels were numbered on
    the model as it is, so ``sub``'s current indices are the dims graph's own)."""
    root = group.root_space
    classes = unique_ints(g2.classes.of[root.gids(np.asarray(sub.root_idxs, dtype=np.int64))])
    return attribute_updates(g2, g2.classes.members(classes, g2.alive_mask), sub.root_space.label)
