"""Attention modules' own head bookkeeping, kept in line with their weights after pruning.

Attention modules store their head structure in int attributes: ``num_heads``, ``head_dim``,
``num_key_value_heads``, ``num_key_value_groups``, ``all_head_size``... Those the forward reads as sizes are
rewritten by the dependency graph itself (see :mod:`.attributes`); the others (Llama's ``num_heads``, BERT's
``all_head_size``) would keep their old values. :func:`sync_attention_modules` recomputes them from the weights
after each pruning and undo, so that code reading them (including the next pruning step and Hugging Face's config
sync) sees the model as it is. Only attributes a module already has are written, and only on modules that look
like attention: separate query / key projections (``q_proj`` / ``query`` / ``q``...) next to a head size or head
count attribute.

>>> import torch.nn as nn
>>> class Attn(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.num_heads, self.head_dim = 4, 8
...         self.q_proj, self.k_proj = nn.Linear(32, 32), nn.Linear(32, 16)
>>> a = Attn(); a.q_proj = nn.Linear(32, 16)   # two of four heads pruned
>>> [(w.heads, w.kv_heads, w.head_dim) for w in attention_modules(a)]
[(2, 2, 8)]
>>> sync_attention_modules(a); a.num_heads
2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["AttentionWidths", "attention_candidates", "attention_modules", "sync_attention_modules", "out_features",
           "child", "set_module_attrs", "attention_mismatches"]

#: child names of the query / key / value projections of an attention module
Q_NAMES = ("q_proj", "query", "q", "to_q", "wq", "q_lin")
K_NAMES = ("k_proj", "key", "k", "to_k", "wk", "k_lin")
V_NAMES = ("v_proj", "value", "v", "to_v", "wv", "v_lin")
#: int attributes of an attention module that hold its head size, head count, key-value head count...
HEAD_DIM_ATTRS = ("head_dim", "attention_head_size", "key_value_proj_dim", "head_size", "d_head", "dim_head")
HEADS_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head")
KV_HEADS_ATTRS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads")
ALL_HEAD_ATTRS = ("all_head_size", "inner_dim")
GROUPS_ATTR = "num_key_value_groups"
#: float attributes holding the attention temperature (``head_dim ** -0.5``)
SCALE_ATTRS = ("scaling", "scale")
def out_features(layer: nn.Module) -> Optional[int]:
    """Output width of a projection: ``nn.Linear``, transformers' ``Conv1D`` (weight ``(in, out)``), a 1x1 conv."""
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if type(layer).__name__ == "Conv1D" and hasattr(layer, "nf"):
        return int(layer.weight.shape[1])
    w = getattr(layer, "weight", None)
    return int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() >= 2 else None


def _int_attr(m: nn.Module, names) -> Tuple[Optional[str], Optional[int]]:
    for n in names:
        v = m.__dict__.get(n)
        if isinstance(v, int) and not isinstance(v, bool):
            return n, int(v)
    return None, None


def child(m: nn.Module, names) -> Optional[nn.Module]:
    """The first child of ``m`` named in ``names`` that is a projection (has an output width), or None."""
    for n in names:
        c = m._modules.get(n)
        if c is not None and out_features(c) is not None:
            return c
    return None


@dataclass
class AttentionWidths:
    """One attention module as its weights describe it now: ``heads`` query heads and ``kv_heads`` key/value heads
    of ``head_dim`` channels (``kv_heads == heads`` without grouped-query attention)."""

    name: str
    module: nn.Module = field(repr=False)
    q: nn.Module = field(repr=False)
    heads: int
    kv_heads: int
    head_dim: int


def _attention(name: str, m: nn.Module, trusted=frozenset()) -> Optional[AttentionWidths]:
    """The widths of ``m`` if it is an attention module with separate q / k projections and a head size or head
    count attribute; None otherwise. ``trusted``: ``(id(module), attribute name)`` of attributes known to be
    current (the forward reads them, so the graph rewrites them): they win over the others."""
    q, k = child(m, Q_NAMES), child(m, K_NAMES)
    if q is None or k is None:
        return None
    nq, nk = out_features(q), out_features(k)
    hd_name, hd = _int_attr(m, HEAD_DIM_ATTRS)
    h_name, h = _int_attr(m, HEADS_ATTRS)
    hd_ok = hd is not None and hd > 0 and not nq % hd and not nk % hd
    h_ok = bool(h) and h > 0 and not nq % h and not nk % (nq // h)
    if h_ok and (id(m), h_name) in trusted and not ((id(m), hd_name) in trusted and hd_ok):
        hd = nq // h
    elif not hd_ok:
        if not h_ok:
            return None
        hd = nq // h
    return AttentionWidths(name, m, q, nq // hd, nk // hd, hd)


def attention_candidates(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` of every module of ``model`` with a query and a key projection child: the only ones
    :func:`_attention` can describe. Pruning never changes this list (it changes widths, not the module tree), so a
    caller that syncs after every pruning computes it once."""
    return [(name, m) for name, m in model.named_modules()
            if child(m, Q_NAMES) is not None and child(m, K_NAMES) is not None]


def attention_modules(model: nn.Module, trusted=frozenset(), candidates=None) -> List[AttentionWidths]:
    """Every attention module of ``model`` (see :func:`_attention`), with its widths as the weights say now
    (``candidates``: :func:`attention_candidates` of ``model``, when the caller kept them)."""
    out = []
    for name, m in (attention_candidates(model) if candidates is None else candidates):
        a = _attention(name, m, trusted)
        if a is not None:
            out.append(a)
    return out



def _stale_head_attrs(a: AttentionWidths):
    """``(attribute, value now, value the weights give)`` for each int head attribute of ``a.module`` (head size,
    heads, key-value heads, all-heads width) that disagrees with its projections."""
    m = a.module
    for names, value in ((HEAD_DIM_ATTRS, a.head_dim), (HEADS_ATTRS, a.heads), (KV_HEADS_ATTRS, a.kv_heads),
                         (ALL_HEAD_ATTRS, a.heads * a.head_dim)):
        for n in names:
            v = m.__dict__.get(n)
            if isinstance(v, int) and not isinstance(v, bool) and int(v) != value:
                yield n, v, value


def set_module_attrs(a: AttentionWidths) -> None:
    """Bring an attention module's int bookkeeping in line with its weights (only attributes it already has)."""
    m = a.module
    for n, _, value in _stale_head_attrs(a):  # lazily: each check sees the attributes set before it
        setattr(m, n, value)
    v = m.__dict__.get(GROUPS_ATTR)
    if isinstance(v, int) and not isinstance(v, bool) and a.kv_heads and a.heads % a.kv_heads == 0:
        if int(v) != a.heads // a.kv_heads:
            setattr(m, GROUPS_ATTR, a.heads // a.kv_heads)




def attention_mismatches(model: nn.Module, trusted=frozenset(), candidates=None) -> List[str]:
    """The head bookkeeping attributes of ``model``'s attention modules that disagree with their weights (what
    :func:`sync_attention_modules` would rewrite), as sentences; empty when every one agrees."""
    out = []
    for a in attention_modules(model, trusted, candidates):
        out.extend(f"{a.name}.{n} is {v} but its projections give {value}" for n, v, value in _stale_head_attrs(a))
    return out


def sync_attention_modules(model: nn.Module, trusted=frozenset(), candidates=None) -> None:
    """Set the head bookkeeping attributes of every attention module of ``model`` from its weights (see the module
    docstring; ``trusted`` as for :func:`_attention`, ``candidates`` as for :func:`attention_modules`). Idempotent."""
    for a in attention_modules(model, trusted, candidates):
        set_module_attrs(a)
