"""Following channels through one call of a layer: the context a layer family's channel map runs in.

Each layer family (:mod:`prune_explorer.layers`) describes how a call of its layer moves channels with a
``channel_map(ctx, module, name, call, x)``. :class:`LayerCallContext` is that ``ctx``: it gives the map the
layer's channel spaces (created on first use, with the pruner the registry picks) and the operations on channel
labels (:mod:`.labels`) a layer needs: read an input's channels, tie positions the layer's arithmetic couples, fix
channels it cannot follow, label its outputs. :func:`custom_channel_map` is the map for a layer whose pruner the
user supplied (``customized_pruners``): channels are found on the dim whose size matches the pruner's counts.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch

from ..model.channel_space import SIDE_IN, SIDE_OUT
from .labels import Value, new_field, varying_dims
from .op_rules import elementwise


def _ids(space) -> torch.Tensor:
    return torch.as_tensor(space.gids(), dtype=torch.long)


class LayerCallContext:
    """The :class:`~prune_explorer.layers.family.ChannelMapContext` of a tracer (see the protocol for each method)."""

    __slots__ = ("tracer", "couplings")

    def __init__(self, tracer):
        self.tracer = tracer
        self.couplings = tracer.couplings

    def channels(self, module, name: str, side: str, passthrough: bool = False) -> torch.Tensor:
        return self.tracer.space_ids(self.tracer.space(module, name, side, passthrough=passthrough))

    def consume(self, x: Optional[Value], dim: int, ids: torch.Tensor, layer: str) -> None:
        if x is None:
            return
        shape, n = x.shape, ids.numel()
        d = dim % len(shape) if shape else 0
        if not shape or shape[d] != n:
            self.couplings.fix(ids, f"{layer} reads an input whose size does not match its channel count")
            return
        f = x.field_on(d)
        if f is None:
            self.couplings.fix(ids, f"{layer} reads channels that come from no prunable layer (e.g. the model input)")
            return
        if f.numel() == n:  # f varies along d only: compared as 1-d arrays
            consecutive_from = self.tracer.consecutive_from
            a0, b0 = consecutive_from(ids), consecutive_from(f)
            if a0 is not None and b0 is not None and n:  # two blocks of consecutive ids: unify_ids's pairs as 3 ints
                if a0 != b0:
                    self.couplings.pair_range(a0, b0, n)
                return
            self.couplings.unify_ids(ids, f, f"{layer} reads channels that are fixed")
        else:
            self.couplings.unify(new_field(x.shape, d, ids), f, f"{layer} reads channels that are fixed")

    def fix(self, what, reason: str) -> None:
        if isinstance(what, torch.Tensor):
            self.couplings.fix(what, reason)
        elif what is not None:
            for f in what.fields:
                self.couplings.fix(f, reason)

    def tie_groups(self, ids: torch.Tensor, groups: int) -> None:
        self.couplings.tie_along(ids.reshape(groups, ids.numel() // groups), [0])

    def attention_heads(self, ids: torch.Tensor, heads: int) -> None:
        t = self.tracer
        grid = ids.reshape(heads, ids.numel() // heads)
        whole = t.head_pruning == "heads"
        self.couplings.tie_along(grid, [1] if whole else [0])
        t.record_head_split(grid, [0, 1], 0 if whole else 1)
        t.contracted_ids.append(ids)

    def fix_other_dims(self, x: Value, feature_dim: int, keep: set, reason: str) -> None:
        keep_set = None
        for f in x.fields:
            if _varies_along(f, feature_dim):  # the layer's own channels: not fixed here
                continue
            if keep_set is None:
                keep_set = set(keep)
            if not varying_dims(f) <= keep_set:
                self.couplings.fix(f, reason)

    def fix_dims(self, x: Value, dims: set, reason: str) -> None:
        for f in x.fields:
            if varying_dims(f) & set(dims):
                self.couplings.fix(f, reason)

    def carried(self, x: Value, out: Value, feature_dim: int, keep: set) -> list:
        fields = []
        keep_set = None
        for f in x.fields:
            if _varies_along(f, feature_dim):  # (a layer's input usually holds only the field it reads)
                continue
            if keep_set is None:
                keep_set = set(keep)
            if varying_dims(f) <= keep_set and f.ndim == out.ndim:
                fields.append(f)
        return fields

    def unsqueezed(self, x: Value, out: Value) -> list:
        return [f.unsqueeze(-1) for f in x.fields if f.ndim + 1 == out.ndim]

    def label(self, out: Value, dim: int, ids: Optional[torch.Tensor], carried: Sequence = ()) -> None:
        if ids is None:
            out.fields = list(carried)
            return
        f = new_field(out.shape, dim % out.ndim, ids)
        self.tracer.mark_consecutive(f, ids)
        out.fields = [f, *carried]

    def unlabel(self, *values: Value) -> None:
        for v in values:
            v.fields = []

    def elementwise(self, call, inputs: Sequence[Value]) -> None:
        elementwise(self.tracer, call, inputs=list(inputs))


def _varies_along(f: torch.Tensor, dim: int) -> bool:
    """``dim in varying_dims(f)`` without building the set: ``dim`` a plain int (a negative one is never in it)."""
    if type(dim) is not int:
        return dim in varying_dims(f)
    shape = f.shape
    return 0 <= dim < len(shape) and shape[dim] > 1


def custom_channel_map(ctx: LayerCallContext, module, name: str, call, x: Value) -> None:
    """A layer with a user-supplied pruner: channels found on the dim whose size matches (dim 1, else last)."""
    pruner = ctx.tracer.pruner_for(module)
    out = call.outputs[0] if call.outputs else None
    coupled = bool(getattr(pruner, "in_out_coupled", lambda m: False)(module))
    n_in = _custom_count(pruner, module, name, SIDE_IN, x)
    n_out = _custom_count(pruner, module, name, SIDE_OUT, x if coupled else out)

    def ids_of(side, n, passthrough=False):
        return _ids(ctx.tracer.space(module, name, side, passthrough=passthrough, size=n))

    def pick(v: Value, n):
        if v is None or n is None or v.ndim == 0:
            return None
        for d in ([1] if v.ndim > 1 else []) + [v.ndim - 1]:
            if v.shape[d] == n:
                return d
        return None

    if coupled and n_out is not None:
        # one space: input channel c is output channel c (a per-channel scale, a custom norm...)
        ids = ids_of(SIDE_OUT, n_out, passthrough=True)
        d_in = pick(x, n_out)
        if d_in is None:
            ctx.fix(ids, f"{name}: no input dim has {n_out} channels")
        else:
            ctx.consume(x, d_in, ids, name)
        for o in call.outputs:
            d = pick(o, n_out)
            ctx.label(o, d, ids if d is not None else None)
        return
    if n_in is not None and x is not None:
        ids = ids_of(SIDE_IN, n_in)
        d = pick(x, n_in)
        if d is None:
            ctx.fix(ids, f"{name}: no input dim has {n_in} channels")
        else:
            ctx.consume(x, d, ids, name)
    if out is not None:
        d = None
        if n_out is not None:
            ids = ids_of(SIDE_OUT, n_out)
            d = pick(out, n_out)
            if d is None:
                ctx.fix(ids, f"{name}: no output dim has {n_out} channels")
        ctx.label(out, d or 0, ids if d is not None else None)
    ctx.unlabel(*call.outputs[1:])


def _custom_count(pruner, module, name, side, v: Optional[Value]) -> Optional[int]:
    """A user pruner's channel count for ``side``; if its ``get_*_channels`` raises (Torch-Pruning never calls it
    while tracing, so ported pruners may not implement it), the size of ``v``'s channel dim (1, else the last)."""
    fn = pruner.get_out_channels if side == SIDE_OUT else pruner.get_in_channels
    try:
        return fn(module)
    except Exception as exc:
        if v is None or v.ndim == 0:
            raise
        n = v.shape[1] if v.ndim > 1 else v.shape[-1]
        warnings.warn(
            f"prune_explorer: {type(pruner).__name__}.{getattr(fn, '__name__', 'get_channels')}({name}) raised "
            f"{type(exc).__name__}: {exc}; using the channel count seen while tracing ({n})", stacklevel=2)
        return n
