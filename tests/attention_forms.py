"""Small attention blocks written the ways real models write them, for the graph and pruner tests.

Every block keeps its sizes in module attributes read by ``forward`` (``self.num_heads``, ``self.head_dim``,
``self.attn_dim``...), as timm, torchvision and Hugging Face do, and uses ``self.scale`` for the attention
temperature. :func:`zero_channels` zeroes what a group's members own for the channels it removes, so a test can
check that pruning a group changes nothing when those channels contribute nothing: the graph found every member
and the right channels in each.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _heads(x, n_heads, head_dim):
    b, n, _ = x.shape
    return x.view(b, n, n_heads, head_dim).transpose(1, 2)


class SeparateQKV(nn.Module):
    """q / k / v / o projections; ``form``: ``matmul`` (softmax(q k^T) v), ``einsum``, ``sdpa``, ``mask`` (an
    additive (B, 1, L, S) mask on the scores), ``bias`` (a T5-style relative position bias, an Embedding with one
    output per head, added to the scores), ``zeros_bias`` (``torch.zeros(1, self.num_heads, L, S)`` added)."""

    def __init__(self, dim=32, num_heads=4, head_dim=8, form="matmul"):
        super().__init__()
        self.num_heads, self.head_dim, self.form = num_heads, head_dim, form
        self.scale = head_dim ** -0.5
        self.q = nn.Linear(dim, num_heads * head_dim)
        self.k = nn.Linear(dim, num_heads * head_dim)
        self.v = nn.Linear(dim, num_heads * head_dim)
        self.o = nn.Linear(num_heads * head_dim, dim)
        if form == "bias":
            self.num_buckets = 8
            self.rel = nn.Embedding(self.num_buckets, num_heads)

    def scores_bias(self, n):
        if self.form == "bias":
            pos = torch.arange(n)
            buckets = (pos[None, :] - pos[:, None]).clamp(-3, 4) + 3  # (n, n) in [0, num_buckets)
            return self.rel(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, heads, n, n)
        if self.form == "zeros_bias":
            return torch.zeros(1, self.num_heads, n, n) + torch.triu(torch.ones(n, n), 1)[None, None] * -1.0
        if self.form == "mask":
            return torch.triu(torch.full((n, n), -1e4), 1)[None, None]  # (1, 1, n, n): one mask for every head
        return None

    def forward(self, x):
        b, n, _ = x.shape
        q = _heads(self.q(x), self.num_heads, self.head_dim)
        k = _heads(self.k(x), self.num_heads, self.head_dim)
        v = _heads(self.v(x), self.num_heads, self.head_dim)
        bias = self.scores_bias(n)
        if self.form == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        elif self.form == "einsum":
            att = torch.einsum("bhld,bhsd->bhls", q, k) * self.scale
            out = torch.einsum("bhls,bhsd->bhld", att.softmax(-1), v)
        else:
            att = (q @ k.transpose(-2, -1)) * self.scale
            if bias is not None:
                att = att + bias
            out = att.softmax(dim=-1) @ v
        out = out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return self.o(out)

    def q_layers(self):
        return [self.q, self.k]


class FusedQKV(nn.Module):
    """timm's ``Attention``: one ``qkv`` Linear, ``reshape(B, N, 3, self.num_heads, self.head_dim)``, sdpa or
    matmul, then ``reshape(B, N, self.attn_dim)``."""

    def __init__(self, dim=32, num_heads=4, head_dim=8, fused_attn=True):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.attn_dim = num_heads * head_dim
        self.scale = head_dim ** -0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, 3 * self.attn_dim)
        self.proj = nn.Linear(self.attn_dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            att = (q * self.scale) @ k.transpose(-2, -1)
            x = att.softmax(dim=-1) @ v
        x = x.transpose(1, 2).reshape(b, n, self.attn_dim)
        return self.proj(x)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """Llama's rotary embedding: an ``inv_freq`` buffer (one frequency per pair of head dims)."""

    def __init__(self, head_dim=8, base=10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x, position_ids):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


class RotaryGQA(nn.Module):
    """Llama / Qwen2 attention: rotary q and k, ``num_key_value_heads`` < ``num_heads`` (grouped-query attention)
    through ``repeat_kv`` (expand + reshape, ``gqa="repeat"``) or ``scaled_dot_product_attention(enable_gqa=True)``
    (``gqa="sdpa"``); ``view(*input_shape, -1, self.head_dim)``."""

    def __init__(self, dim=32, num_heads=4, num_key_value_heads=2, head_dim=8, gqa="repeat"):
        super().__init__()
        self.num_heads, self.num_key_value_heads, self.head_dim, self.gqa = num_heads, num_key_value_heads, head_dim, gqa
        self.num_key_value_groups = num_heads // num_key_value_heads
        self.scaling = head_dim ** -0.5
        self.q_proj = nn.Linear(dim, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, num_key_value_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, num_key_value_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, dim, bias=False)

    @staticmethod
    def repeat_kv(h, n_rep):
        batch, kv_heads, slen, head_dim = h.shape
        if n_rep == 1:
            return h
        h = h[:, :, None, :, :].expand(batch, kv_heads, n_rep, slen, head_dim)
        return h.reshape(batch, kv_heads * n_rep, slen, head_dim)

    def forward(self, x, cos, sin):
        input_shape = x.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        q = self.q_proj(x).view(hidden_shape).transpose(1, 2)
        k = self.k_proj(x).view(hidden_shape).transpose(1, 2)
        v = self.v_proj(x).view(hidden_shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        if self.gqa == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling, enable_gqa=True)
        else:
            k = self.repeat_kv(k, self.num_key_value_groups)
            v = self.repeat_kv(v, self.num_key_value_groups)
            att = torch.matmul(q, k.transpose(2, 3)) * self.scaling
            out = torch.matmul(att.softmax(-1), v)
        out = out.transpose(1, 2).reshape(*input_shape, -1)
        return self.o_proj(out)


class Block(nn.Module):
    """``x -> embed -> x + attn(x) -> head``: the attention's input and output live on the residual stream."""

    def __init__(self, attn: nn.Module, dim=32, rotary_dim=None):
        super().__init__()
        self.embed = nn.Linear(12, dim)
        self.attn = attn
        self.rotary = Rotary(rotary_dim) if rotary_dim else None
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        h = self.embed(x)
        if isinstance(self.attn, nn.MultiheadAttention):
            a = self.attn(h, h, h, need_weights=False)[0]
        elif self.rotary is not None:
            pos = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
            cos, sin = self.rotary(h, pos)
            a = self.attn(h, cos, sin)
        else:
            a = self.attn(h)
        return self.head(h + a)


X = torch.randn(2, 6, 12)


def build(kind: str) -> Block:
    """A block with the attention form ``kind`` (see the ids in :data:`FORMS`)."""
    torch.manual_seed(0)
    if kind.startswith("separate-"):
        return Block(SeparateQKV(form=kind.split("-", 1)[1])).eval()
    if kind == "fused-sdpa":
        return Block(FusedQKV(fused_attn=True)).eval()
    if kind == "fused-matmul":
        return Block(FusedQKV(fused_attn=False)).eval()
    if kind == "rotary-repeat":
        return Block(RotaryGQA(gqa="repeat"), rotary_dim=8).eval()
    if kind == "rotary-sdpa":
        return Block(RotaryGQA(gqa="sdpa"), rotary_dim=8).eval()
    if kind in ("rotary-mqa-repeat", "rotary-mqa-sdpa"):  # multi-query: one key-value head for every query head
        return Block(RotaryGQA(num_key_value_heads=1, gqa=kind.rsplit("-", 1)[1]), rotary_dim=8).eval()
    if kind == "mha":
        return Block(nn.MultiheadAttention(32, 4, batch_first=True)).eval()
    raise KeyError(kind)


FORMS = ["separate-matmul", "separate-einsum", "separate-sdpa", "separate-mask", "separate-bias",
         "separate-zeros_bias", "fused-sdpa", "fused-matmul", "rotary-repeat", "rotary-sdpa",
         "rotary-mqa-repeat", "rotary-mqa-sdpa"]


def attention_of(model: Block) -> nn.Module:
    return model.attn


def first_projection(model: Block) -> nn.Linear:
    """The layer whose output channels hold the queries (the root of the attention group)."""
    a = model.attn
    for name in ("q", "q_proj", "qkv"):
        if hasattr(a, name):
            return getattr(a, name)
    raise KeyError(type(a).__name__)


@torch.no_grad()
def zero_channels(group) -> None:
    """Zero what each member of ``group`` owns for the channels it removes: Linear output rows and biases, Linear
    input columns, Embedding columns; then removing them changes nothing the model computes."""
    for dep, idxs in group:
        layer = dep.layer
        idx = torch.as_tensor(list(idxs), dtype=torch.long)
        if isinstance(layer, nn.Linear):
            if dep.side == "out":
                layer.weight[idx] = 0
                if layer.bias is not None:
                    layer.bias[idx] = 0
            else:
                layer.weight[:, idx] = 0
        elif isinstance(layer, nn.Embedding):
            layer.weight[:, idx] = 0
        elif isinstance(layer, torch.Tensor):
            pass  # a buffer such as inv_freq: the q / k channels it scales are zero already
        else:
            raise AssertionError(f"unexpected member {type(layer).__name__} in an attention group")
