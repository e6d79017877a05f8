"""Pruning of ``nn.MultiheadAttention`` along ``embed_dim``.

Like Torch-Pruning, the attention block is one channel space of size ``E = embed_dim``: the query input
features, the per-head projection features (``num_heads`` heads of ``head_dim = E / num_heads``) and the
output features are all pruned with the same indices (``in_out_coupled`` is True, so
``prune_multihead_attention_out_channels`` and ``..._in_channels`` do the same thing: call one of them).
Removing channel ``j`` removes:

* rows ``j``, ``E + j`` and ``2E + j`` (the q, k and v thirds) of ``in_proj_weight`` (3E, E) and
  ``in_proj_bias`` (3E,), and column ``j`` of ``in_proj_weight``;
* when the projections are separate (``kdim`` or ``vdim`` differs from ``E``): row ``j`` of
  ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim) and ``v_proj_weight`` (E, vdim); column ``j`` of
  ``q_proj_weight``, and of ``k_proj_weight`` / ``v_proj_weight`` only where ``kdim`` / ``vdim`` equals
  ``E`` (those inputs then share the query's feature space; other key/value inputs are left alone);
* entry ``j`` of ``bias_k`` / ``bias_v`` (1, 1, E);
* row and column ``j`` of ``out_proj.weight`` (E, E) and entry ``j`` of ``out_proj.bias``.

``embed_dim``, ``head_dim``, ``kdim``/``vdim`` (where equal to ``E``) and ``out_proj.in_features`` /
``out_features`` are updated; ``num_heads`` is kept, so the number removed must be a multiple of
``num_heads`` (``channel_multiple``). Head ``h`` is always features ``h*head_dim .. (h+1)*head_dim - 1`` of
the pruned layer: removing channels unevenly across heads moves features between heads (only the
divisibility is checked). ``batch_first`` does not matter.

Example::

    >>> import torch, torch.nn as nn
    >>> mha = nn.MultiheadAttention(8, num_heads=2, batch_first=True)
    >>> _ = prune_multihead_attention_out_channels(mha, [0, 5])
    >>> mha.embed_dim, mha.head_dim, tuple(mha.in_proj_weight.shape)
    (6, 3, (18, 6))
    >>> x = torch.randn(1, 4, 6)
    >>> mha(x, x, x)[0].shape
    torch.Size([1, 4, 6])
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import BasePruningFunc
from .edits import LayerEdit, keep_indices
from .family import LayerFamily, register_family
from .slicing import Part, Rows, blocks, param_of

__all__ = [
    "MHA_PRUNER",
    "MHA_FAMILY",
    "MultiheadAttentionPruner",
    "prune_multihead_attention_out_channels",
    "prune_multihead_attention_in_channels",
]


class MultiheadAttentionPruner(BasePruningFunc):
    """Prunes ``nn.MultiheadAttention`` along ``embed_dim`` (see the module docstring for every tensor).

    >>> mha = nn.MultiheadAttention(6, 3)
    >>> MultiheadAttentionPruner().prune_out_channels(mha, [0, 1, 2]).embed_dim
    3
    """

    TARGET_MODULES = (nn.MultiheadAttention,)

    def describe(self, layer: nn.MultiheadAttention) -> str:
        return (f"MultiheadAttention(embed_dim={layer.embed_dim}, num_heads={layer.num_heads}, "
                f"kdim={layer.kdim}, vdim={layer.vdim})")

    CHANNEL_ATTRS = ("embed_dim", "embed_dim")

    def in_out_coupled(self, layer: Any) -> bool:
        return True

    def channel_multiple(self, layer: nn.MultiheadAttention, side: Any) -> int:
        return layer.num_heads

    def get_out_channel_groups(self, layer: nn.MultiheadAttention) -> int:
        return layer.num_heads

    def get_in_channel_groups(self, layer: nn.MultiheadAttention) -> int:
        return layer.num_heads

    def remove(self, layer: nn.MultiheadAttention, idxs: list[int], side: str) -> None:
        """Embedding channels ``idxs`` from every tensor the module docstring lists (both sides are one space)."""
        e = layer.embed_dim
        keep = keep_indices(e, idxs)
        n = len(keep)
        keep3 = keep + [e + i for i in keep] + [2 * e + i for i in keep]
        edit = LayerEdit()
        if getattr(layer, "in_proj_weight", None) is not None:
            edit.select(layer, "in_proj_weight", (0, keep3), (1, keep))
        edit.select(layer, "q_proj_weight", (0, keep), (1, keep))
        edit.select(layer, "k_proj_weight", (0, keep), *([(1, keep)] if layer.kdim == e else []))
        edit.select(layer, "v_proj_weight", (0, keep), *([(1, keep)] if layer.vdim == e else []))
        edit.select(layer, "in_proj_bias", (0, keep3)).select(layer, "bias_k", (2, keep)).select(layer, "bias_v", (2, keep))
        out = layer.out_proj
        edit.select(out, "weight", (0, keep), (1, keep)).select(out, "bias", (0, keep))
        edit.set(out, "in_features", n).set(out, "out_features", n)
        for dim_attr in ("kdim", "vdim"):
            if getattr(layer, dim_attr) == e:
                edit.set(layer, dim_attr, n)
        edit.set(layer, "embed_dim", n).set(layer, "head_dim", n // layer.num_heads).apply()


MHA_PRUNER = MultiheadAttentionPruner()
prune_multihead_attention_out_channels = MHA_PRUNER.prune_out_channels
prune_multihead_attention_in_channels = MHA_PRUNER.prune_in_channels


def mha_channel_map(ctx, module: nn.MultiheadAttention, name: str, call, x) -> None:
    """One space (``embed_dim``): the query, key and value inputs (when they share it) and the output."""
    ids = ctx.channels(module, name, "out", passthrough=True)
    q = call.inputs[0]
    ctx.consume(q, -1, ids, name)
    same = getattr(module, "_qkv_same_embed_dim", True)
    for v in call.inputs[1:3]:
        if same:
            ctx.consume(v, -1, ids, name)
        else:
            ctx.fix(v, f"{name} reads key/value through separate kdim/vdim projections")
    for v in call.inputs[3:]:
        ctx.fix(v, f"used as a mask by {name}")
    out = call.outputs[0]
    ctx.label(out, out.ndim - 1, ids, ctx.carried(q, out, q.ndim - 1, set(range(q.ndim - 1))))
    ctx.unlabel(*call.outputs[1:])


def mha_parts(layer: nn.MultiheadAttention, space, idx) -> list:
    """Rows ``c, E+c, 2E+c`` and column ``c`` of ``in_proj_weight`` (or of the q/k/v projections), the matching
    ``in_proj_bias`` entries, ``bias_k``/``bias_v[..., c]``, ``out_proj.weight`` row and column ``c``, ``out_proj.bias[c]``."""
    parts = []
    w = param_of(layer, "in_proj_weight")
    if w is not None:
        parts += [Part(w, blocks(3, 0, idx), False), Part(w, Rows(1, idx), False)]
    e = layer.embed_dim
    for pname, reads_e in (("q_proj_weight", True), ("k_proj_weight", layer.kdim == e), ("v_proj_weight", layer.vdim == e)):
        p = param_of(layer, pname)
        if p is not None:
            parts.append(Part(p, Rows(0, idx), False))
            if reads_e:
                parts.append(Part(p, Rows(1, idx), False))
    b = param_of(layer, "in_proj_bias")
    if b is not None:
        parts.append(Part(b, blocks(3, 0, idx), True))
    for pname in ("bias_k", "bias_v"):
        p = param_of(layer, pname)
        if p is not None:
            parts.append(Part(p, Rows(p.dim() - 1, idx), True))
    out = layer.out_proj
    parts += [Part(out.weight, Rows(0, idx), False), Part(out.weight, Rows(1, idx), False)]
    if out.bias is not None:
        parts.append(Part(out.bias, Rows(0, idx), True))
    return parts


MHA_FAMILY = register_family(LayerFamily(
    "multihead_attention", MHA_PRUNER, channel_map=mha_channel_map, parts=mha_parts,
    standard_types=(nn.MultiheadAttention,),
))
