"""Ops that regroup the channel dim: ``view`` / ``reshape`` / ``flatten`` (a size read from the input or an attribute
follows pruning, a literal does not; a dim split into heads is recorded), ``split`` / ``chunk`` (equal parts are tied
position by position), ``expand`` and ``cat`` / ``stack`` (the labels of the pieces are concatenated). Sizes: see
:mod:`.sizes`."""

from __future__ import annotations

import numpy as np
import torch

from ..labels import Value, align, compress, field_view, merge_fields, varying_dims
from ..size_args import AttrSize, MixedSize, OpaqueSize, kind_attrs, kind_of
from ..traced_int import TracedInt
from .call import Call, arg, norm_dim, unlabeled
from .replay import dim_groups, replay
from .sizes import check_sources, couple_size, follows, hold_size, tie_and_narrow

__all__ = ["reshape", "split", "expand", "cat"]


def _target_args(tracer, call: Call, in_shape, out_shape):
    """Per output dim, the kind of its size (see :func:`~..size_args.kind_of`)."""
    name = call.name
    nd_out = len(out_shape)
    if name in ("flatten", "squeeze", "unsqueeze"):
        return ["infer"] * nd_out  # sizes computed from the input: they follow pruning
    if name == "unflatten":
        dim = norm_dim(arg(call, 1, "dim"), len(in_shape))
        sizes = list(arg(call, 2, "sizes"))
        kinds = ["infer"] * nd_out
        for k, s in enumerate(sizes):
            kinds[dim + k] = kind_of(s, tracer.held_attributes)
        return kinds
    if name in ("view_as", "reshape_as"):
        return [frozenset({(call.inputs[1].uid, d)}) for d in range(nd_out)] if len(call.inputs) > 1 else ["literal"] * nd_out
    shape = list(call.args[1:]) or list(call.kwargs.get("shape", call.kwargs.get("size", ())))
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = list(shape[0])
    if len(shape) != nd_out or any(isinstance(s, torch.dtype) for s in shape):
        return ["literal"] * nd_out
    return [kind_of(s, tracer.held_attributes) for s in shape]


def reshape(tracer, call: Call) -> None:
    x = call.x
    out = call.outputs[0] if call.outputs else None
    if x is None or out is None:
        return unlabeled(call)
    in_shape, out_shape = x.shape, out.shape
    kinds = _target_args(tracer, call, in_shape, out_shape)
    where = f"'{call.name}' to {list(out_shape)}"
    tracer.handled_attributes(kinds)
    if not x.fields:
        for k in kinds:
            hold_size(tracer, k, f"{where}: it sizes a dim that carries no channel")
        return unlabeled(call)
    replay(tracer, call, check_lost=False)
    labeled = x.labeled_dims()
    for gi, gj in dim_groups(in_shape, out_shape):
        lab_in = [d for d in gi if d in labeled]
        for d in gj:
            if not lab_in or out_shape[d] == 1:
                hold_size(tracer, kinds[d], f"{where}: it sizes a dim that carries no channel")
        if not lab_in:
            continue
        big_out = [d for d in gj if out_shape[d] > 1]
        in_fields = [f for f in x.fields if varying_dims(f) & set(lab_in)]

        def freeze(msg):
            for f in in_fields:
                tracer.couplings.fix(f, f"{where}: {msg}")
            for d in gj:
                hold_size(tracer, kinds[d], f"{where}: {msg}")

        if len(big_out) <= 1:
            if big_out:
                why = follows(tracer, kinds[big_out[0]])
                if why is not None:
                    freeze(why)
                else:
                    couple_size(tracer, kinds[big_out[0]], out, big_out[0], where)
                    _single_head(tracer, x, out, kinds, gi, big_out[0])
            continue
        if len([d for d in gi if in_shape[d] > 1]) != 1:
            freeze("channels are regrouped across several dims")
            continue
        free_dims = [d for d in big_out if follows(tracer, kinds[d]) is None]
        if not free_dims:
            freeze("the channel dim is split with no size following the channel count")
            continue
        _split_dim(tracer, out, kinds, big_out, free_dims, in_fields, where)


def _single_head(tracer, x, out, kinds, gi, d: int) -> None:
    """``k.view(B, S, self.num_key_value_heads, self.head_dim)`` with one key-value head (multi-query attention): the
    channel dim becomes a head axis of size 1 and the head size. Recorded as a head split of one head (when the head
    size comes from an attribute), so that the attention block counts its key-value heads (see :mod:`..heads`)."""
    # one input dim (the channels, same size) right after a size-1 dim inserted in front of it, the head size an attribute
    if len(gi) != 1 or d != gi[0] + 1 or out.shape[d - 1] != 1 or x.shape[gi[0]] != out.shape[d] \
            or not kind_attrs(kinds[d]):
        return
    grid = [f for f in out.fields if d in varying_dims(f)]
    if grid:
        tracer.record_head_split(grid[0], [d - 1, d], d, out.shape)


def _split_dim(tracer, out, kinds, big_out, free_dims, in_fields, where: str) -> None:
    """One channel dim split into several (heads x head size, groups x channels per group): one of them follows the
    pruning, the others keep their size. Where several could follow (``num_heads`` and ``head_dim`` both attributes),
    the graph's ``head_pruning`` option picks the head count or the head size."""
    free = free_dims[0] if len(free_dims) == 1 or tracer.head_pruning == "heads" else free_dims[-1]
    tie_dims = [d for d in big_out if d != free]
    grid = [f for f in out.fields if varying_dims(f) & set(big_out)]
    out.fields = [tie_and_narrow(tracer, f, tie_dims, f"{where}: the split keeps this size")
                  if varying_dims(f) & set(big_out) else f for f in out.fields]
    for d in tie_dims:  # sizes the split keeps: attributes keep their value, tensor sizes their channels
        hold_size(tracer, kinds[d], f"{where}: the split keeps this size")
        sources = kinds[d].sources if isinstance(kinds[d], MixedSize) else kinds[d]
        if isinstance(sources, frozenset):
            check_sources(tracer, sources, in_fields, where)
    couple_size(tracer, kinds[free], out, free, where)
    if grid:
        tracer.record_head_split(grid[0], big_out, free, out.shape)


def split(tracer, call: Call) -> None:
    """``split`` / ``chunk`` / ``tensor_split``: equal parts that follow the channel count are tied position-wise;
    parts sized by attributes (``split([self.key_dim, self.key_dim, self.val_dim])``) each follow their own."""
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
    args = list(sizes_arg) if isinstance(sizes_arg, (list, tuple)) else [sizes_arg] * len(sizes)
    kinds = [kind_of(a, tracer.held_attributes) for a in args] if len(args) == len(sizes) else ["literal"] * len(sizes)
    tracer.handled_attributes(kinds)
    if name == "chunk":
        derived = [True] * len(sizes)  # equal parts that follow the channel count
    else:  # sizes read from tensors or attributes follow the channel count; literals do not
        derived = [isinstance(a, TracedInt) and not isinstance(k, OpaqueSize) for a, k in zip(args, kinds)]
    where = f"'{name}' cuts the channels at sizes {sizes}"
    if sum(derived) == 1:
        # the literal parts keep their size; the one part whose size is computed from the input absorbs pruning
        for p, dv, k, o in zip(parts, derived, kinds, call.outputs):
            if p is not None and not dv:
                tracer.couplings.fix(p, f"{where}: this part's size is a literal in the model's code")
            elif p is not None and isinstance(k, AttrSize):
                couple_size(tracer, k, Value(-1, o.shape, fields=[p]), d, where)
    elif all(derived) and isinstance(sizes_arg, (list, tuple)) and len(set(sizes)) > 1 and \
            all(isinstance(k, (AttrSize, frozenset, MixedSize)) for k in kinds):
        # split([self.key_dim, self.key_dim, self.val_dim]): each part follows its own size
        for p, k, o in zip(parts, kinds, call.outputs):
            if p is not None:
                couple_size(tracer, k, Value(-1, o.shape, fields=[p]), d, where)
    elif all(derived) and len(set(sizes)) == 1:
        # equal parts: every part must lose the same positions
        real = [p for p in parts if p is not None]
        for p in real[1:]:
            tracer.couplings.pair(real[0], p)
        if isinstance(kinds[0], AttrSize) and real:  # split(self.split_size): the attribute sizes every part
            couple_size(tracer, kinds[0], Value(-1, call.outputs[0].shape, fields=[real[0]]), d, where)
    else:
        for k in kinds:
            hold_size(tracer, k, f"{where}: the sizes are literals in the model's code")
        tracer.couplings.fix(f, f"{where}: the sizes are literals in the model's code")


def expand(tracer, call: Call) -> None:
    """``expand`` / ``broadcast_to``: replayed on the labels; an attribute size on a dim that keeps the input's
    channels is coupled with them, one that broadcasts a size-1 dim keeps its value."""
    replay(tracer, call)
    sizes = list(call.args[1:]) or list(call.kwargs.get("size", ()))
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
        sizes = list(sizes[0])
    out, x = (call.outputs[0] if call.outputs else None), call.x
    if out is None or x is None or len(sizes) != out.ndim:
        return
    kinds = [kind_of(v, tracer.held_attributes) for v in sizes]
    tracer.handled_attributes(kinds)
    lead = out.ndim - x.ndim
    where = f"'{call.name}' to {list(out.shape)}"
    for d, k in enumerate(kinds):
        if not kind_attrs(k):
            continue
        if isinstance(k, AttrSize) and d >= lead and x.shape[d - lead] == out.shape[d] > 1 \
                and any(f.shape[d] > 1 for f in out.fields):
            couple_size(tracer, k, out, d, where)
        else:
            hold_size(tracer, k, f"{where}: it sizes a broadcast dim")


def cat(tracer, call: Call) -> None:
    tensors = call.args[0] if call.args else call.kwargs.get("tensors")
    if tensors is None:
        return unlabeled(call)
    out = call.outputs[0]
    nd = out.ndim
    # torch.cat skips 1-D empty tensors whatever the dim (a Hugging Face cache starts as torch.tensor([]))
    kept = [t for t in tensors if not (call.name != "stack" and t.dim() == 1 and t.numel() == 0 and nd != 1)]
    if call.args and tensors is call.args[0] and type(tensors) in (list, tuple) and len(kept) == len(tensors) \
            and len(call.inputs) >= len(kept):
        vals = call.inputs[:len(kept)]  # the call's values of its first argument's tensors, in order (their value_of)
    else:
        vals = [tracer.value_of(t) for t in kept]
    tensors = kept
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
            n = f.numel()
            if n and n == f.shape[d]:  # (a vector along the cat dim, every other dim 1: DenseNet's pieces)
                continue
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
    if not others:
        joined = _join_channel_vectors(fields, vals_shapes, d, nd, tracer.consecutive_from)
        if joined is not False:
            out.fields = merge_fields([joined] if joined is not None else [])
            return
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


def _join_channel_vectors(fields, vals_shapes, d: int, nd: int, consecutive_from=lambda f: None):
    """The cat dim's labels when every piece holds at most one field, of size 1 off the cat dim (DenseNet's
    ``torch.cat(features, 1)`` of up to 48 conv outputs ``(1, C_k, 1, 1)``): the pieces' label vectors joined in
    numpy (``-1`` for a piece that carries none), compressed. Returns ``False`` when the pieces are not of that
    kind (the general path then runs; it gives the same labels for these pieces, one torch op per piece).
    ``consecutive_from(f)``: the first id of a field known to hold consecutive ids (``Tracer.consecutive_from``),
    whose labels are then made by ``np.arange`` instead of read from the tensor; when every piece is such a field,
    the joined labels are distinct ids >= 1 along the cat dim, which :func:`compress` would return as they are."""
    parts = []
    all_consecutive = True
    for fs, shape in zip(fields, vals_shapes):
        if len(fs) > 1:
            return False
        f = fs[0] if fs else None
        if f is not None and f.shape[d] > 1:
            n = f.numel()
            if f.ndim != nd or n != f.shape[d]:  # sizes are >= 1: every other dim is 1
                return False
            start = consecutive_from(f)
            if start is None:
                all_consecutive = False
                parts.append(f.numpy().reshape(-1))
            else:
                parts.append(np.arange(start, start + n, dtype=np.int64))
        else:  # no field, or labels that do not vary along the cat dim: the general path gives -1 too
            all_consecutive = False
            parts.append(np.full(shape[d], -1, dtype=np.int64))
    joined = np.concatenate(parts)
    labels = torch.from_numpy(joined).reshape(*field_view(nd, d, joined.size))
    return labels if all_consecutive else compress(labels)
