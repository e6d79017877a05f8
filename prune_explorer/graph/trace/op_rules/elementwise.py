"""Broadcasting ops (``add``, ``mul``, ``relu``, ``where``...): a channel meets the channel at the same position of
every other operand, so those channels are removed together. A channel that meets, along some dim, an operand with
values but no channels there (rotary ``q * cos``, whose ``cos`` varies along the head size) can only leave with every
position along that dim (whole heads); one that varies along nothing else is fixed."""

from __future__ import annotations

from typing import Optional, Sequence

from ..labels import Value, align, merge_fields, varying_dims
from .call import Call
from .sizes import tie_and_narrow

__all__ = ["elementwise", "first_operand"]


def elementwise(tracer, call: Call, inputs: Optional[Sequence[Value]] = None) -> None:
    """Broadcasting ops: a channel meets the channel at the same position of every other operand."""
    if not call.outputs:
        return
    out = call.outputs[0]
    nd = out.ndim
    ins = [v for v in (inputs if inputs is not None else call.inputs) if v.ndim <= nd]
    if len(ins) == 1:  # one operand (relu, dropout, x * 2.0): its channels meet none, they pass through
        merged = merge_fields([align(f, nd) for f in ins[0].fields])
        for o in call.outputs:
            if o.shape == out.shape:
                o.fields = list(merged)
        return
    shapes = [(1,) * (nd - v.ndim) + v.shape for v in ins]
    fields = [[align(f, nd) for f in v.fields] for v in ins]
    reason = f"'{call.name}' combines these channels with a tensor of the same size that carries no prunable channel"
    for i, fi in enumerate(fields):  # dims where another operand has values but no channels: tied, or fixed
        for n, f in enumerate(fi):
            vd = varying_dims(f)
            blind = {d for d in vd for j in range(len(ins))
                     if j != i and shapes[j][d] > 1 and not any(g.shape[d] > 1 for g in fields[j])}
            if blind and vd - blind:
                fi[n] = tie_and_narrow(tracer, f, sorted(blind), reason)
            elif blind:
                tracer.couplings.fix(f, reason)
                fi[n] = None  # fixed: nothing downstream needs to follow these labels
        fields[i] = [f for f in fi if f is not None]
    for i, fi in enumerate(fields):
        for f in fi:
            vd = varying_dims(f)
            for j in range(i + 1, len(ins)):
                full = {d for d in vd if shapes[j][d] > 1}
                for g in fields[j]:
                    if varying_dims(g) & full:
                        tracer.unify(f, g, reason)
    merged = merge_fields([f for fi in fields for f in fi])
    for o in call.outputs:
        if o.shape == out.shape:
            o.fields = list(merged)


def first_operand(tracer, call: Call) -> None:
    """Ops such as ``x.to(other)`` / ``x.type_as(other)``: only the first tensor flows to the output."""
    elementwise(tracer, call, inputs=call.inputs[:1])
