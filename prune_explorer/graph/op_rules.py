"""How each traced operation moves channel labels from its inputs to its outputs.

One function per family of operations; :data:`OP_RULES` maps an operation's short name (``"add"``, ``"cat"``,
``"view"``…) to its rule. A rule receives the tracer (``ctx``: couplings, value lookup) and the :class:`Call`
(inputs/outputs as :class:`~prune_explorer.graph.labels.Value`, plus the original args) and sets
``out.fields`` for every output value. Anything a rule cannot map safely is *fixed* (never pruned) with a reason,
so an unusual model loses some prunable channels instead of being pruned into an invalid shape.
"""

from __future__ import annotations

import string
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from .labels import (
    Value,
    align,
    compress,
    full_field,
    merge_fields,
    new_field,
    varying_dims,
)
from .traced_int import TracedInt, sources_of


class Call:
    """One traced operation: ``outputs = func(*args, **kwargs)``."""

    __slots__ = ("index", "name", "func", "args", "kwargs", "inputs", "outputs", "node", "module")

    def __init__(self, index, name, func, args, kwargs, inputs, outputs, module=None):
        self.index = index
        self.name = name
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.inputs: List[Value] = inputs
        self.outputs: List[Value] = outputs
        self.node = None
        self.module = module

    @property
    def x(self) -> Optional[Value]:
        return self.inputs[0] if self.inputs else None

    def __repr__(self):
        return f"Call({self.name}, in={self.inputs}, out={self.outputs})"


def _arg(call: Call, pos: int, key: str, default=None):
    if len(call.args) > pos:
        return call.args[pos]
    return call.kwargs.get(key, default)


def _norm_dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def _labels_of(fields) -> torch.Tensor:
    parts = [f.reshape(-1) for f in fields]
    if not parts:
        return torch.empty(0, dtype=torch.long)
    ids = torch.cat(parts)
    return torch.unique(ids[ids >= 0])


def _fix_lost_labels(ctx, call: Call, reason: str) -> None:
    """Fix input labels that no output carries any more (the op selected a fixed subset of channels)."""
    before = _labels_of(call.x.fields) if call.x is not None else torch.empty(0, dtype=torch.long)
    if before.numel() == 0:
        return
    after = _labels_of([f for v in call.outputs for f in v.fields])
    lost = before[~torch.isin(before, after)]
    if lost.numel():
        for f in call.x.fields:
            if bool(torch.isin(f, lost).any()):
                ctx.couplings.fix(f, reason)


# ---------------------------------------------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------------------------------------------


def elementwise(ctx, call: Call, inputs: Optional[Sequence[Value]] = None) -> None:
    """Broadcasting ops: a channel meets the channel at the same position of every other operand."""
    if not call.outputs:
        return
    out = call.outputs[0]
    nd = out.ndim
    ins = [v for v in (inputs if inputs is not None else call.inputs) if v.ndim <= nd]
    shapes = [(1,) * (nd - v.ndim) + v.shape for v in ins]
    fields = [[align(f, nd) for f in v.fields] for v in ins]
    reason = f"'{call.name}' combines these channels with a tensor of the same size that carries no prunable channel"
    for i, fi in enumerate(fields):
        for f in fi:
            vd = varying_dims(f)
            for j in range(len(ins)):
                if j == i:
                    continue
                full = {d for d in vd if shapes[j][d] > 1}
                if not full:
                    continue
                partners = [g for g in fields[j] if varying_dims(g) & full]
                if not partners:
                    ctx.couplings.fix(f, reason)
                elif j > i:
                    for g in partners:
                        ctx.couplings.unify(f, g, reason)
    merged = merge_fields([f for fi in fields for f in fi])
    for o in call.outputs:
        if o.shape == out.shape:
            o.fields = list(merged)


def first_operand(ctx, call: Call) -> None:
    """Ops such as ``x.to(other)`` / ``x.type_as(other)``: only the first tensor flows to the output."""
    elementwise(ctx, call, inputs=call.inputs[:1])


# ---------------------------------------------------------------------------------------------------------------
# replayed shape ops
# ---------------------------------------------------------------------------------------------------------------


def _materialise(obj):
    """Meta-device arguments (index tensors during a meta trace) become CPU zeros of the same shape and dtype.

    Labels picked through such an index along a channel dim are fixed by the rules anyway; along other dims the
    labels are constant, so any index gives the same result.
    """
    if isinstance(obj, torch.Tensor) and obj.device.type == "meta":
        return torch.zeros(obj.shape, dtype=obj.dtype)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_materialise(o) for o in obj)
    if isinstance(obj, list):
        return [_materialise(o) for o in obj]
    return obj


# ops that are valid on the compact (broadcast) form of a field: no need to materialise the full shape
_ON_BROADCAST = {"permute", "transpose", "swapaxes", "swapdims", "t", "T", "mT", "movedim", "moveaxis", "flip",
                 "fliplr", "flipud", "roll", "expand", "expand_as", "broadcast_to", "contiguous", "clone"}
_RESHAPES = {"view", "reshape", "flatten", "unflatten", "view_as", "reshape_as", "squeeze", "unsqueeze"}


def reshape_field(f: torch.Tensor, in_shape, out_shape) -> torch.Tensor:
    """Reshape a compact field like its tensor goes from ``in_shape`` to ``out_shape``, expanding only the dim
    groups along which the labels vary (a (1, 56, 56, 96) window partition stays a 96-element operation)."""
    sizes_in, sizes_out = [], []
    for gi, gj in _dim_groups(tuple(in_shape), tuple(out_shape)):
        varies = any(f.shape[d] > 1 for d in gi)
        sizes_in += [in_shape[d] if varies else 1 for d in gi]
        sizes_out += [out_shape[d] if varies else 1 for d in gj]
    return f.expand(sizes_in).reshape(sizes_out)


def _replay(call: Call, field: torch.Tensor, shape) -> object:
    """Run the same function on the label field instead of the data (same non-tensor arguments)."""
    if call.name in _RESHAPES and len(call.outputs) == 1:
        return reshape_field(field, shape, call.outputs[0].shape)
    if call.name in _ON_BROADCAST and not any(isinstance(a, torch.Tensor) for a in call.args[1:]):
        args = [field] + list(call.args[1:])
        return call.func(*args, **call.kwargs)
    src = full_field(field, shape)
    if call.name in ("view", "view_as"):
        src = src.contiguous()  # an expanded label tensor has zero strides; the data itself was viewable
    args = [src] + [_materialise(a) for a in call.args[1:]]
    kwargs = {k: _materialise(v) for k, v in call.kwargs.items()}
    return call.func(*args, **kwargs)


def _as_outputs(result) -> List[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for t in result if isinstance(t, torch.Tensor)]


def replay(ctx, call: Call, check_lost: bool = True) -> List[List[torch.Tensor]]:
    """Replay ``call`` on every field of its first input; returns, per output, the new (uncompressed) fields."""
    x = call.x
    per_out: List[List[torch.Tensor]] = [[] for _ in call.outputs]
    if x is None:
        return per_out
    for f in x.fields:
        try:
            res = _as_outputs(_replay(call, f, x.shape))
        except Exception as exc:  # the op cannot run on labels: be safe
            ctx.couplings.fix(f, f"'{call.name}' could not be followed through ({type(exc).__name__})")
            continue
        for k, r in enumerate(res[: len(call.outputs)]):
            per_out[k].append(r)
    for k, o in enumerate(call.outputs):
        o.fields = merge_fields([c for c in (compress(r) for r in per_out[k]) if c is not None])
    if check_lost:
        _fix_lost_labels(ctx, call, f"'{call.name}' keeps a fixed subset of these channels (literal index or size)")
    return per_out


def simple_replay(ctx, call: Call) -> None:
    replay(ctx, call)


def index_replay(ctx, call: Call) -> None:
    """``index_select`` / ``gather`` / ``take_along_dim``: a literal index along a channel dim freezes it."""
    x = call.x
    if x is None or not x.fields:
        return _unlabeled(call)
    dim = _arg(call, 1, "dim")
    if isinstance(dim, int):
        d = _norm_dim(dim, x.ndim)
        f = x.field_on(d)
        if f is not None:
            ctx.couplings.fix(f, f"'{call.name}' picks channels with a literal index")
    replay(ctx, call)


def roll(ctx, call: Call) -> None:
    x = call.x
    dims = _arg(call, 2, "dims")
    if x is not None and dims is not None:
        dims = [dims] if isinstance(dims, int) else list(dims)
        for d in dims:
            f = x.field_on(_norm_dim(d, x.ndim))
            if f is not None:
                ctx.couplings.fix(f, "'roll' shifts channels by a literal amount")
    replay(ctx, call)


def getitem(ctx, call: Call) -> None:
    x = call.x
    if x is None or not x.fields:
        return _unlabeled(call)
    idx = call.args[1] if len(call.args) > 1 else None
    items = idx if isinstance(idx, tuple) else (idx,)
    # walk the index to find which input dims receive a tensor/list index (literal channel selection)
    n_consumed = sum(1 for it in items if it is not None and it is not Ellipsis and not isinstance(it, bool))
    d = 0
    for it in items:
        if it is Ellipsis:
            d += x.ndim - n_consumed
            continue
        if it is None or isinstance(it, bool):
            continue
        if isinstance(it, (torch.Tensor, list)) and d < x.ndim:
            f = x.field_on(d)
            if f is not None:
                ctx.couplings.fix(f, "indexing picks channels with a literal index tensor")
        d += 1
    replay(ctx, call)


def setitem(ctx, call: Call) -> None:
    """``x[idx] = y``: the written region of ``x`` and ``y`` hold the same channels."""
    x = call.x
    if x is None or len(call.args) < 3:
        return
    y = call.args[2]
    yv = ctx.value_of(y) if isinstance(y, torch.Tensor) else None
    idx = call.args[1]
    region_fields = []
    for f in x.fields:
        try:
            region_fields.append(full_field(f, x.shape)[_materialise(idx)])
        except Exception:
            ctx.couplings.fix(f, "an indexed assignment could not be followed")
    if yv is not None:
        nd = max([r.ndim for r in region_fields] + [yv.ndim])
        for r in region_fields:
            r = compress(r)
            if r is None:
                continue
            for g in yv.fields:
                ctx.couplings.unify(align(r, nd), align(g, nd), "indexed assignment")
        if not region_fields and yv.fields:
            for g in yv.fields:
                ctx.couplings.fix(g, "written into a tensor that carries no prunable channel")
    # the tensor keeps its labels (the in-place op gives it a new value)
    for o in call.outputs:
        o.fields = list(x.fields)


# --- reshape ------------------------------------------------------------------------------------------------------


def _dim_groups(in_shape, out_shape):
    """Split a reshape into groups of input dims and output dims with equal products.

    >>> _dim_groups((1, 56, 56, 96), (1, 8, 7, 8, 7, 96))
    [([0], [0]), ([1], [1, 2]), ([2], [3, 4]), ([3], [5])]
    """
    groups = []
    pos = [0, 0]
    shapes = (in_shape, out_shape)

    def take(side, group, prod):
        group.append(pos[side])
        pos[side] += 1
        return prod * shapes[side][group[-1]]

    ni, no = len(in_shape), len(out_shape)
    while pos[0] < ni or pos[1] < no:
        gi, gj = [], []
        pi = take(0, gi, 1) if pos[0] < ni else 1
        pj = take(1, gj, 1) if pos[1] < no else 1
        while pi != pj:
            if pi < pj and pos[0] < ni:
                pi = take(0, gi, pi)
            elif pos[1] < no:
                pj = take(1, gj, pj)
            elif pos[0] < ni:
                pi = take(0, gi, pi)
            else:
                break
        # trailing size-1 dims join the group they follow
        while pos[0] < ni and in_shape[pos[0]] == 1 and (pos[1] >= no or out_shape[pos[1]] != 1):
            take(0, gi, 1)
        while pos[1] < no and out_shape[pos[1]] == 1 and (pos[0] >= ni or in_shape[pos[0]] != 1):
            take(1, gj, 1)
        groups.append((gi, gj))
    return groups


def _target_args(call: Call, in_shape, out_shape):
    """Per output dim: ``"infer"`` (follows the input), ``"literal"``, or a frozenset of traced sources."""
    name = call.name
    nd_out = len(out_shape)
    if name in ("flatten", "squeeze", "unsqueeze"):
        return ["infer"] * nd_out  # sizes computed from the input: they follow pruning
    if name == "unflatten":
        dim = _norm_dim(_arg(call, 1, "dim"), len(in_shape))
        sizes = list(_arg(call, 2, "sizes"))
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


def reshape(ctx, call: Call) -> None:
    x = call.x
    if x is None or not x.fields:
        return _unlabeled(call)
    per_out = replay(ctx, call, check_lost=False)
    out = call.outputs[0]
    in_shape, out_shape = x.shape, out.shape
    labeled = x.labeled_dims()
    kinds = _target_args(call, in_shape, out_shape)
    out_fields = out.fields
    for gi, gj in _dim_groups(in_shape, out_shape):
        lab_in = [d for d in gi if d in labeled]
        if not lab_in:
            continue
        big_out = [d for d in gj if out_shape[d] > 1]
        in_fields = [f for f in x.fields if varying_dims(f) & set(lab_in)]
        where = f"'{call.name}' to {list(out_shape)}"

        def freeze(msg):
            for f in in_fields:
                ctx.couplings.fix(f, f"{where}: {msg}")

        def derived(k):
            kind = kinds[k]
            if kind == "infer":
                return True
            if kind == "literal":
                return False
            # traced: its sources must carry the same channels as the reshaped dims (checked after union-find)
            src_fields = []
            for uid, dim in kind:
                v = ctx.values.get(uid)
                if v is not None and dim < v.ndim:
                    g = v.field_on(dim)
                    if g is not None:
                        src_fields.append(g)
            if not src_fields:
                return False
            ctx.deferred_same_channels(src_fields, in_fields, f"{where}: a size comes from other channels")
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
                ctx.couplings.tie_along(f, tie_dims)


# --- split / chunk / unbind / narrow / select -----------------------------------------------------------------------


def split(ctx, call: Call) -> None:
    """``split`` / ``chunk`` / ``tensor_split``: equal parts that follow the channel count are tied position-wise."""
    x = call.x
    if x is None or not x.fields:
        return _unlabeled(call)
    name = call.name
    dim = _arg(call, 2, "dim", 0)
    d = _norm_dim(dim if isinstance(dim, int) else 0, x.ndim)
    f = x.field_on(d)
    per_out = replay(ctx, call, check_lost=False)
    if f is None:
        return
    sizes = [o.shape[d] for o in call.outputs]
    arg = _arg(call, 1, "split_size_or_sections" if name == "split" else "chunks")
    parts = [compress(p[0]) if p else None for p in per_out]
    parts = [align(p, x.ndim) if p is not None else None for p in parts]
    if len(sizes) <= 1:
        return
    if name == "chunk" or isinstance(arg, TracedInt):
        derived = [True] * len(sizes)  # equal parts that follow the channel count
    elif isinstance(arg, (list, tuple)):
        derived = [isinstance(a, TracedInt) for a in arg]
    else:
        derived = [False] * len(sizes)
    where = f"'{name}' cuts the channels at sizes {sizes}"
    if sum(derived) == 1:
        # the literal parts keep their size; the one part whose size is computed from the input absorbs pruning
        for p, dv in zip(parts, derived):
            if p is not None and not dv:
                ctx.couplings.fix(p, f"{where}: this part's size is a literal in the model's code")
    elif all(derived) and len(set(sizes)) == 1:
        # equal parts: every part must lose the same positions
        real = [p for p in parts if p is not None]
        for p in real[1:]:
            ctx.couplings.pair(real[0], p)
    else:
        ctx.couplings.fix(f, f"{where}: the sizes are literals in the model's code")


def narrow_select(ctx, call: Call) -> None:
    replay(ctx, call)  # lost-label check freezes a partial selection


# --- cat / stack ----------------------------------------------------------------------------------------------------


def cat(ctx, call: Call) -> None:
    tensors = call.args[0] if call.args else call.kwargs.get("tensors")
    if tensors is None:
        return _unlabeled(call)
    vals = [ctx.value_of(t) for t in tensors]
    out = call.outputs[0]
    nd = out.ndim
    dim = _arg(call, 1, "dim", 0)
    d = _norm_dim(dim, nd)
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
                    ctx.couplings.fix(fa, reason)
            elif k > ka:
                for fb in partners:
                    ctx.couplings.unify(fa, fb, reason)
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


# --- reductions / pooling -------------------------------------------------------------------------------------------


def reduction(ctx, call: Call) -> None:
    x = call.x
    if x is None or not x.fields:
        return _unlabeled(call)
    dim = _arg(call, 1, "dim")
    keepdim = bool(_arg(call, 2, "keepdim", False))
    if isinstance(dim, torch.dtype):
        dim = None
    if dim is None:
        return _unlabeled(call)
    dims = [dim] if isinstance(dim, int) else list(dim)
    dims = sorted({_norm_dim(int(dd), x.ndim) for dd in dims})
    for o in call.outputs:
        fields = []
        for f in x.fields:
            if varying_dims(f) & set(dims):
                continue  # channels summed away: the result no longer depends on which ones exist
            g = f
            if not keepdim:
                for dd in reversed(dims):
                    g = g.squeeze(dd) if g.ndim > dd else g
            if g.ndim == o.ndim:
                fields.append(g)
        o.fields = fields


def spatial(ctx, call: Call) -> None:
    """Pooling / interpolation / roi ops on ``(N, C, *spatial)``: channels stay on dim 1."""
    x = call.x
    if x is None or not x.fields:
        return _unlabeled(call)
    keep = {1} if call.name.startswith("roi") or call.name.startswith("ps_roi") else {0, 1}
    for o in call.outputs:
        fields = []
        for f in x.fields:
            vd = varying_dims(f)
            if vd <= keep and f.ndim == o.ndim:
                fields.append(f)
            elif vd - keep:
                ctx.couplings.fix(f, f"'{call.name}' resamples a dim that holds channels")
        if o.ndim == x.ndim:
            o.fields = fields
        else:
            o.fields = []


def pad(ctx, call: Call) -> None:
    """``F.pad``: channels pass through unless a dim that holds them is padded (its size would be a literal)."""
    x = call.x
    if x is None or not x.fields:
        return _unlabeled(call)
    amounts = list(_arg(call, 1, "pad", ()))
    padded = set()
    for k in range(0, len(amounts), 2):
        if amounts[k] != 0 or (k + 1 < len(amounts) and amounts[k + 1] != 0):
            padded.add(x.ndim - 1 - k // 2)
    out = call.outputs[0]
    fields = []
    for f in x.fields:
        if varying_dims(f) & padded:
            ctx.couplings.fix(f, "'pad' adds positions to a dim that holds channels")
        elif f.ndim == out.ndim:
            fields.append(f)
    out.fields = fields


def softmax_like(ctx, call: Call) -> None:
    elementwise(ctx, call, inputs=call.inputs[:1])


# --- contractions ---------------------------------------------------------------------------------------------------


def _einsum_general(ctx, call: Call, specs: List[str], out_spec: str, vals: List[Value]) -> None:
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
                    ctx.couplings.fix(f, reason)
                elif j > i:
                    for g in partners:
                        ctx.couplings.unify(f, g, reason)
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


def matmul(ctx, call: Call) -> None:
    vals = call.inputs[:2]
    if len(vals) < 2 or not (vals[0].fields or vals[1].fields):
        return _unlabeled(call)
    a, b = vals
    if a.ndim == 0 or b.ndim == 0:
        return elementwise(ctx, call)
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
    _einsum_general(ctx, call, [sa, sb], so, [a, b])


def baddbmm(ctx, call: Call) -> None:
    """``addmm(bias, a, b)`` / ``baddbmm``: a matmul plus a broadcast add."""
    if len(call.inputs) < 3:
        return _unfixable(ctx, call)
    sub = Call(call.index, "matmul", call.func, call.args[1:], {}, call.inputs[1:3], call.outputs)
    matmul(ctx, sub)
    prod = call.outputs[0]
    elementwise(ctx, Call(call.index, call.name, call.func, (), {}, [call.inputs[0], Value(-1, prod.shape, fields=prod.fields)], call.outputs))


def einsum(ctx, call: Call) -> None:
    eq = call.args[0]
    ops = call.args[1:]
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = ops[0]
    vals = [ctx.value_of(t) for t in ops]
    eq = eq.replace(" ", "")
    if "..." in eq or "->" not in eq:
        return _unfixable(ctx, call)
    lhs, rhs = eq.split("->")
    _einsum_general(ctx, call, lhs.split(","), rhs, vals)


def functional_linear(ctx, call: Call) -> None:
    """``F.linear(x, W, b)`` with a weight that is not a registered layer's: ``x @ W.T + b``."""
    vals = call.inputs
    if len(vals) < 2:
        return _unfixable(ctx, call)
    x, w = vals[0], vals[1]
    spec_x = string.ascii_letters[: x.ndim - 1] + "Z"
    _einsum_general(ctx, call, [spec_x, "YZ"], spec_x[:-1] + "Y", [x, w])
    if len(vals) > 2:
        out = call.outputs[0]
        elementwise(ctx, Call(call.index, "linear", call.func, (), {}, [vals[2], Value(-1, out.shape, fields=out.fields)], call.outputs))


def sdpa(ctx, call: Call) -> None:
    q, k, v = call.inputs[:3]
    n = q.ndim
    letters = string.ascii_letters
    batch = letters[: n - 2]
    _einsum_general(ctx, Call(call.index, call.name, None, (), {}, [q, k], [Value(-1, q.shape[:-1] + (k.shape[-2],))]),
                    [batch + "LE", batch + "SE"], batch + "LS", [q, k])
    scores = Value(-1, q.shape[:-1] + (k.shape[-2],))
    _einsum_general(ctx, call, [batch + "LS", batch + "SV"], batch + "LV", [scores, v])
    if len(call.inputs) > 3:  # attn_mask: added to the scores
        for m in call.inputs[3:]:
            for f in m.fields:
                ctx.couplings.fix(f, "used as an attention mask")


# --- creation -------------------------------------------------------------------------------------------------------


def creation(ctx, call: Call) -> None:
    """``torch.zeros(b, c, h, w)`` with sizes read from a tensor: the new tensor holds those channels."""
    out = call.outputs[0] if call.outputs else None
    if out is None:
        return
    size_args = [a for a in call.args if not isinstance(a, torch.Tensor)]
    if call.name.startswith("new_"):
        size_args = list(call.args[1:])
    if len(size_args) == 1 and isinstance(size_args[0], (tuple, list, torch.Size)):
        size_args = list(size_args[0])
    if "size" in call.kwargs:
        size_args = list(call.kwargs["size"])
    fields = []
    if len(size_args) == out.ndim:
        for d, s in enumerate(size_args):
            if isinstance(s, TracedInt) and s.exact and len(s.sources) == 1:
                uid, sd = next(iter(s.sources))
                v = ctx.values.get(uid)
                g = v.field_on(sd) if v is not None and sd < v.ndim else None
                if g is not None:
                    line = g.movedim(sd, 0).reshape(g.shape[sd], -1)[:, 0]
                    fields.append(new_field(out.shape, d, line))
    out.fields = merge_fields(fields)


def like(ctx, call: Call) -> None:
    elementwise(ctx, call, inputs=call.inputs[:1])


# --- fallbacks ------------------------------------------------------------------------------------------------------


def _unlabeled(call: Call) -> None:
    for o in call.outputs:
        o.fields = []


def no_channels(ctx, call: Call) -> None:
    """Ops whose outputs never carry channels (shape queries, argmax indices, comparisons to scalars…)."""
    _unlabeled(call)


def _unfixable(ctx, call: Call) -> None:
    for v in call.inputs:
        for f in v.fields:
            ctx.couplings.fix(f, f"unsupported operation '{call.name}'")
    _unlabeled(call)


def unknown(ctx, call: Call) -> None:
    if any(v.fields for v in call.inputs):
        ctx.report_unknown(call.name)
    _unfixable(ctx, call)


# ---------------------------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------------------------

_ELEMENTWISE = """add sub rsub mul div true_divide floor_divide remainder fmod pow neg negative abs exp exp2 expm1 log log2
log10 log1p sqrt rsqrt sigmoid tanh relu relu6 hardtanh hardswish hardsigmoid silu gelu elu leaky_relu selu celu mish
softplus softsign tanhshrink threshold logsigmoid dropout dropout1d dropout2d dropout3d alpha_dropout
feature_alpha_dropout native_dropout clamp clamp_min clamp_max clip where maximum minimum fmax fmin sign sgn erf erfc
erfinv sin cos tan asin acos atan sinh cosh atan2 hypot contiguous clone detach masked_fill lerp addcmul addcdiv square
reciprocal logical_and logical_or logical_not logical_xor eq ne lt gt le ge nan_to_num isnan isinf isfinite round floor
ceil trunc frac bitwise_and bitwise_or bitwise_xor bitwise_not and or xor invert lshift rshift positive float_power
xlogy copy fill zero normal uniform bernoulli requires_grad cpu cuda float half double bfloat16 int long bool short
char byte pin_memory stochastic_depth hardshrink softshrink rrelu glu_ exponential random cumsum cumprod logit
normalize local_response_norm add_relu pos neg_ mul_ sigmoid_ relu_ data abs_ clamp_ detach_ cauchy geometric
log_normal masked_scatter index_fill scatter_add""".split()

_REPLAY = """permute transpose swapaxes swapdims t T mT H mH movedim moveaxis squeeze unsqueeze expand expand_as broadcast_to
repeat tile flip fliplr flipud repeat_interleave""".split()

def selection(ctx, call: Call) -> None:
    """``topk`` / ``sort`` / ``nms`` / ``nonzero``…: entries picked by value. The picked positions depend on the
    data, so any channels among them are kept fixed (quietly: these are well understood, e.g. detection
    post-processing), and the results carry no channel."""
    for v in call.inputs:
        for f in v.fields:
            ctx.couplings.fix(f, f"'{call.name}' selects entries by value")
    _unlabeled(call)


def _names(text: str) -> List[str]:
    return text.split()


_NO_CHANNELS = _names("""dim ndim numel nelement size shape is_contiguous dtype device is_cuda grad_fn requires_grad_get
data_ptr stride storage_offset element_size is_floating_point get_device item tolist __len__ __bool__ __format__
__repr__ __hash__ __eq__ is_complex is_leaf is_sparse layout untyped_storage __reduce_ex__ __deepcopy__ __index__
__int__ __float__ __array__ __contains__ register_hook retain_grad isclose allclose equal bincount is_nonzero
has_names names is_quantized is_meta is_mkldnn __iter__ __dir__ __sizeof__ _version __get__ output_nr is_inference
is_set_to real imag isreal""")

# (rule, op names); a later row wins for a name listed twice
_TABLE = [
    (no_channels, _NO_CHANNELS),
    (elementwise, _ELEMENTWISE),
    (simple_replay, _REPLAY),
    (first_operand, ["to", "type_as", "type", "new_tensor"]),
    (reshape, ["view", "reshape", "flatten", "unflatten", "view_as", "reshape_as"]),
    (split, ["split", "chunk", "tensor_split", "split_with_sizes", "unsafe_split", "unsafe_chunk"]),
    (narrow_select, ["unbind", "narrow", "select"]),
    (getitem, ["__getitem__"]),
    (setitem, ["__setitem__"]),
    (roll, ["roll"]),
    (pad, ["pad"]),
    (index_replay, ["index_select", "gather", "take_along_dim"]),
    (cat, ["cat", "concat", "concatenate", "stack"]),
    (reduction, _names("""sum mean amax amin max min std var norm logsumexp prod nansum nanmean median nanmedian
        std_mean var_mean argmax argmin all any count_nonzero mode""")),
    (spatial, _names("""max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d
        adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d lp_pool1d
        lp_pool2d lp_pool3d max_pool1d_with_indices max_pool2d_with_indices max_pool3d_with_indices
        adaptive_max_pool1d_with_indices adaptive_max_pool2d_with_indices interpolate upsample upsample_nearest
        upsample_bilinear grid_sample roi_align roi_pool ps_roi_align ps_roi_pool fractional_max_pool2d""")),
    (softmax_like, ["softmax", "log_softmax", "softmin"]),
    (matmul, ["matmul", "mm", "bmm", "__matmul__", "__rmatmul__", "inner"]),
    (baddbmm, ["addmm", "baddbmm", "addbmm"]),
    (einsum, ["einsum"]),
    (functional_linear, ["linear"]),
    (sdpa, ["scaled_dot_product_attention"]),
    (creation, _names("""zeros ones empty full rand randn randint arange linspace logspace tensor as_tensor eye
        new_zeros new_ones new_empty new_full scalar_tensor""")),
    (like, ["zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like"]),
    (selection, _names("""sort topk unique unique_consecutive nonzero argsort nms batched_nms masked_select kthvalue
        msort searchsorted bucketize""")),
]

#: op short name -> rule; anything else that meets a channel is reported as unsupported and kept fixed
OP_RULES: Dict[str, callable] = {name: rule for rule, names in _TABLE for name in names}

