"""Contractions: ``matmul`` / ``@`` / ``bmm``, ``addmm`` / ``baddbmm``, ``einsum``, ``F.linear`` with a loose weight and
scaled dot-product attention (with its mask, and grouped-query attention). All are written as one einsum-like rule:
operands are coupled along shared letters, and labels of the letters the output keeps are carried. The channels that
meet such a product are recorded (``tracer.contracted_ids``): a head split feeding them is attention."""

from __future__ import annotations

import string
from typing import Dict, List, Optional, Set

import torch

from ..labels import Value, merge_fields, varying_dims
from .call import Call, arg, unfixable, unlabeled
from .elementwise import elementwise
from .sizes import tie_and_narrow

__all__ = ["ATTENTION_LIKE", "contract", "matmul", "baddbmm", "einsum", "functional_linear", "grouped_mm", "sdpa"]

#: why the expert dim of stacked expert weights stays: the router's indices pick experts by position
EXPERTS_REASON = ("the number of experts: a router's indices select each expert's weights by position in a stacked "
                  "(experts, ...) tensor")


def contract(tracer, call: Call, specs: List[str], out_spec: str, vals: List[Value],
             shared: Optional[Dict[int, Set[str]]] = None) -> None:
    """Couple operands along shared letters; carry labels of letters kept in the output.

    A field that varies along a contracted letter *and* a kept one (the heads of ``q`` in ``q @ k^T`` when whole heads
    are the units) is collapsed along the contracted letters: its positions there are tied, and the output carries
    it along the kept letters (the heads of the attention scores). A field that varies along a letter where another
    operand has values but no channels is tied along that letter (or fixed, if it varies along nothing else), unless
    that operand is ``shared`` along the letter (``{operand index: letters}``: one key-value head read by every query
    head, its size there follows the other operand's)."""
    shared = shared or {}
    letters = sorted(set("".join(specs)) | set(out_spec))
    pos = {c: i for i, c in enumerate(letters)}
    n = len(letters)
    reason = f"'{call.name}' contracts these channels with a tensor of the same size that carries no prunable channel"

    def lift(f, spec):
        # field (over spec letters) -> tensor over all letters (size 1 where absent), letters in sorted order
        perm = sorted(range(len(spec)), key=lambda k: pos[spec[k]])
        g = f.permute(perm) if f.ndim == len(spec) else f
        shape = [1] * n
        for k in perm:
            shape[pos[spec[k]]] = f.shape[k]
        return g.reshape(shape)

    def varying(f):
        return {letters[k] for k in varying_dims(f)}

    lifted = [[lift(f, s) for f in v.fields] for v, s in zip(vals, specs)]
    sizes = [{c: v.shape[k] for k, c in enumerate(s)} for v, s in zip(vals, specs)]
    for i in range(len(vals)):
        for m, f in enumerate(lifted[i]):
            vd = varying(f)
            blind = {c for c in vd for j in range(len(vals))
                     if j != i and sizes[j].get(c, 1) > 1 and not any(c in varying(g) for g in lifted[j])
                     and c not in shared.get(j, ())}
            if blind and vd - blind:
                lifted[i][m] = tie_and_narrow(tracer, f, sorted(pos[c] for c in blind), reason)
            elif blind:
                tracer.couplings.fix(f, reason)
                lifted[i][m] = None
        lifted[i] = [f for f in lifted[i] if f is not None]
    for i in range(len(vals)):
        for f in lifted[i]:
            vd = varying(f)
            for j in range(i + 1, len(vals)):
                shared = {c for c in vd if sizes[j].get(c, 1) > 1}
                for g in lifted[j]:
                    if varying(g) & shared:
                        tracer.couplings.unify(f, g, reason)
    if call.name in ATTENTION_LIKE:
        ids = [f.reshape(-1) for fs in lifted for f in fs]
        if ids:
            tracer.contracted_ids.append(torch.unique(torch.cat(ids)))
    out = call.outputs[0]
    kept = [c for c in letters if c in out_spec]
    fields = []
    for fs in lifted:
        for f in fs:
            vd = varying(f)
            gone = vd - set(out_spec)
            if gone and not vd - gone:
                continue  # labels only along contracted letters disappear (their partners were coupled above)
            if gone:
                f = tie_and_narrow(tracer, f, sorted(pos[c] for c in gone), reason)
            g = f
            for k in reversed(range(n)):
                if letters[k] not in out_spec:
                    g = g.squeeze(k)
            g = g.permute([kept.index(c) for c in out_spec])
            if g.ndim == out.ndim:
                fields.append(g)
    out.fields = merge_fields(fields)


#: products whose operands' channels are attention heads when a head split feeds them (see :mod:`..heads`)
ATTENTION_LIKE = {"matmul", "bmm", "__matmul__", "__rmatmul__", "einsum", "scaled_dot_product_attention"}


def matmul(tracer, call: Call) -> None:
    vals = call.inputs[:2]
    if len(vals) < 2 or not (vals[0].fields or vals[1].fields):
        return unlabeled(call)
    a, b = vals
    if a.ndim == 0 or b.ndim == 0:
        return elementwise(tracer, call)
    letters = iter(string.ascii_letters)
    k = next(letters)
    va = next(letters) if a.ndim >= 2 else ""
    vb = next(letters) if b.ndim >= 2 else ""
    nb = max(a.ndim, b.ndim) - 2
    batch = [next(letters) for _ in range(max(nb, 0))]
    sa = "".join(batch[len(batch) - (a.ndim - 2):] if a.ndim > 2 else []) + va + k
    sb = "".join(batch[len(batch) - (b.ndim - 2):] if b.ndim > 2 else []) + k + vb
    so = "".join(batch) + va + vb
    # broadcast batch dims of size 1 behave like absent letters: handled by sizes() in the general routine
    contract(tracer, call, [sa, sb], so, [a, b], _expanded_letters(call, [sa, sb]))


def _expanded_letters(call: Call, specs: List[str]) -> Dict[int, Set[str]]:
    """Per operand, the batch letters along which the tensor itself is an expansion (stride 0, the same values at
    every position: ``repeat_kv`` of one key-value head), so the other operand's positions there can leave freely."""
    if call.name not in ("matmul", "__matmul__", "bmm"):
        return {}
    out = {}
    for i, (t, spec) in enumerate(zip(call.args[:2], specs)):
        if not isinstance(t, torch.Tensor) or t.ndim != len(spec):
            continue
        letters = {spec[d] for d in range(t.ndim - 2) if t.shape[d] > 1 and t.stride(d) == 0}
        if letters:
            out[i] = letters
    return out


def baddbmm(tracer, call: Call) -> None:
    """``addmm(bias, a, b)`` / ``baddbmm``: a matmul plus a broadcast add."""
    if len(call.inputs) < 3:
        return unfixable(tracer, call)
    sub = Call(call.index, "matmul", call.func, call.args[1:], {}, call.inputs[1:3], call.outputs)
    matmul(tracer, sub)
    prod = call.outputs[0]
    elementwise(tracer, Call(call.index, call.name, call.func, (), {}, [call.inputs[0], Value(-1, prod.shape, fields=prod.fields)], call.outputs))


def einsum(tracer, call: Call) -> None:
    eq = call.args[0]
    ops = call.args[1:]
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = ops[0]
    vals = [tracer.value_of(t) for t in ops]
    eq = eq.replace(" ", "")
    if "..." in eq or "->" not in eq:
        return unfixable(tracer, call)
    lhs, rhs = eq.split("->")
    contract(tracer, call, lhs.split(","), rhs, vals)


def functional_linear(tracer, call: Call) -> None:
    """``F.linear(x, W, b)`` with a weight that is not a registered layer's: ``x @ W.T + b``."""
    vals = call.inputs
    if len(vals) < 2:
        return unfixable(tracer, call)
    x, w = vals[0], vals[1]
    _weight_outputs(tracer, w, 0)
    spec_x = string.ascii_letters[: x.ndim - 1] + "Z"
    contract(tracer, call, [spec_x, "YZ"], spec_x[:-1] + "Y", [x, w])
    if len(vals) > 2:
        out = call.outputs[0]
        elementwise(tracer, Call(call.index, "linear", call.func, (), {}, [vals[2], Value(-1, out.shape, fields=out.fields)], call.outputs))


def grouped_mm(tracer, call: Call) -> None:
    """``grouped_mm(x, w, offs)`` (mixture-of-experts layers): rows ``offs[e-1]:offs[e]`` of ``x`` (S, K) are
    multiplied by expert ``e``'s matrix ``w[e]`` (E, K, N), giving (S, N). Channels move as in ``x @ w[e]`` for every
    expert at once: ``x``'s K channels are coupled with ``w``'s dim 1, the output carries ``w``'s dim 2. Which rows go
    to which expert is data, so the expert dim ``E`` stays fixed (the router's count) and the token dim ``S`` must
    carry no channel."""
    if len(call.inputs) < 2 or call.inputs[0].ndim != 2 or call.inputs[1].ndim != 3:
        return unfixable(tracer, call)
    x, w = call.inputs[0], call.inputs[1]
    for f in w.fields:
        if 0 in varying_dims(f):
            tracer.couplings.fix(f, EXPERTS_REASON)
    w = Value(-1, w.shape, fields=[f for f in w.fields if 0 not in varying_dims(f)])
    for f in x.fields:
        if 0 in varying_dims(f):
            tracer.couplings.fix(f, f"'{call.name}' groups the rows of its input by expert")
    x = Value(-1, x.shape, fields=[f for f in x.fields if 0 not in varying_dims(f)])
    _weight_outputs(tracer, w, 2)
    contract(tracer, call, ["SK", "EKN"], "SN", [x, w])


def _weight_outputs(tracer, w: Value, dim: int) -> None:
    """Record the ids along ``w``'s output dim: a loose parameter used as a product's weight roots groups there."""
    if w.ndim == 0:
        return
    dim %= w.ndim
    for f in w.fields:
        if varying_dims(f) == {dim}:
            tracer.weight_out_ids.append(f.reshape(-1))


def _repeat_heads(v: Value, heads: int) -> Value:
    """``v`` (key or value of grouped-query attention) with its head dim (``-3``) repeated to ``heads`` heads, as
    ``scaled_dot_product_attention(enable_gqa=True)`` and ``repeat_kv`` do (query head ``h`` reads head
    ``h // (heads / kv_heads)``)."""
    rep = heads // v.shape[-3]
    shape = v.shape[:-3] + (heads,) + v.shape[-2:]
    fields = [f.repeat_interleave(rep, dim=f.ndim - 3) if f.shape[-3] > 1 else f for f in v.fields]
    return Value(-1, shape, fields=fields)


def sdpa(tracer, call: Call) -> None:
    """``scaled_dot_product_attention(q, k, v, attn_mask, ..., enable_gqa)``: ``softmax(q k^T + mask) v``. The
    scores carry the heads of q and k (when whole heads are the units), meet the mask (a relative position bias
    with one entry per head follows the heads) and then v."""
    tensors = [arg(call, i, name) for i, name in enumerate(("query", "key", "value", "attn_mask"))]
    if not all(isinstance(t, torch.Tensor) for t in tensors[:3]):
        return unfixable(tracer, call)
    q, k, v = (tracer.value_of(t) for t in tensors[:3])
    mask = tracer.value_of(tensors[3]) if isinstance(tensors[3], torch.Tensor) else None
    gqa = bool(arg(call, 7, "enable_gqa", False))
    n = q.ndim
    batch = string.ascii_letters[: n - 2]
    shared = {}
    if gqa and n >= 3 and k.ndim == n and q.shape[-3] != k.shape[-3] and q.shape[-3] % k.shape[-3] == 0:
        if k.shape[-3] == 1:  # multi-query: every query head reads the one key-value head, whatever their number
            shared = {1: {batch[-1]}}
        k, v = _repeat_heads(k, q.shape[-3]), _repeat_heads(v, q.shape[-3])
    scores = Value(-1, q.shape[:-1] + (k.shape[-2],))
    contract(tracer, Call(call.index, call.name, None, (), {}, [q, k], [scores]),
             [batch + "LE", batch + "SE"], batch + "LS", [q, k], shared)
    if mask is not None:
        masked = Value(-1, tuple(torch.broadcast_shapes(scores.shape, mask.shape)))
        elementwise(tracer, Call(call.index, "attn_mask", None, (), {}, [scores, mask], [masked]))
        if masked.shape == scores.shape:
            scores = masked
    contract(tracer, call, [batch + "LS", batch + "SV"], batch + "LV", [scores, v], shared)
