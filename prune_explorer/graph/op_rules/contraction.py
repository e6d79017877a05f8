"""Contractions: ``matmul`` / ``@`` / ``bmm``, ``addmm`` / ``baddbmm``, ``einsum``, ``F.linear`` with a loose weight and
scaled dot-product attention. All are written as one einsum-like rule: operands are coupled along shared letters,
and labels of the letters the output keeps are carried."""

from __future__ import annotations

import string
from typing import List

from ..labels import Value, merge_fields, varying_dims
from .call import Call, unfixable, unlabeled
from .elementwise import elementwise

__all__ = ["contract", "matmul", "baddbmm", "einsum", "functional_linear", "sdpa"]


def contract(tracer, call: Call, specs: List[str], out_spec: str, vals: List[Value]) -> None:
    """Couple operands along shared letters; carry labels of letters kept in the output."""
    letters = sorted(set("".join(specs)))
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

    lifted = [[lift(f, s) for f in v.fields] for v, s in zip(vals, specs)]
    sizes = [{c: v.shape[k] for k, c in enumerate(s)} for v, s in zip(vals, specs)]
    for i in range(len(vals)):
        for f in lifted[i]:
            vd = {letters[k] for k in varying_dims(f)}
            for j in range(len(vals)):
                if j == i:
                    continue
                shared = {c for c in vd if sizes[j].get(c, 1) > 1}
                if not shared:
                    continue
                partners = [g for g in lifted[j] if {letters[k] for k in varying_dims(g)} & shared]
                if not partners:
                    tracer.couplings.fix(f, reason)
                elif j > i:
                    for g in partners:
                        tracer.couplings.unify(f, g, reason)
    out = call.outputs[0]
    fields = []
    for i in range(len(vals)):
        for f in lifted[i]:
            vd = {letters[k] for k in varying_dims(f)}
            if not vd <= set(out_spec):
                continue  # labels along a contracted letter disappear (their partners were coupled above)
            g = f
            for k in reversed(range(n)):
                if letters[k] not in out_spec:
                    g = g.squeeze(k)
            kept = [c for c in letters if c in out_spec]
            perm = [kept.index(c) for c in out_spec]
            g = g.permute(perm)
            if g.ndim == out.ndim:
                fields.append(g)
    out.fields = merge_fields(fields)


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
    contract(tracer, call, [sa, sb], so, [a, b])


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
    spec_x = string.ascii_letters[: x.ndim - 1] + "Z"
    contract(tracer, call, [spec_x, "YZ"], spec_x[:-1] + "Y", [x, w])
    if len(vals) > 2:
        out = call.outputs[0]
        elementwise(tracer, Call(call.index, "linear", call.func, (), {}, [vals[2], Value(-1, out.shape, fields=out.fields)], call.outputs))


def sdpa(tracer, call: Call) -> None:
    q, k, v = call.inputs[:3]
    n = q.ndim
    letters = string.ascii_letters
    batch = letters[: n - 2]
    contract(tracer, Call(call.index, call.name, None, (), {}, [q, k], [Value(-1, q.shape[:-1] + (k.shape[-2],))]),
                    [batch + "LE", batch + "SE"], batch + "LS", [q, k])
    scores = Value(-1, q.shape[:-1] + (k.shape[-2],))
    contract(tracer, call, [batch + "LS", batch + "SV"], batch + "LV", [scores, v])
    if len(call.inputs) > 3:  # attn_mask: added to the scores
        for m in call.inputs[3:]:
            for f in m.fields:
                tracer.couplings.fix(f, "used as an attention mask")
