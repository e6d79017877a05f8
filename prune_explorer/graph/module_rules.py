"""How each layer type reads channels from its inputs and writes them to its outputs.

A layer creates its channel spaces the first time it runs (``conv.in`` and ``conv.out``; one shared space for
pass-through layers such as BatchNorm), couples its input's labels with its input space, and labels its outputs
with its output space. Constraints that the layer's own shape arithmetic imposes are expressed as ties: a grouped
convolution can only lose the same within-group offsets from every group, so those positions are coupled.

Functions take the tracer (``ctx``), the module, its qualified name and the :class:`~.op_rules.Call`.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn as nn

from .channel_space import SIDE_IN, SIDE_OUT
from .labels import Value, new_field, varying_dims

_CONV = (nn.modules.conv._ConvNd,)
_NORM_CHANNEL_FIRST = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _carry(x: Value, out: Value, feature_dim: int, keep_dims) -> list:
    """Fields of ``x`` that vary only along ``keep_dims`` (e.g. the batch dim) pass through the layer unchanged."""
    fields = []
    for f in x.fields:
        vd = varying_dims(f)
        if feature_dim in vd:
            continue
        if vd <= set(keep_dims) and f.ndim == out.ndim:
            fields.append(f)
    return fields


def _fix_others(ctx, x: Value, feature_dim: int, keep_dims, reason: str) -> None:
    for f in x.fields:
        vd = varying_dims(f)
        if feature_dim in vd:
            continue
        if not vd <= set(keep_dims):
            ctx.couple.fix(f, reason)


def consume(ctx, x: Optional[Value], dim: int, ids: torch.Tensor, layer: str) -> None:
    """The layer reads ``x`` along ``dim``: its input channel ids ``ids`` are the channels stored there."""
    if x is None:
        return
    d = dim % x.ndim if x.ndim else 0
    if x.ndim == 0 or x.shape[d] != ids.numel():
        ctx.couple.fix(ids, f"{layer} reads an input whose size does not match its channel count")
        return
    f = x.field_on(d)
    if f is None:
        ctx.couple.fix(ids, f"{layer} reads channels that come from no prunable layer (e.g. the model input)")
        return
    ctx.couple.unify(new_field(x.shape, d, ids), f, f"{layer} reads channels that are fixed")


def _ids(space) -> torch.Tensor:
    return torch.as_tensor(space.gids(), dtype=torch.long)


def conv(ctx, module, name, call, x: Value) -> None:
    out = call.outputs[0]
    n_spatial = module.weight.ndim - 2
    cdim = 1 if x.ndim == n_spatial + 2 else 0
    transposed = getattr(module, "transposed", False)
    cin, cout, g = module.in_channels, module.out_channels, module.groups
    if g > 1 and g == cin == cout:  # depthwise: each output channel is its input channel
        s = ctx.space(module, name, SIDE_OUT, passthrough=True)
        ids = _ids(s)
        consume(ctx, x, cdim, ids, name)
        out.fields = [new_field(out.shape, cdim, ids)] + _carry(x, out, cdim, {0} if cdim == 1 else set())
        return
    s_in = ctx.space(module, name, SIDE_IN)
    s_out = ctx.space(module, name, SIDE_OUT)
    i_ids, o_ids = _ids(s_in), _ids(s_out)
    consume(ctx, x, cdim, i_ids, name)
    if g > 1:
        # every group must keep the same within-group offsets (weight dim 1 is shared by all groups)
        ctx.couple.tie_along(i_ids.reshape(g, cin // g), [0])
        ctx.couple.tie_along(o_ids.reshape(g, cout // g), [0])
    _fix_others(ctx, x, cdim, {0} if cdim == 1 else set(), f"{name} mixes a dim that holds channels")
    out.fields = [new_field(out.shape, cdim, o_ids)] + _carry(x, out, cdim, {0} if cdim == 1 else set())


def linear(ctx, module, name, call, x: Value) -> None:
    out = call.outputs[0]
    s_in = ctx.space(module, name, SIDE_IN)
    s_out = ctx.space(module, name, SIDE_OUT)
    consume(ctx, x, -1, _ids(s_in), name)
    keep = set(range(x.ndim - 1)) if out.shape[:-1] == x.shape[:-1] else set()
    _fix_others(ctx, x, x.ndim - 1, keep, f"{name} changes the shape of a dim that holds channels")
    out.fields = [new_field(out.shape, out.ndim - 1, _ids(s_out))] + _carry(x, out, x.ndim - 1, keep)


def channel_norm(ctx, module, name, call, x: Value) -> None:
    """BatchNorm / InstanceNorm / GroupNorm / PReLU: one space, channels on dim 1 (dim 0 when unbatched)."""
    out = call.outputs[0]
    n = module.num_features if hasattr(module, "num_features") else getattr(module, "num_channels", None)
    if n is None:
        n = module.num_parameters
    cdim = 1 if x.ndim >= 2 else 0
    if x.ndim >= 2 and x.shape[1] != n and x.shape[0] == n:
        cdim = 0
    s = ctx.space(module, name, SIDE_OUT, passthrough=True)
    ids = _ids(s)
    consume(ctx, x, cdim, ids, name)
    if isinstance(module, nn.GroupNorm) and module.num_groups > 1:
        # keep each group's members together: remove the same offsets from every group
        ctx.couple.tie_along(ids.reshape(module.num_groups, n // module.num_groups), [0])
    keep = set(range(x.ndim)) - {cdim}
    out.fields = [new_field(out.shape, cdim, ids)] + _carry(x, out, cdim, keep)


def layer_norm(ctx, module, name, call, x: Value) -> None:
    out = call.outputs[0]
    shape = tuple(module.normalized_shape)
    s = ctx.space(module, name, SIDE_OUT, passthrough=True)
    ids = _ids(s)
    consume(ctx, x, -1, ids, name)
    nd = len(shape)
    for f in x.fields:
        if varying_dims(f) & set(range(x.ndim - nd, x.ndim - 1)):
            ctx.couple.fix(f, f"{name} normalises over a dim that holds channels (normalized_shape={shape})")
    keep = set(range(x.ndim - nd))
    out.fields = [new_field(out.shape, out.ndim - 1, ids)] + _carry(x, out, x.ndim - 1, keep)


def prelu(ctx, module, name, call, x: Value) -> None:
    if module.num_parameters == 1:
        from .op_rules import elementwise

        return elementwise(ctx, call, inputs=[x])
    return channel_norm(ctx, module, name, call, x)


def embedding(ctx, module, name, call, x: Value) -> None:
    out = call.outputs[0]
    s = ctx.space(module, name, SIDE_OUT)
    # labels of the index tensor (rare) stay on their dims; the new last dim holds the embedding channels
    out.fields = [new_field(out.shape, out.ndim - 1, _ids(s))] + [
        f.unsqueeze(-1) for f in x.fields if f.ndim + 1 == out.ndim
    ]


def multihead_attention(ctx, module, name, call, x: Value) -> None:
    s = ctx.space(module, name, SIDE_OUT, passthrough=True)
    ids = _ids(s)
    vals = call.inputs
    q = vals[0]
    consume(ctx, q, -1, ids, name)
    same = getattr(module, "_qkv_same_embed_dim", True)
    for v in vals[1:3]:
        if same:
            consume(ctx, v, -1, ids, name)
        else:
            for f in v.fields:
                ctx.couple.fix(f, f"{name} reads key/value through separate kdim/vdim projections")
    for v in vals[3:]:  # masks
        for f in v.fields:
            ctx.couple.fix(f, f"used as a mask by {name}")
    out = call.outputs[0]
    keep = set(range(q.ndim - 1))
    out.fields = [new_field(out.shape, out.ndim - 1, ids)] + _carry(q, out, q.ndim - 1, keep)
    for o in call.outputs[1:]:
        o.fields = []


def recurrent(ctx, module, name, call, x: Value) -> None:
    s_in = ctx.space(module, name, SIDE_IN)
    s_out = ctx.space(module, name, SIDE_OUT)
    consume(ctx, x, -1, _ids(s_in), name)
    hid = _ids(s_out)
    dirs = 2 if module.bidirectional else 1
    proj = getattr(module, "proj_size", 0)
    if proj:
        ctx.couple.fix(hid, f"{name} uses proj_size, which is not prunable")
    for h in call.inputs[1:]:  # initial states (h0, c0): hidden size on the last dim
        if h.ndim and h.shape[-1] == hid.numel():
            consume(ctx, h, -1, hid, name)
        else:
            for f in h.fields:
                ctx.couple.fix(f, f"initial state of {name}")
    outs = call.outputs
    if outs:
        o = outs[0]
        out_ids = hid.repeat(dirs) if o.shape[-1] == dirs * hid.numel() else None
        o.fields = [new_field(o.shape, o.ndim - 1, out_ids)] if out_ids is not None else []
        for st in outs[1:]:
            st.fields = [new_field(st.shape, st.ndim - 1, hid)] if st.shape[-1] == hid.numel() else []


def custom(ctx, module, name, call, x: Value) -> None:
    """A layer with a user-supplied pruner: channels found on the dim whose size matches (dim 1, else last)."""
    pruner = ctx.pruner_for(module)
    out = call.outputs[0] if call.outputs else None
    coupled = bool(getattr(pruner, "in_out_coupled", lambda m: False)(module))
    n_in = _custom_count(pruner, module, name, SIDE_IN, x)
    n_out = _custom_count(pruner, module, name, SIDE_OUT, x if coupled else out)

    def pick(v: Value, n):
        if v is None or n is None or v.ndim == 0:
            return None
        for d in ([1] if v.ndim > 1 else []) + [v.ndim - 1]:
            if v.shape[d] == n:
                return d
        return None

    if coupled and n_out is not None:
        # one space: input channel c is output channel c (a per-channel scale, a custom norm...)
        s = ctx.space(module, name, SIDE_OUT, passthrough=True, size=n_out)
        d_in = pick(x, n_out)
        if d_in is None:
            ctx.couple.fix(_ids(s), f"{name}: no input dim has {n_out} channels")
        else:
            consume(ctx, x, d_in, _ids(s), name)
        for o in call.outputs:
            d = pick(o, n_out)
            o.fields = [new_field(o.shape, d, _ids(s))] if d is not None else []
        return
    if n_in is not None and x is not None:
        s_in = ctx.space(module, name, SIDE_IN, size=n_in)
        d = pick(x, n_in)
        if d is None:
            ctx.couple.fix(_ids(s_in), f"{name}: no input dim has {n_in} channels")
        else:
            consume(ctx, x, d, _ids(s_in), name)
    if out is not None:
        out.fields = []
        if n_out is not None:
            s_out = ctx.space(module, name, SIDE_OUT, size=n_out)
            d = pick(out, n_out)
            if d is None:
                ctx.couple.fix(_ids(s_out), f"{name}: no output dim has {n_out} channels")
            else:
                out.fields = [new_field(out.shape, d, _ids(s_out))]
    for o in call.outputs[1:]:
        o.fields = []


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


def rule_for(module) -> Optional[callable]:
    if isinstance(module, _CONV):
        return conv
    if isinstance(module, nn.Linear):
        return linear
    if isinstance(module, _NORM_CHANNEL_FIRST) or isinstance(module, nn.GroupNorm):
        return channel_norm
    if isinstance(module, nn.LayerNorm):
        return layer_norm
    if isinstance(module, nn.PReLU):
        return prelu
    if isinstance(module, nn.Embedding):
        return embedding
    if isinstance(module, nn.MultiheadAttention):
        return multihead_attention
    if isinstance(module, (nn.LSTM, nn.GRU)):
        return recurrent
    return None


# functional calls that run a layer's computation with its parameters (outside its forward)
FUNCTIONAL_LAYER_OPS = {
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "batch_norm", "instance_norm", "group_norm", "layer_norm", "embedding", "prelu",
}
