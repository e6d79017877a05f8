"""Shape ops replayed on the label fields: ``permute``, ``flip``, indexing, ``narrow``... run on the int64 label
tensors instead of the data, which gives the exact channel mapping of any combination of them. A literal index
along a channel dim selects a fixed subset of channels, which is then fixed."""

from __future__ import annotations

from typing import List

import torch

from ..labels import Value, align, compress, full_field, merge_fields, varying_dims
from .call import Call, arg, fix_lost_labels, norm_dim, unfixable, unlabeled
from .slices import attribute_slice, fraction_slice, index_dims

__all__ = ["replay", "reshape_field", "dim_groups", "simple_replay", "index_replay", "roll", "getitem", "setitem",
           "narrow_select", "pad"]


def meta_args_as_zeros(obj):
    """Meta-device arguments (index tensors during a meta trace) become CPU zeros of the same shape and dtype.

    Labels picked through such an index along a channel dim are fixed by the rules anyway; along other dims the
    labels are constant, so any index gives the same result.
    """
    if isinstance(obj, torch.Tensor) and obj.device.type == "meta":
        return torch.zeros(obj.shape, dtype=obj.dtype)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(meta_args_as_zeros(o) for o in obj)
    if isinstance(obj, list):
        return [meta_args_as_zeros(o) for o in obj]
    return obj


# ops that are valid on the compact (broadcast) form of a field: no need to materialise the full shape
_ON_BROADCAST = {"permute", "transpose", "swapaxes", "swapdims", "t", "T", "mT", "movedim", "moveaxis", "flip",
                 "fliplr", "flipud", "roll", "expand", "expand_as", "broadcast_to", "contiguous", "clone"}
_RESHAPES = {"view", "reshape", "flatten", "unflatten", "view_as", "reshape_as", "squeeze", "unsqueeze"}


def reshape_field(f: torch.Tensor, in_shape, out_shape) -> torch.Tensor:
    """Reshape a compact field like its tensor goes from ``in_shape`` to ``out_shape``, expanding only the dim
    groups along which the labels vary (a (1, 56, 56, 96) window partition stays a 96-element operation)."""
    sizes_in, sizes_out = [], []
    for gi, gj in dim_groups(tuple(in_shape), tuple(out_shape)):
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
    if call.name == "__getitem__" and len(call.args) == 2 and not call.kwargs and _meta_rows(call.args[1]) \
            and len(shape) and shape[0]:
        # x[index] with a meta index: meta_args_as_zeros would pick row 0 for every entry of the index; that row,
        # broadcast (a view: no gather of index.numel() rows)
        index, row = call.args[1], src[0]
        return row.reshape((1,) * index.dim() + tuple(row.shape)).expand(tuple(index.shape) + tuple(row.shape))
    if call.name in ("view", "view_as"):
        src = src.contiguous()  # an expanded label tensor has zero strides; the data itself was viewable
    args = [src] + [meta_args_as_zeros(a) for a in call.args[1:]]
    kwargs = {k: meta_args_as_zeros(v) for k, v in call.kwargs.items()}
    return call.func(*args, **kwargs)


def _meta_rows(index) -> bool:
    """An int64 meta tensor of at least one dim: ``x[index]`` picks rows of ``x`` (a 0-d one is an int)."""
    return isinstance(index, torch.Tensor) and index.is_meta and index.dtype == torch.long and index.dim() > 0


def _as_outputs(result) -> List[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for t in result if isinstance(t, torch.Tensor)]


def replay(tracer, call: Call, check_lost: bool = True) -> List[List[torch.Tensor]]:
    """Replay ``call`` on every field of its first input; returns, per output, the new (uncompressed) fields."""
    x = call.x
    per_out: List[List[torch.Tensor]] = [[] for _ in call.outputs]
    if x is None:
        return per_out
    for f in x.fields:
        try:
            res = _as_outputs(_replay(call, f, x.shape))
        except Exception as exc:  # the op cannot run on labels: be safe
            tracer.couplings.fix(f, f"'{call.name}' could not be followed through ({type(exc).__name__})")
            continue
        for k, r in enumerate(res[: len(call.outputs)]):
            per_out[k].append(r)
    for k, o in enumerate(call.outputs):
        o.fields = merge_fields([c for c in (compress(r) for r in per_out[k]) if c is not None])
    if check_lost and not _keeps_every_label(call, x):
        fix_lost_labels(tracer, call, f"'{call.name}' keeps a fixed subset of these channels (literal index or size)")
    return per_out


#: ops whose one output holds every element of their input (moved, or repeated by a broadcast): replayed on a field,
#: they keep each of its labels
_KEEP_EVERY_ELEMENT = frozenset("""permute transpose swapaxes swapdims t T mT H mH movedim moveaxis squeeze unsqueeze
expand expand_as broadcast_to flip fliplr flipud roll""".split())


def _keeps_every_label(call: Call, x: Value) -> bool:
    """Whether :func:`replay` provably lost no label of ``x``: an op of :data:`_KEEP_EVERY_ELEMENT` whose output
    kept one field per input field (none failed to replay, came out empty or was merged away); then
    :func:`~.call.fix_lost_labels` would find nothing to fix."""
    return call.name in _KEEP_EVERY_ELEMENT and len(call.outputs) == 1 and len(call.outputs[0].fields) == len(x.fields)


def simple_replay(tracer, call: Call) -> None:
    replay(tracer, call)


def index_replay(tracer, call: Call) -> None:
    """``index_select`` / ``gather`` / ``take_along_dim``: a literal index along a channel dim freezes it."""
    x = call.x
    if x is None or not x.fields:
        return unlabeled(call)
    dim = arg(call, 1, "dim")
    if isinstance(dim, int):
        d = norm_dim(dim, x.ndim)
        f = x.field_on(d)
        if f is not None:
            tracer.couplings.fix(f, f"'{call.name}' picks channels with a literal index")
    replay(tracer, call)


def roll(tracer, call: Call) -> None:
    x = call.x
    dims = arg(call, 2, "dims")
    if x is not None and dims is not None:
        dims = [dims] if isinstance(dims, int) else list(dims)
        for d in dims:
            f = x.field_on(norm_dim(d, x.ndim))
            if f is not None:
                tracer.couplings.fix(f, "'roll' shifts channels by a literal amount")
    replay(tracer, call)


def getitem(tracer, call: Call) -> None:
    x = call.x
    if x is None or not x.fields:
        return unlabeled(call)
    idx = call.args[1] if len(call.args) > 1 else None
    halves = set()  # dims cut by a slice that follows the pruning (see .slices)
    for d, it in index_dims(x, idx):
        if isinstance(it, (torch.Tensor, list)):
            f = x.field_on(d)
            if f is not None:
                tracer.couplings.fix(f, "indexing picks channels with a literal index tensor")
        if isinstance(it, slice) and (fraction_slice(tracer, x, d, it) or attribute_slice(tracer, x, d, it)):
            halves.add(d)
    if not halves:
        return replay(tracer, call)
    replay(tracer, call, check_lost=False)
    others = [f for f in x.fields if not varying_dims(f) & halves]
    if others:
        fix_lost_labels(tracer, Call(call.index, call.name, call.func, call.args, call.kwargs,
                                     [Value(-1, x.shape, fields=others)], call.outputs),
                        f"'{call.name}' keeps a fixed subset of these channels (literal index or size)")


def setitem(tracer, call: Call) -> None:
    """``x[idx] = y``: the written region of ``x`` and ``y`` hold the same channels."""
    x = call.x
    if x is None or len(call.args) < 3:
        return
    y = call.args[2]
    yv = tracer.value_of(y) if isinstance(y, torch.Tensor) else None
    idx = call.args[1]
    for d, it in index_dims(x, idx):  # x[:, 0:self.in_channels] = ...: the attribute follows the channels before it
        if isinstance(it, slice):
            attribute_slice(tracer, x, d, it)
    region_fields = []
    for f in x.fields:
        try:
            region_fields.append(full_field(f, x.shape)[meta_args_as_zeros(idx)])
        except Exception:
            tracer.couplings.fix(f, "an indexed assignment could not be followed")
    if yv is not None:
        nd = max([r.ndim for r in region_fields] + [yv.ndim])
        for r in region_fields:
            r = compress(r)
            if r is None:
                continue
            for g in yv.fields:
                tracer.couplings.unify(align(r, nd), align(g, nd), "indexed assignment")
        if not region_fields and yv.fields:
            for g in yv.fields:
                tracer.couplings.fix(g, "written into a tensor that carries no prunable channel")
    # the tensor keeps its labels (the in-place op gives it a new value)
    for o in call.outputs:
        o.fields = list(x.fields)


def dim_groups(in_shape, out_shape):
    """Split a reshape into groups of input dims and output dims with equal products.

    >>> dim_groups((1, 56, 56, 96), (1, 8, 7, 8, 7, 96))
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


def narrow_select(tracer, call: Call) -> None:
    replay(tracer, call)  # lost-label check freezes a partial selection


def pad(tracer, call: Call) -> None:
    """``F.pad``: channels pass through unless a dim that holds them is padded (its size would be a literal)."""
    x = call.x
    if x is None or not x.fields:
        return unlabeled(call)
    amounts = list(arg(call, 1, "pad", ()))
    padded = set()
    for k in range(0, len(amounts), 2):
        if amounts[k] != 0 or (k + 1 < len(amounts) and amounts[k + 1] != 0):
            padded.add(x.ndim - 1 - k // 2)
    out = call.outputs[0]
    fields = []
    for f in x.fields:
        if varying_dims(f) & padded:
            tracer.couplings.fix(f, "'pad' adds positions to a dim that holds channels")
        elif f.ndim == out.ndim:
            fields.append(f)
    out.fields = fields


def index_add(tracer, call: Call) -> None:
    """``out = x.index_add(dim, index, source)`` (the eager mixture-of-experts loop adds each expert's rows back):
    rows of ``source`` are added to rows of ``x`` along ``dim``, so along every other dim their channels meet
    position by position (coupled, as in ``x + source``); channels along ``dim`` itself are picked by the index
    (fixed). The result carries ``x``'s labels."""
    x = call.x
    src_t = arg(call, 3, "source")
    if x is None or not isinstance(src_t, torch.Tensor) or not isinstance(arg(call, 1, "dim"), int):
        return unfixable(tracer, call)
    src = tracer.value_of(src_t)
    d = norm_dim(arg(call, 1, "dim"), x.ndim)
    reason = f"'{call.name}' adds rows picked by an index"
    kept = []
    for v in (x, src):
        for f in v.fields:
            if f.shape[d] > 1:
                tracer.couplings.fix(f, reason)
            elif v is x:
                kept.append(f)
    if src.ndim == x.ndim:
        for f in kept:
            for g in src.fields:
                if g.shape[d] == 1 and varying_dims(f) & varying_dims(g):
                    tracer.couplings.unify(f, g, f"'{call.name}' adds channels to positions that hold none")
        for g in src.fields:  # source channels the base does not hold: nothing to meet them
            if g.shape[d] == 1 and not any(varying_dims(f) & varying_dims(g) for f in kept):
                tracer.couplings.fix(g, f"'{call.name}' adds channels to positions that hold none")
    for o in call.outputs:
        o.fields = [f for f in kept if f.ndim == o.ndim]
