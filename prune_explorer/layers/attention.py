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
``out_features`` are updated. Head ``h`` is features ``h*head_dim .. (h+1)*head_dim - 1``: removing whole heads
lowers ``num_heads`` (the head size stays), removing the same offsets from every head lowers ``head_dim`` (the
dependency graph only asks for one of these two, see its ``head_pruning`` option); any other choice keeps
``num_heads``, so its count must be a multiple of ``num_heads``, and features move between heads (as in
Torch-Pruning). ``batch_first`` does not matter.

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
        return 1  # whole heads (head_dim channels) or one offset per head (num_heads): see check_structure

    def _heads_removed(self, layer: nn.MultiheadAttention, idxs: list[int]):
        """How ``idxs`` cut the heads: ``("heads", n)`` whole heads, ``("dims", n)`` the same offsets of every
        head, or ``("any", 0)``."""
        h, d = layer.num_heads, layer.embed_dim // layer.num_heads
        s = set(idxs)
        heads = {i // d for i in idxs}
        if len(s) == len(heads) * d and all(all(hh * d + o in s for o in range(d)) for hh in heads):
            return "heads", len(heads)
        offs = {i % d for i in idxs}
        if len(s) == len(offs) * h and all(all(hh * d + o in s for hh in range(h)) for o in offs):
            return "dims", len(offs)
        return "any", 0

    def check_structure(self, layer: nn.MultiheadAttention, idxs: list[int], side: str) -> None:
        kind, _ = self._heads_removed(layer, idxs)
        if kind == "any" and len(idxs) % layer.num_heads:
            raise self.error(layer, side, idxs,
                             f"{len(idxs)} channels removed, which are neither whole heads nor the same offsets in "
                             f"every head, and the channel count ({layer.embed_dim}) must stay a multiple of "
                             f"num_heads={layer.num_heads}",
                             f"remove whole heads ({layer.embed_dim // layer.num_heads} channels each) or the same "
                             f"offsets from every head, or remove a multiple of {layer.num_heads} channels")

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
        kind, count = self._heads_removed(layer, idxs)
        heads = layer.num_heads - count if kind == "heads" else layer.num_heads
        edit.set(layer, "embed_dim", n).set(layer, "num_heads", heads).set(layer, "head_dim", n // heads).apply()


MHA_PRUNER = MultiheadAttentionPruner()
prune_multihead_attention_out_channels = MHA_PRUNER.prune_out_channels
prune_multihead_attention_in_channels = MHA_PRUNER.prune_in_channels


def mha_channel_map(ctx, module: nn.MultiheadAttention, name: str, call, x) -> None:
    """One space (``embed_dim``): the query, key and value inputs (when they share it) and the output."""
    ids = ctx.channels(module, name, "out", passthrough=True)
    if module.num_heads > 1 and ids.numel() % module.num_heads == 0:
        ctx.attention_heads(ids, module.num_heads)  # embed_dim is num_heads x head_dim: heads stay consistent
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
