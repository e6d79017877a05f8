"""Attention heads handled by the pruner: separate q / k / v / o ``nn.Linear`` layers declared in ``num_heads``.

Why at the pruner level. The dependency graph follows channels through the head reshapes, but it cannot express
"remove whole heads" when the head count is written in the model code (``q.view(B, N, self.num_heads, -1)``
ties the same within-head offsets across every head), it fixes every channel when the head size is a literal
(``view(B, N, H, 64)``), and it currently keeps the value projection fixed in ``softmax(q k^T) @ v`` /
``scaled_dot_product_attention`` blocks. The usual HF / timm pattern with separate projections has a simple
structure, so the pruner handles it directly:

* ``q``: ``h_q`` heads of ``d`` features, ``k`` and ``v``: ``h_kv`` heads (``h_q = h_kv`` for multi-head
  attention, fewer for grouped-query attention), ``o`` reads ``h_q`` heads of ``v``'s head size;
* **head dims** (``prune_head_dims=True``): the same offsets are removed from every head of q, k, v and from
  the matching inputs of ``o``, so all heads keep one size;
* **whole heads** (``prune_num_heads=True``): a key/value head and the ``h_q / h_kv`` query heads that read it are
  removed together (one head each for plain multi-head attention), with the matching inputs of ``o``.

The block is found from ``num_heads``: the declared Linear layers that share a parent module; the value layer is
the one whose outputs the graph couples with the inputs of another Linear (the output projection ``o``); the
query is the one with more heads (or, for equal counts, the one whose name says q / query). After pruning, the
parent's attributes ``num_heads`` / ``num_key_value_heads`` / ``head_dim`` (and their common aliases) are updated
when they hold the old values; ``DG.undo()`` of such a pruning is detected and those attributes are restored.

Pruning goes through :func:`force_prune`, which removes explicitly listed member channels atomically with the
graph's own machinery (validation, snapshot, rollback, history, undo), whatever the graph's coupling says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch.nn as nn

from ..errors import PruningError
from ..graph.group import Dependency, Group, GroupItem

__all__ = ["ExplicitGroup", "force_prune", "AttentionBlock", "find_attention_blocks", "attention_groups"]

HEAD_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head", "heads")
KV_ATTRS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "n_kv_head")
HEAD_DIM_ATTRS = ("head_dim", "attention_head_size", "head_size", "d_head", "dim_head")
ALL_HEAD_ATTRS = ("all_head_size", "inner_dim")


class ExplicitGroup(Group):
    """A group whose members and units are listed explicitly instead of derived from the graph's channel classes.

    It behaves like a :class:`~prune_explorer.graph.Group` (iteration, ``root_idxs``, ``units``, ``details()``);
    ``select(idxs)`` keeps the given root channels plus their whole units, and ``prune()`` removes the listed
    channels of every member with :func:`force_prune`.
    """

    def __init__(self, graph, root_space, items: List[GroupItem], units: List[List[int]], kind: str = "explicit"):
        super().__init__(graph, root_space, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        self._explicit_items = items
        self._explicit_units = units
        self.kind = kind
        self.on_pruned = None  # callback(group, record) set by the owner (e.g. to update head counts)

    @property
    def items(self) -> List[GroupItem]:
        return self._explicit_items

    @property
    def units(self) -> List[List[int]]:
        return self._explicit_units

    def select(self, idxs: Sequence[int], validate: bool = True) -> "ExplicitGroup":
        wanted = {int(i) for i in (idxs.tolist() if hasattr(idxs, "tolist") else idxs)}
        cand = set(self.root_idxs)
        bad = sorted(wanted - cand)
        if bad:
            raise PruningError(
                f"channels {bad[:5]} of {self.root_space.label} are not candidates of this {self.kind} group "
                f"(candidates: {len(cand)} channels; see group.root_idxs)"
            )
        chosen = set()
        for u in self.units:
            if any(i in wanted for i in u):
                chosen.update(u)
        items = []
        for it in self.items:
            keep = [(i, r) for i, r in zip(it.idxs, it.root_idxs) if r in chosen]
            if keep or it is self.items[0]:
                items.append(GroupItem(it.dep, [i for i, _ in keep], [r for _, r in keep]))
        units = [u for u in self.units if set(u) <= chosen]
        sub = ExplicitGroup(self._graph, self.root_space, items, units, kind=self.kind)
        sub.on_pruned = self.on_pruned
        return sub

    def prune(self, idxs: Optional[Sequence[int]] = None, record_history: bool = True):
        group = self if idxs is None else self.select(idxs)
        rec = force_prune(self._graph, group, record_history=record_history)
        if group.on_pruned is not None:
            group.on_pruned(group, rec)
        return rec


def force_prune(graph, group: Group, record_history: bool = True):
    """Remove exactly the channels listed in ``group``'s items, atomically, and keep the graph in step.

    ``DG.prune_group(group, exact=True)``: the graph validates every member, prunes them all or none, marks exactly
    the listed channels as removed, records the history and makes the record undoable (``DG.undo()`` revives them).
    """
    return graph.prune_group(group, record_history=record_history, exact=True)


# ------------------------------------------------------------------------------------------------------------------
# attention blocks
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class _Op:
    record: object
    h_q: int
    h_kv: int
    attrs: Dict[str, object]


@dataclass
class AttentionBlock:
    """One attention block with separate projections: ``q``, ``k``, ``v`` (declared in ``num_heads``) and ``o``."""

    parent_name: str
    parent: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    names: Dict[str, str]
    h_q: int
    h_kv: int
    init_h_kv: int = 0
    init_head_dim: int = 0
    _ops: List[_Op] = field(default_factory=list)

    # ---- spaces and sizes ----------------------------------------------------------------------------------------
    def spaces(self, graph):
        def out(m):
            return next(s for s in graph.spaces_of(m) if s.side == "out")

        def inn(m):
            return next(s for s in graph.spaces_of(m) if s.side == "in")

        return out(self.q), out(self.k), out(self.v), inn(self.o)

    def head_dims(self, graph) -> Tuple[int, int]:
        q, _, v, _ = self.spaces(graph)
        return q.current_size // self.h_q, v.current_size // self.h_kv

    @property
    def modules(self) -> List[nn.Module]:
        return [self.q, self.k, self.v]

    def sync(self) -> None:
        """Restore head counts and parent attributes of prunings that ``DG.undo()`` reverted."""
        while self._ops and getattr(self._ops[-1].record, "undone", False):
            op = self._ops.pop()
            self.h_q, self.h_kv = op.h_q, op.h_kv
            for name, value in op.attrs.items():
                setattr(self.parent, name, value)

    # ---- groups --------------------------------------------------------------------------------------------------
    def group(self, graph, mode: str) -> ExplicitGroup:
        """All channels of the block as one explicit group rooted at ``q``'s outputs, with units of whole
        key/value head groups (``mode="heads"``) or of one offset in every head (``mode="dims"``)."""
        sq, sk, sv, so = self.spaces(graph)
        h_q, h_kv = self.h_q, self.h_kv
        rep = h_q // h_kv
        d, dv = self.head_dims(graph)
        root_node = graph.space_node(sq)

        def item(space, idxs, roots):
            dep = Dependency(sq.handler, space.handler, root_node, graph.space_node(space), space)
            return GroupItem(dep, list(idxs), list(roots))

        def v_root(head, off):  # the q channel a v / o channel is scored with
            return head * d + (off if dv == d else 0)

        q_idx = list(range(h_q * d))
        k_idx = list(range(h_kv * d))
        k_root = [(c // d) * rep * d + c % d for c in k_idx]
        v_idx = list(range(h_kv * dv))
        v_rt = [v_root((c // dv) * rep, c % dv) for c in v_idx]
        o_idx = list(range(h_q * dv))
        o_rt = [v_root(c // dv, c % dv) for c in o_idx]
        items = [item(sq, q_idx, q_idx), item(sk, k_idx, k_root), item(sv, v_idx, v_rt), item(so, o_idx, o_rt)]
        if mode == "heads":
            units = [list(range(g * rep * d, (g + 1) * rep * d)) for g in range(h_kv)]
        else:
            units = [[h * d + off for h in range(h_q)] for off in range(d)]
        g = ExplicitGroup(graph, sq, items, units, kind=f"attention-{mode}")
        g.on_pruned = lambda grp, rec, mode=mode: self._after_prune(graph, grp, rec, mode)
        return g

    def _after_prune(self, graph, group: ExplicitGroup, rec, mode: str) -> None:
        q_removed = len(group.items[0].idxs)
        q_old = next(s for s in graph.spaces_of(self.q) if s.side == "out").current_size + q_removed
        hd_old = q_old // self.h_q
        old = {"h_q": self.h_q, "h_kv": self.h_kv}
        attrs: Dict[str, object] = {}
        if mode == "heads":
            rep = self.h_q // self.h_kv
            groups_removed = q_removed // (rep * hd_old)
            new_hq, new_hkv = self.h_q - groups_removed * rep, self.h_kv - groups_removed
            attrs.update(_set_attrs(self.parent, HEAD_ATTRS, self.h_q, new_hq))
            attrs.update(_set_attrs(self.parent, KV_ATTRS, self.h_kv, new_hkv))
            attrs.update(_set_attrs(self.parent, ALL_HEAD_ATTRS, self.h_q * hd_old, new_hq * hd_old))
            self.h_q, self.h_kv = new_hq, new_hkv
        else:
            dims_removed = q_removed // self.h_q
            attrs.update(_set_attrs(self.parent, HEAD_DIM_ATTRS, hd_old, hd_old - dims_removed))
            attrs.update(_set_attrs(self.parent, ALL_HEAD_ATTRS, self.h_q * hd_old, self.h_q * (hd_old - dims_removed)))
        self._ops.append(_Op(rec, old["h_q"], old["h_kv"], attrs))


def _set_attrs(obj, names, old_value, new_value) -> Dict[str, object]:
    """Set each attribute of ``names`` that holds ``old_value`` (an int) to ``new_value``; returns the old values."""
    changed = {}
    for n in names:
        v = obj.__dict__.get(n, None)
        if isinstance(v, int) and not isinstance(v, bool) and v == old_value:
            changed[n] = v
            setattr(obj, n, new_value)
    return changed


def _name_score(name: str) -> int:
    leaf = name.rsplit(".", 1)[-1].lower()
    return int(leaf in ("q", "query", "q_proj", "to_q", "wq", "q_lin") or leaf.startswith("q"))


def find_attention_blocks(graph, model: nn.Module, num_heads: Dict[nn.Module, int]):
    """Find separate-projection attention blocks among the ``nn.Linear`` layers declared in ``num_heads``.

    Returns ``(blocks, unhandled)``: the :class:`AttentionBlock` list, and ``{module: reason}`` for declared Linear
    layers that belong to no recognisable block (they are then pruned through the graph's groups, with the same
    offsets removed from every head, where the graph allows it).
    """
    names = {m: n for n, m in model.named_modules()}
    declared = [(m, int(h)) for m, h in num_heads.items() if isinstance(m, nn.Linear)]
    unhandled: Dict[nn.Module, str] = {}
    if not declared:
        return [], unhandled
    cls = graph.channel_class
    declared_ids = {id(m) for m, _ in declared}
    # classes read by the inputs of each other Linear layer
    readers: Dict[int, List[nn.Module]] = {}
    for s in graph.spaces:
        if s.side == "in" and isinstance(s.owner, nn.Linear) and id(s.owner) not in declared_ids:
            for c in np.unique(cls[s.gids(s.alive_idx)]).tolist():
                readers.setdefault(c, []).append(s.owner)

    def out_classes(m):
        s = [s for s in graph.spaces_of(m) if s.side == "out"]
        return set(np.unique(cls[s[0].gids(s[0].alive_idx)]).tolist()) if s else set()

    by_parent: Dict[str, List[Tuple[nn.Module, int]]] = {}
    for m, h in declared:
        if m not in names:
            continue
        parent = names[m].rsplit(".", 1)[0] if "." in names[m] else ""
        by_parent.setdefault(parent, []).append((m, h))
    blocks = []
    for parent, layers in by_parent.items():
        def fail(reason):
            for m, _ in layers:
                unhandled[m] = reason

        outs = {id(m): out_classes(m) for m, _ in layers}
        values = []
        for m, h in layers:
            os_ = {id(o): o for c in outs[id(m)] for o in readers.get(c, [])}
            if os_:
                values.append((m, h, list(os_.values())))
        if len(layers) != 3 or len(values) != 1 or len(values[0][2]) != 1:
            fail(
                f"no separate q/k/v block under {parent or 'the model'!r}: need exactly three declared Linear layers "
                f"(q, k, v) of which one (v) feeds another Linear (the output projection); found {len(layers)} "
                f"declared, {len(values)} feeding a Linear"
            )
            continue
        v, h_v, (o,) = values[0]
        qk = [(m, h) for m, h in layers if m is not v]
        qk.sort(key=lambda mh: (mh[1], _name_score(names[mh[0]])), reverse=True)
        (q, h_q), (k, h_k) = qk
        if h_k != h_v or h_q % h_k:
            fail(f"head counts do not fit attention under {parent!r}: q {h_q}, k {h_k}, v {h_v} heads "
                 "(k and v need the same count, dividing q's)")
            continue
        sizes = (q.out_features, k.out_features, v.out_features, o.in_features)
        if q.out_features % h_q or k.out_features % h_k or v.out_features % h_v or o.in_features != h_q * (v.out_features // h_v) \
                or q.out_features // h_q != k.out_features // h_k:
            fail(f"layer sizes {sizes} (q.out, k.out, v.out, o.in) do not match {h_q} query / {h_k} key-value heads "
                 f"under {parent!r}")
            continue
        parent_mod = model.get_submodule(parent) if parent else model
        blk = AttentionBlock(parent, parent_mod, q, k, v, o,
                             {"q": names[q], "k": names[k], "v": names[v], "o": names[o]}, h_q, h_k)
        blk.init_h_kv = h_k
        blk.init_head_dim = q.out_features // h_q
        blocks.append(blk)
    return blocks, unhandled


def attention_groups(blocks: Sequence[AttentionBlock], graph, prune_num_heads: bool,
                     prune_head_dims: bool) -> Iterator[Union[ExplicitGroup, Tuple[AttentionBlock, str]]]:
    """The attention groups of a step, block by block (whole heads first, then head dims), each made against the
    model as it is when it is reached; ``(block, reason)`` for a mode that cannot be planned."""
    for blk in blocks:
        blk.sync()
        if prune_num_heads:
            yield blk.group(graph, "heads")
        if prune_head_dims:
            d, dv = blk.head_dims(graph)
            if d != dv:
                yield blk, f"head dims of q/k ({d}) and v ({dv}) differ, so dims cannot be removed in pairs"
            else:
                yield blk.group(graph, "dims")
