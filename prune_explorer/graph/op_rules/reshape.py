"""Ops that regroup the channel dim: ``view`` / ``reshape`` / ``flatten`` (a size read from the input follows pruning,
a literal does not), ``split`` / ``chunk`` (equal parts are tied position by position) and ``cat`` / ``stack``
(the labels of the pieces are concatenated)."""

from __future__ import annotations

import torch

from ..labels import align, compress, merge_fields, varying_dims
from ..traced_int import TracedInt
from .call import Call, arg, norm_dim, unlabeled
from .replay import dim_groups, replay

__all__ = ["reshape", "split", "cat"]


def _target_args(call: Call, in_shape, out_shape):
    """Per output dim: ``"infer"`` (follows the input), ``"literal"``, or a frozenset of traced sources."""
    name = call.name
    nd_out = len(out_shape)
    if name in ("flatten", "squeeze", "unsqueeze"):
        return ["infer"] * nd_out  # sizes computed from the input: they follow pruning
    if name == "unflatten":
        dim = norm_dim(arg(call, 1, "dim"), len(in_shape))
        sizes = list(arg(call, 2, "sizes"))
        kinds = ["infer"] * nd_out
        for k, s in enumerate(sizes):
            kinds[dim + k] = _kind_of(s)
        return kinds
    if name in ("view_as", "reshape_as"):
        return [frozenset({(call.inputs[1].uid, d)}) for d in range(nd_out)] if len(call.inputs) > 1 else ["literal"] * nd_out
    shape = list(call.args[1:]) or list(call.kwargs.get("shape", call.kwargs.get("size", ())))
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = list(shape[0])
    if len(shape) != nd_out or any(isinstance(s, torch.dtype) for s in shape):
        return ["literal"] * nd_out
    return [_kind_of(s) for s in shape]


def _kind_of(s):
    if isinstance(s, TracedInt):
        return s.sources
    if isinstance(s, int) and s == -1:
        return "infer"
    return "literal"


def reshape(tracer, call: Call) -> None:
    x = call.x
    if x is None or not x.fields:
        return unlabeled(call)
    per_out = replay(tracer, call, check_lost=False)
    out = call.outputs[0]
    in_shape, out_shape = x.shape, out.shape
    labeled = x.labeled_dims()
    kinds = _target_args(call, in_shape, out_shape)
    out_fields = out.fields
    for gi, gj in dim_groups(in_shape, out_shape):
        lab_in = [d for d in gi if d in labeled]
        if not lab_in:
            continue
        big_out = [d for d in gj if out_shape[d] > 1]
        in_fields = [f for f in x.fields if varying_dims(f) & set(lab_in)]
        where = f"'{call.name}' to {list(out_shape)}"

        def freeze(msg):
            for f in in_fields:
                tracer.couplings.fix(f, f"{where}: {msg}")

        def derived(k):
            kind = kinds[k]
            if kind == "infer":
                return True
            if kind == "literal":
                return False
            # traced: its sources must carry the same channels as the reshaped dims (checked after union-find)
            src_fields = []
            for uid, dim in kind:
                v = tracer.values.get(uid)
                if v is not None and dim < v.ndim:
                    g = v.field_on(dim)
                    if g is not None:
                        src_fields.append(g)
            if not src_fields:
                return False
            tracer.deferred_same_channels(src_fields, in_fields, f"{where}: a size comes from other channels")
            return True

        if len(big_out) <= 1:
            if big_out and not derived(big_out[0]):
                freeze("the new size is a literal in the model's code, so it cannot follow pruning")
            continue
        if len([d for d in gi if in_shape[d] > 1]) != 1:
            freeze("channels are regrouped across several dims")
            continue
        derived_dims = [d for d in big_out if derived(d)]
        if len(derived_dims) != 1:
            freeze("the channel dim is split with no size (or several sizes) following the channel count")
            continue
        tie_dims = [d for d in big_out if d not in derived_dims]
        for f in out_fields:
            if varying_dims(f) & set(big_out):
                tracer.couplings.tie_along(f, tie_dims)


def split(tracer, call: Call) -> None:
    """``split`` / ``chunk`` / ``tensor_split``: equal parts that follow the channel count are tied position-wise."""
    x = call.x
    if x is None or not x.fields:
        return unlabeled(call)
    name = call.name
    dim = arg(call, 2, "dim", 0)
    d = norm_dim(dim if isinstance(dim, int) else 0, x.ndim)
    f = x.field_on(d)
    per_out = replay(tracer, call, check_lost=False)
    if f is None:
        return
    sizes = [o.shape[d] for o in call.outputs]
    sizes_arg = arg(call, 1, "split_size_or_sections" if name == "split" else "chunks")
    parts = [compress(p[0]) if p else None for p in per_out]
    parts = [align(p, x.ndim) if p is not None else None for p in parts]
    if len(sizes) <= 1:
        return
    if name == "chunk" or isinstance(sizes_arg, TracedInt):
        derived = [True] * len(sizes)  # equal parts that follow the channel count
    elif isinstance(sizes_arg, (list, tuple)):
        derived = [isinstance(a, TracedInt) for a in sizes_arg]
    else:
        derived = [False] * len(sizes)
    where = f"'{name}' cuts the channels at sizes {sizes}"
    if sum(derived) == 1:
        # the literal parts keep their size; the one part whose size is computed from the input absorbs pruning
        for p, dv in zip(parts, derived):
            if p is not None and not dv:
                tracer.couplings.fix(p, f"{where}: this part's size is a literal in the model's code")
    elif all(derived) and len(set(sizes)) == 1:
        # equal parts: every part must lose the same positions
        real = [p for p in parts if p is not None]
        for p in real[1:]:
            tracer.couplings.pair(real[0], p)
    else:
        tracer.couplings.fix(f, f"{where}: the sizes are literals in the model's code")


def cat(tracer, call: Call) -> None:
    tensors = call.args[0] if call.args else call.kwargs.get("tensors")
    if tensors is None:
        return unlabeled(call)
    vals = [tracer.value_of(t) for t in tensors]
    out = call.outputs[0]
    nd = out.ndim
    dim = arg(call, 1, "dim", 0)
    d = norm_dim(dim, nd)
    if call.name == "stack":
        vals_shapes = [v.shape[:d] + (1,) + v.shape[d:] for v in vals]
        fields = [[f.unsqueeze(d) for f in v.fields] for v in vals]
    else:
        vals_shapes = [v.shape for v in vals]
        fields = [list(v.fields) for v in vals]
    reason = f"'{call.name}' joins these channels with a tensor of the same size that carries no prunable channel"
    # dims other than the cat dim must hold the same channels in every piece
    others = []
    for k, fs in enumerate(fields):
        for f in fs:
            vd = varying_dims(f) - {d}
            if not vd:
                continue
            fo = f.narrow(d, 0, 1) if f.shape[d] > 1 else f
            others.append((k, fo))
    for a in range(len(others)):
        ka, fa = others[a]
        for k, shape in enumerate(vals_shapes):
            if k == ka:
                continue
            partners = [fb for kb, fb in others if kb == k and varying_dims(fb) & varying_dims(fa)]
            if not partners:
                if any(shape[x] > 1 for x in varying_dims(fa)):
                    tracer.couplings.fix(fa, reason)
            elif k > ka:
                for fb in partners:
                    tracer.couplings.unify(fa, fb, reason)
    # the cat dim: concatenate the labels of every piece (unlabeled pieces give -1)
    along = [[f for f in fs if f.shape[d] > 1 or len(fs) == 1] for fs in fields]
    if any(along):
        base_shape = [1] * nd
        for fs in along:
            for f in fs:
                for x in range(nd):
                    if x != d:
                        base_shape[x] = max(base_shape[x], f.shape[x])
        pieces = []
        for k, fs in enumerate(along):
            shp = list(base_shape)
            shp[d] = vals_shapes[k][d]
            f = fs[0] if fs else None
            if f is not None and f.shape[d] == 1:
                # the piece's channels are not along the cat dim; its positions along it are all the same
                f = None
            pieces.append(f.expand(shp) if f is not None else torch.full(shp, -1, dtype=torch.long))
        joined = compress(torch.cat(pieces, d))
        outs = [joined] if joined is not None else []
    else:
        outs = []
    carried = [f for _, f in others]
    out.fields = merge_fields(outs + carried)
