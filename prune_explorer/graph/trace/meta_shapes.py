"""Output shapes of common ops on meta tensors, computed directly instead of by PyTorch's (Python) meta kernels.

When the tracer runs on meta-device stand-ins (shapes only), most of the time would go into PyTorch's meta
implementations, several of which are written in Python. :func:`fast_meta` returns the output of the common simple
cases directly: element-wise ops, normalisations (shape-preserving), convolutions, linear layers, adaptive average
pooling, concatenation, reductions over explicit dims, ``pow``, scaled dot-product attention and
``F.multi_head_attention_forward``. It returns None for anything else, a mismatch included, and the op then runs
normally (so PyTorch raises its own error for a call it refuses). The shapes must be exactly PyTorch's
(``tests/graph/test_fast_meta_shapes.py`` compares them on random arguments). :class:`ShapeOnlyMode` applies it to a
whole forward pass; :func:`check_meta_dtypes` refuses the dtype mismatches the meta kernels let through.

>>> import torch, torch.nn.functional as F
>>> x, w = torch.empty(2, 3, 8, 8, device="meta"), torch.empty(4, 3, 3, 3, device="meta")
>>> tuple(fast_meta(F.conv2d, "conv2d", (x, w, None, 2, 1), {}).shape)
(2, 4, 4, 4)
>>> fast_meta(F.conv2d, "conv2d", (x, w), {"padding": "same"}) is None   # not a simple case: PyTorch computes it
True
"""

from __future__ import annotations

from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .op_names import full_op_name, op_name

__all__ = ["META_DEVICE", "fast_meta", "meta_like", "check_meta_dtypes", "ShapeOnlyMode", "layer_on_meta",
           "module_on_meta", "module_rule"]


_FAST_UNARY = set("""relu relu6 hardtanh hardswish hardsigmoid silu gelu sigmoid tanh elu leaky_relu selu celu mish
softplus softsign dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout clone contiguous neg abs
exp log sqrt rsqrt reciprocal square sign erf logsigmoid tanhshrink hardshrink softshrink""".split())
#: the meta device, as a device object (torch parses the string "meta" on every call, ~0.2 us)
META_DEVICE = torch.device("meta")
_FAST_BINARY = {"add", "sub", "mul", "div", "true_divide", "rsub"}
_SHAPE_PRESERVING_NORMS = {"batch_norm", "layer_norm", "group_norm", "instance_norm"}


def meta_like(x: torch.Tensor) -> torch.Tensor:
    """A new meta tensor shaped like ``x`` (``torch.empty_like`` on meta runs a Python reference: ~40x slower; the
    shape as a tuple: ``torch.empty`` parses a ``torch.Size`` 1 us slower)."""
    if x.is_contiguous() or 0 in x.stride():
        return torch.empty(tuple(x.shape), dtype=x.dtype, device=META_DEVICE)
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=META_DEVICE)


def broadcast_shape(a, b) -> Optional[tuple]:
    """``torch.broadcast_shapes(a, b)`` for two shapes, or None when they do not broadcast (PyTorch's own is a Python
    reference with symbolic-shape guards: ~20x slower).

    >>> broadcast_shape((2, 1, 4), (3, 1)), broadcast_shape((2, 3), (4,))
    ((2, 3, 4), None)
    """
    if len(a) == len(b) and all(x == y for x, y in zip(a, b)):
        return tuple(a)
    n = max(len(a), len(b))
    out = []
    for x, y in zip((1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(out)


def _pair_arg(v, n: int):
    if isinstance(v, int):
        return (v,) * n
    v = tuple(v)
    return v * n if len(v) == 1 else v


def _conv_shape(x: torch.Tensor, w: torch.Tensor, stride, padding, dilation, groups):
    """Output shape of ``conv{1,2,3}d`` (None when the arguments are not the plain integer kind)."""
    n = w.dim() - 2
    if x.dim() not in (n + 1, n + 2) or isinstance(padding, str) or groups < 1:
        return None
    batched = x.dim() == n + 2
    cin = x.shape[1] if batched else x.shape[0]
    if cin != w.shape[1] * groups or w.shape[0] % groups:
        return None
    stride, padding, dilation = _pair_arg(stride, n), _pair_arg(padding, n), _pair_arg(dilation, n)
    if not (len(stride) == len(padding) == len(dilation) == n):
        return None
    spatial = []
    for size, k, s, p, d in zip(x.shape[-n:], w.shape[2:], stride, padding, dilation):
        out = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if out <= 0:
            return None
        spatial.append(out)
    return ((x.shape[0],) if batched else ()) + (w.shape[0],) + tuple(spatial)


_CONV_DEFAULTS = (None, 1, 0, 1, 1)  # bias, stride, padding, dilation, groups


def _fast_meta_layer(name, args, kwargs):
    """Shape-only conv / linear / adaptive average pooling on meta tensors (the common layer ops)."""
    if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_meta:
        return None
    x = args[0]
    if name in ("conv1d", "conv2d", "conv3d"):
        if kwargs or len(args) < 2 or not isinstance(args[1], torch.Tensor) or not args[1].is_meta:
            return None
        w = args[1]
        if w.dim() != {"conv1d": 3, "conv2d": 4, "conv3d": 5}[name] or w.dtype != x.dtype:
            return None
        bias, stride, padding, dilation, groups = tuple(args[2:]) + _CONV_DEFAULTS[len(args) - 2:]
        shape = _conv_shape(x, w, stride, padding, dilation, groups)
        return None if shape is None else torch.empty(shape, dtype=x.dtype, device=META_DEVICE)
    if name == "linear":
        w = args[1] if len(args) > 1 else kwargs.get("weight")
        if not isinstance(w, torch.Tensor) or not w.is_meta or w.dim() != 2 or x.dim() < 1:
            return None
        if x.shape[-1] != w.shape[1] or w.dtype != x.dtype or set(kwargs) - {"weight", "bias"}:
            return None
        return torch.empty(tuple(x.shape[:-1]) + (w.shape[0],), dtype=x.dtype, device=META_DEVICE)
    if name in ("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d"):
        n = int(name[-2])
        size = args[1] if len(args) > 1 else kwargs.get("output_size")
        if x.dim() not in (n + 1, n + 2) or size is None or set(kwargs) - {"output_size"}:
            return None
        size = _pair_arg(size, n) if not isinstance(size, int) or n > 1 else (size,)
        if len(size) != n:
            return None
        size = tuple(x.shape[-n + k] if s is None else s for k, s in enumerate(size))
        if not all(isinstance(s, int) and s > 0 for s in size):
            return None
        return torch.empty(tuple(x.shape[:-n]) + size, dtype=x.dtype, device=META_DEVICE)
    return None


_FAST_LAYER_OPS = {"conv1d", "conv2d", "conv3d", "linear", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
                   "adaptive_avg_pool3d"}


def _norm_sizes_fit(name: str, x: torch.Tensor, args, kwargs) -> bool:
    """True if every per-channel tensor of a normalisation call (weight, bias, running statistics) has the size the
    input asks for; otherwise the call runs normally and PyTorch raises its own error (e.g. a pruned conv whose
    per-channel gain kept its old size: "weight should contain 8 elements not 16")."""
    others = [t for t in list(args[1:]) + list(kwargs.values()) if isinstance(t, torch.Tensor)]
    if name == "layer_norm":
        shape = args[1] if len(args) > 1 else kwargs.get("normalized_shape")
        shape = (shape,) if isinstance(shape, int) else tuple(shape) if shape is not None else None
        return (shape is not None and tuple(x.shape[x.dim() - len(shape):]) == shape
                and all(tuple(t.shape) == shape for t in others))
    if x.dim() < 2:
        return False
    channels = x.shape[1]
    if name == "group_norm":
        groups = args[1] if len(args) > 1 else kwargs.get("num_groups")
        if not isinstance(groups, int) or groups < 1 or channels % groups:
            return False
    return all(t.numel() == channels for t in others)


def _is_meta(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_meta


def _cat(args, kwargs) -> Optional[torch.Tensor]:
    tensors = args[0] if args else kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(dim, int) or set(kwargs) - {"dim", "tensors"}:
        return None
    first = tensors[0]
    if not _is_meta(first):
        return None
    nd, dtype = first.dim(), first.dtype
    d = dim + nd if dim < 0 else dim
    if nd == 0 or not 0 <= d < nd:
        return None
    # every tensor meta, of the same dtype and other dims, checked by C-level maps (DenseNet joins up to 64 tensors
    # per call: half the time of a Python loop)
    if not all(map(isinstance, tensors, repeat(torch.Tensor))) or set(map(_META_AND_DTYPE, tensors)) != {(True, dtype)}:
        return None
    shapes = list(map(_SHAPE, tensors))
    if set(map(len, shapes)) != {nd}:
        return None
    if nd > 1:
        others = itemgetter(*[k for k in range(nd) if k != d])
        if len(set(map(others, shapes))) != 1:
            return None
    shape = first.shape
    return torch.empty(shape[:d] + (sum(map(itemgetter(d), shapes)),) + shape[d + 1:], dtype=dtype, device=META_DEVICE)


_META_AND_DTYPE = attrgetter("is_meta", "dtype")
_SHAPE = attrgetter("shape")


def _reduce(name, args, kwargs) -> Optional[torch.Tensor]:
    """``sum`` / ``mean`` / ``amax`` / ``amin`` over explicit dims."""
    x = args[0] if args else None
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if not _is_meta(x) or dim is None or len(args) > 3 or set(kwargs) - {"dim", "keepdim"}:
        return None
    dims = [dim] if isinstance(dim, int) else list(dim) if isinstance(dim, (list, tuple)) else None
    if not dims or not all(isinstance(d, int) for d in dims) or not isinstance(keepdim, bool):
        return None
    nd = x.dim()
    norm = {d + nd if d < 0 else d for d in dims}
    if any(not 0 <= d < nd for d in norm) or len(norm) != len(dims):
        return None
    if name == "mean" and not x.dtype.is_floating_point:
        return None
    shape = [1 if k in norm else s for k, s in enumerate(x.shape)] if keepdim else \
        [s for k, s in enumerate(x.shape) if k not in norm]
    return torch.empty(shape, dtype=x.dtype, device=META_DEVICE)


def _pow(args, kwargs) -> Optional[torch.Tensor]:
    x = args[0] if args else None
    if not _is_meta(x) or len(args) != 2 or kwargs or not isinstance(args[1], (int, float)) or isinstance(args[1], bool):
        return None
    if not x.dtype.is_floating_point:
        return None
    return meta_like(x)


def _sdpa(args, kwargs) -> Optional[torch.Tensor]:
    """``F.scaled_dot_product_attention``: ``(..., L, E) x (..., S, E) x (..., S, Ev) -> (..., L, Ev)``."""
    if len(args) < 3 or set(kwargs) - {"attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"}:
        return None
    q, k, v = args[:3]
    mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
    if not (_is_meta(q) and _is_meta(k) and _is_meta(v)) or len(args) > 4:
        return None
    if q.dim() < 2 or not q.dim() == k.dim() == v.dim() or not q.dtype == k.dtype == v.dtype:
        return None
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        return None
    batch_q, batch_k, batch_v = q.shape[:-2], k.shape[:-2], v.shape[:-2]
    if batch_k != batch_v:
        return None
    if kwargs.get("enable_gqa") and q.dim() >= 3:
        hq, hk = batch_q[-1], batch_k[-1]
        if hk == 0 or hq % hk or batch_q[:-1] != batch_k[:-1]:
            return None
    else:
        try:
            if torch.broadcast_shapes(batch_q, batch_k) != batch_q:
                return None
        except RuntimeError:
            return None
    if mask is not None:
        if not _is_meta(mask):
            return None
        try:
            if torch.broadcast_shapes(mask.shape, tuple(batch_q) + (q.shape[-2], k.shape[-2])) != \
                    tuple(batch_q) + (q.shape[-2], k.shape[-2]):
                return None
        except RuntimeError:
            return None
    return torch.empty(tuple(batch_q) + (q.shape[-2], v.shape[-1]), dtype=q.dtype, device=META_DEVICE)


def _mha(args, kwargs) -> Optional[tuple]:
    """``F.multi_head_attention_forward`` with packed or separate projections and the default options:
    ``(L, N, E)`` query -> ``(L, N, E)`` output (``(L, E)`` unbatched) and the attention weights, if asked."""
    names = ["query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias",
             "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias"]
    a = dict(zip(names, args))
    a.update(kwargs)
    q, k, v = a.get("query"), a.get("key"), a.get("value")
    if not (_is_meta(q) and _is_meta(k) and _is_meta(v)) or q.dim() not in (2, 3):
        return None
    if a.get("bias_k") is not None or a.get("bias_v") is not None or a.get("add_zero_attn") or \
            a.get("static_k") is not None or a.get("static_v") is not None:
        return None
    e, h = q.shape[-1], a.get("num_heads")
    if e != a.get("embed_dim_to_check") or not isinstance(h, int) or h <= 0 or e % h:
        return None
    if k.dim() != q.dim() or v.dim() != q.dim() or k.shape[:-1] != v.shape[:-1] or \
            (q.dim() == 3 and not q.shape[1] == k.shape[1]):
        return None
    w_in, w_out = a.get("in_proj_weight"), a.get("out_proj_weight")
    if a.get("use_separate_proj_weight"):
        ws = [a.get("q_proj_weight"), a.get("k_proj_weight"), a.get("v_proj_weight")]
        if not all(_is_meta(w) for w in ws):
            return None
        if ws[0].shape != (e, e) or ws[1].shape != (e, k.shape[-1]) or ws[2].shape != (e, v.shape[-1]):
            return None
    else:
        if not _is_meta(w_in) or w_in.shape != (3 * e, e) or k.shape[-1] != e or v.shape[-1] != e:
            return None
    b_in, b_out = a.get("in_proj_bias"), a.get("out_proj_bias")
    if b_in is not None and (not _is_meta(b_in) or b_in.shape != (3 * e,)):
        return None
    if not _is_meta(w_out) or w_out.shape != (e, e) or (b_out is not None and (not _is_meta(b_out) or b_out.shape != (e,))):
        return None
    for mask_name in ("key_padding_mask", "attn_mask"):
        if a.get(mask_name) is not None:
            return None
    out = torch.empty(q.shape, dtype=q.dtype, device=META_DEVICE)
    if not a.get("need_weights", True):
        return out, None
    n = (q.shape[1],) if q.dim() == 3 else ()
    heads = () if a.get("average_attn_weights", True) else (h,)
    return out, torch.empty(n + heads + (q.shape[0], k.shape[0]), dtype=q.dtype, device=META_DEVICE)


def _roll(args, kwargs) -> Optional[torch.Tensor]:
    """``torch.roll(x, shifts, dims)`` with explicit dims on a contiguous input: same shape, contiguous."""
    x = args[0] if args else None
    shifts = args[1] if len(args) > 1 else kwargs.get("shifts")
    dims = args[2] if len(args) > 2 else kwargs.get("dims")
    if not _is_meta(x) or not x.is_contiguous() or len(args) > 3 or set(kwargs) - {"shifts", "dims"}:
        return None
    shifts = [shifts] if isinstance(shifts, int) else list(shifts) if isinstance(shifts, (list, tuple)) else None
    dims = [dims] if isinstance(dims, int) else list(dims) if isinstance(dims, (list, tuple)) else None
    nd = x.dim()
    if not shifts or dims is None or len(shifts) != len(dims) or not all(isinstance(v, int) for v in shifts + dims):
        return None
    if any(not -nd <= d < nd for d in dims):
        return None
    return torch.empty(x.shape, dtype=x.dtype, device=META_DEVICE)


def _matmul(args, kwargs) -> Optional[torch.Tensor]:
    """``a @ b`` with both operands at least 2-d: batch dims broadcast, ``(..., n, k) x (..., k, m) -> (..., n, m)``."""
    if len(args) != 2 or kwargs or not (_is_meta(args[0]) and _is_meta(args[1])):
        return None
    a, b = args
    if a.dim() < 2 or b.dim() < 2 or a.dtype != b.dtype or a.shape[-1] != b.shape[-2]:
        return None
    batch = broadcast_shape(a.shape[:-2], b.shape[:-2])
    if batch is None:
        return None
    return torch.empty(batch + (a.shape[-2], b.shape[-1]), dtype=a.dtype, device=META_DEVICE)


def _masked_fill(func, args, kwargs) -> Optional[torch.Tensor]:
    """``x.masked_fill(mask, value)`` with a boolean mask that broadcasts to ``x`` and a scalar value of ``x``'s kind
    (``masked_fill_`` returns ``x`` itself)."""
    if len(args) != 3 or kwargs or not (_is_meta(args[0]) and _is_meta(args[1])):
        return None
    x, mask, value = args
    if mask.dtype != torch.bool or broadcast_shape(x.shape, mask.shape) != tuple(x.shape):
        return None
    if not (isinstance(value, (bool, int)) or (isinstance(value, float) and x.dtype.is_floating_point)):
        return None
    return x if full_op_name(func).endswith("masked_fill_") else meta_like(x)


def _take_rows(args, kwargs) -> Optional[torch.Tensor]:
    """``x[index]`` with one int64 index tensor (Swin's ``relative_position_bias_table[relative_position_index]``) on a
    contiguous ``x`` with rows: ``index.shape + x.shape[1:]``, contiguous (PyTorch's meta kernel for it is Python
    and takes about a millisecond)."""
    if len(args) != 2 or kwargs or not (_is_meta(args[0]) and _is_meta(args[1])):
        return None
    x, index = args
    # (a 0-d index is read as an int: PyTorch calls .item(), which a meta tensor refuses)
    if type(index) is not torch.Tensor or index.dtype != torch.long or index.dim() == 0 or x.dim() == 0 \
            or x.shape[0] == 0 or not x.is_contiguous():
        return None
    return torch.empty(tuple(index.shape) + tuple(x.shape[1:]), dtype=x.dtype, device=META_DEVICE)


_COMPARISONS = {"eq", "ne", "lt", "le", "gt", "ge"}


def _compare(func, args, kwargs) -> Optional[torch.Tensor]:
    """``x == 0`` / ``x.ne(0)`` / ``x < 0.5``... of a contiguous real (not complex) meta ``x`` with a Python scalar:
    a contiguous bool tensor of ``x``'s shape (Swin's ``attn_mask != 0``: PyTorch's meta path for it is Python). The
    in-place ``eq_`` (``x``'s dtype) and tensor operands are left to PyTorch."""
    if len(args) != 2 or kwargs or not _is_meta(args[0]) or type(args[1]) not in (int, float, bool):
        return None
    x = args[0]
    short = full_op_name(func).rsplit(".", 1)[-1]
    if (short.endswith("_") and not short.startswith("__")) or x.dtype.is_complex or not x.is_contiguous():
        return None
    return torch.empty(tuple(x.shape), dtype=torch.bool, device=META_DEVICE)


def _softmax(args, kwargs) -> Optional[torch.Tensor]:
    """``F.softmax(x, dim)`` / ``x.log_softmax(dim)`` of a contiguous floating meta ``x`` with an explicit dim and no
    ``dtype``: a tensor like ``x`` (PyTorch's meta path for it is Python: tens of microseconds a call)."""
    x = args[0] if args else None
    if not _is_meta(x) or not x.dtype.is_floating_point or not x.is_contiguous() or len(args) > 2:
        return None
    if set(kwargs) - {"dim", "_stacklevel", "dtype"} or kwargs.get("dtype") is not None:
        return None
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    n = max(x.dim(), 1)
    if type(dim) is not int or not -n <= dim < n:
        return None
    return meta_like(x)


def _like_in_layout(x: torch.Tensor) -> Optional[torch.Tensor]:
    """A new dense meta tensor of ``x``'s shape and dtype whose dims lie in memory in the order of ``x``'s strides
    (what an element-wise op of ``x`` with broadcast operands gives: Swin V2's ``F.normalize(q)`` of
    ``q = qkv.permute(2, 0, 3, 1, 4)[0]``). None when two dims of size > 1 have the same stride (no single order)
    or one is broadcast (stride 0: PyTorch orders those otherwise)."""
    big = [(st, d) for d, (st, sz) in enumerate(zip(x.stride(), x.shape)) if sz > 1]
    if len({st for st, _ in big}) != len(big) or any(st == 0 for st, _ in big):
        return None
    order = [d for _, d in sorted(big, reverse=True)]  # outermost first
    ones = [d for d in range(x.dim()) if x.shape[d] <= 1]
    perm = ones + order
    out = torch.empty([x.shape[d] for d in perm], dtype=x.dtype, device=META_DEVICE)
    return out.permute([perm.index(d) for d in range(x.dim())])


def _normalize(args, kwargs) -> Optional[torch.Tensor]:
    """``F.normalize(x, p, dim, eps)`` of a floating meta ``x`` over distinct, valid dims, no ``out``: ``x / norm``, a
    dense tensor in ``x``'s layout (:func:`_like_in_layout`; PyTorch runs it as several Python meta kernels, about a
    millisecond)."""
    x = args[0] if args else None
    if not _is_meta(x) or not x.dtype.is_floating_point or len(args) > 1:
        return None
    if set(kwargs) - {"p", "dim", "eps", "out"} or kwargs.get("out") is not None:
        return None
    p, dim = kwargs.get("p", 2.0), kwargs.get("dim", 1)
    dims = [dim] if type(dim) is int else list(dim) if type(dim) in (tuple, list) else None
    n = max(x.dim(), 1)
    if type(p) not in (int, float) or not dims or not all(type(d) is int and -n <= d < n for d in dims) \
            or len({d % n for d in dims}) != len(dims):
        return None
    return meta_like(x) if x.is_contiguous() else _like_in_layout(x)


def _clamp(func, args, kwargs) -> Optional[torch.Tensor]:
    """``torch.clamp(x, min, max)`` of a contiguous floating meta ``x`` with Python number bounds (at least one):
    a tensor like ``x`` (``x`` itself in place). Swin V2's ``clamp(logit_scale, max=...)``."""
    x = args[0] if args else None
    if not _is_meta(x) or not x.dtype.is_floating_point or not x.is_contiguous() or len(args) > 3:
        return None
    if set(kwargs) - {"min", "max"}:
        return None
    bounds = list(args[1:]) + [None] * (3 - len(args))
    for k, name in ((0, "min"), (1, "max")):
        if name in kwargs:
            if len(args) > k + 1:
                return None  # given twice: PyTorch's error
            bounds[k] = kwargs[name]
    if all(b is None for b in bounds) or not all(b is None or type(b) in (int, float) for b in bounds):
        return None
    short = full_op_name(func).rsplit(".", 1)[-1]
    return x if short.endswith("_") and not short.startswith("__") else meta_like(x)


def _reshape(args, kwargs) -> Optional[torch.Tensor]:
    """``x.reshape(*sizes)`` / ``torch.reshape(x, sizes)`` of a meta ``x`` to valid sizes (one ``-1`` at most): a view
    where ``x.view`` gives one, else a new contiguous tensor, as PyTorch decides (its meta path for reshape is
    Python: tens of microseconds a call, 53 per swin_t trace). Invalid sizes are left to PyTorch (its error)."""
    x = args[0] if args else None
    if not _is_meta(x) or (kwargs and (set(kwargs) != {"shape"} or len(args) > 1)):
        return None
    sizes = list(args[1:]) if not kwargs else [kwargs["shape"]]
    if len(sizes) == 1 and type(sizes[0]) in (tuple, list, torch.Size):
        sizes = list(sizes[0])
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= -1 for v in sizes) or sizes.count(-1) > 1:
        return None
    sizes = [int(v) for v in sizes]
    known = 1
    for v in sizes:
        if v != -1:
            known *= v
    n = x.numel()
    if -1 in sizes:
        if known == 0 or n % known:
            return None
        sizes[sizes.index(-1)] = n // known
    elif known != n:
        return None
    try:
        return x.view(sizes)
    except RuntimeError:  # not viewable: reshape copies
        return torch.empty(sizes, dtype=x.dtype, device=META_DEVICE)


_COMPOSITE_RULES = {"cat": _cat, "concat": _cat, "concatenate": _cat, "pow": _pow,
                    "scaled_dot_product_attention": _sdpa, "multi_head_attention_forward": _mha, "roll": _roll,
                    "__getitem__": _take_rows, "softmax": _softmax, "log_softmax": _softmax,
                    "normalize": _normalize, "reshape": _reshape}
_REDUCTIONS = {"sum", "mean", "amax", "amin"}
_DTYPE_CHECKED = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear"}


def check_meta_dtypes(name: str, args, kwargs) -> None:
    """Raise, as the real kernel would, when a conv or linear op on meta tensors gets an input whose dtype is not its
    weight's: PyTorch's meta kernels accept it, so a trace on meta tensors would build a graph for example inputs
    the model cannot run (an integer image into a float conv without bias).

    >>> x, w = torch.empty(1, 3, 4, 4, dtype=torch.long, device="meta"), torch.empty(2, 3, 1, 1, device="meta")
    >>> check_meta_dtypes("conv2d", (x, w), {})
    Traceback (most recent call last):
    ...
    RuntimeError: conv2d: input type (torch.int64) and weight type (torch.float32) should be the same
    """
    if name not in _DTYPE_CHECKED or not args:
        return
    x = args[0]
    w = args[1] if len(args) > 1 else kwargs.get("weight")
    if isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor) and x.is_meta and x.dtype != w.dtype:
        raise RuntimeError(f"{name}: input type ({x.dtype}) and weight type ({w.dtype}) should be the same")


def fast_meta(func, name: str, args, kwargs) -> Optional[torch.Tensor]:
    """Output of a shape-only op on meta tensors, without running PyTorch's (Python) meta kernels: elementwise
    ops, normalisations, convolutions, linear layers, adaptive average pooling, concatenation, reductions over
    explicit dims, ``pow``, scaled dot-product attention, ``F.multi_head_attention_forward``, rows picked by an
    index tensor (``x[index]``), comparisons with a scalar, softmax, ``F.normalize``, ``clamp`` and ``reshape``.

    Returns None when the op is not one of the simple cases (the op then runs normally, and PyTorch raises its own
    error for a call it refuses)."""
    check_meta_dtypes(name, args, kwargs)
    if name == "matmul":  # ``a @ b`` only (``__rmatmul__`` swaps the operands, ``@=`` writes in place)
        return _matmul(args, kwargs) if full_op_name(func).rsplit(".", 1)[-1] in ("matmul", "__matmul__") else None
    if name == "masked_fill":
        return _masked_fill(func, args, kwargs)
    if name in _COMPARISONS:
        return _compare(func, args, kwargs)
    if name == "clamp":
        return _clamp(func, args, kwargs)
    if name in _COMPOSITE_RULES:
        return _COMPOSITE_RULES[name](args, kwargs)
    if name in _REDUCTIONS:
        return _reduce(name, args, kwargs)
    if name in _SHAPE_PRESERVING_NORMS:
        x = args[0] if args else None
        ok = isinstance(x, torch.Tensor) and x.is_meta and _norm_sizes_fit(name, x, args, kwargs)
        return meta_like(x) if ok else None
    if name in _FAST_LAYER_OPS:
        return _fast_meta_layer(name, args, kwargs)
    if name not in _FAST_UNARY and name not in _FAST_BINARY:
        return None
    if kwargs and any(k not in ("inplace", "alpha", "p", "training", "approximate", "negative_slope") for k in kwargs):
        return None
    full = full_op_name(func)
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_meta:
        return None
    short = full.rsplit(".", 1)[-1]
    inplace = (short.endswith("_") and not short.startswith("__")) or short.startswith("__i") or kwargs.get("inplace") is True
    if name in _FAST_UNARY:
        if len([a for a in args if isinstance(a, torch.Tensor)]) != 1:
            return None
        if name.startswith(("dropout", "alpha_dropout", "feature_alpha")) and len(args) > 3 and args[3] is True:
            inplace = True
        return x if inplace else meta_like(x)
    if len(args) != 2:
        return None
    other = args[1]
    if not isinstance(other, (torch.Tensor, int, float, bool)):
        return None
    if isinstance(other, torch.Tensor) and not other.is_meta and other.dim() > 0:
        return None
    shape = broadcast_shape(x.shape, other.shape) if isinstance(other, torch.Tensor) else x.shape
    if shape is None:  # a mismatch: PyTorch raises its own error
        return None
    dtype = torch.result_type(x, other)
    if name in ("div", "true_divide") and not dtype.is_floating_point:
        return None
    if inplace:
        return x if tuple(shape) == tuple(x.shape) and dtype == x.dtype else None
    return torch.empty(shape, dtype=dtype, device=META_DEVICE)


def _conv_call(m, x):
    if m.padding_mode != "zeros":
        return None
    return fast_meta(_CONV_FNS[type(m)], _CONV_NAMES[type(m)], (x, m.weight, m.bias, m.stride, m.padding, m.dilation,
                                                                m.groups), {})


def _batch_norm_call(m, x):
    if m.training or m.running_mean is None or m.running_var is None or x.dim() not in _BATCH_NORM_DIMS[type(m)]:
        return None  # statistics updated or batch statistics used, or an input the layer refuses: its forward runs
    return fast_meta(F.batch_norm, "batch_norm", (x, m.running_mean, m.running_var, m.weight, m.bias, False,
                                                  0.0 if m.momentum is None else m.momentum, m.eps), {})


def _conv2d_layer(m, x):
    """:func:`_conv_call` of an ``nn.Conv2d`` read straight from its dicts, for the plain case (zeros padding, int
    tuples, a meta weight of ``x``'s dtype, a 4-d input that fits): the same output; any other call takes
    :func:`_conv_call`."""
    d = m.__dict__
    w = d["_parameters"].get("weight")
    stride, padding, dilation, groups = d.get("stride"), d.get("padding"), d.get("dilation"), d.get("groups")
    if (d.get("padding_mode") != "zeros" or type(w) is not nn.Parameter or not w.is_meta or w.dtype != x.dtype
            or x.dim() != 4 or w.dim() != 4 or type(groups) is not int or groups < 1
            or type(stride) is not tuple or type(padding) is not tuple or type(dilation) is not tuple
            or len(stride) != 2 or len(padding) != 2 or len(dilation) != 2):
        return _conv_call(m, x)
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    if c != i * groups or o % groups:
        return _conv_call(m, x)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if oh <= 0 or ow <= 0 or type(oh) is not int or type(ow) is not int:
        return _conv_call(m, x)
    return torch.empty((n, o, oh, ow), dtype=x.dtype, device=META_DEVICE)


def _linear_layer(m, x):
    """``F.linear`` of an ``nn.Linear`` on :func:`fast_meta`, read straight from its dicts when its weight is a 2-d
    meta parameter of ``x``'s dtype that fits ``x``'s last dim; any other call takes :func:`fast_meta`."""
    w = m.__dict__["_parameters"].get("weight")
    if type(w) is nn.Parameter and w.is_meta and w.dtype == x.dtype and w.dim() == 2 and x.dim() >= 1:
        shape = x.shape
        if shape[-1] == w.shape[1]:
            return torch.empty(tuple(shape[:-1]) + (w.shape[0],), dtype=x.dtype, device=META_DEVICE)
    return fast_meta(F.linear, "linear", (x, m.weight, m.bias), {})


def _batch_norm_layer(m, x):
    """:func:`_batch_norm_call` of an eval-mode ``nn.BatchNorm2d`` read straight from its dicts (running statistics
    and affine tensors all of ``x``'s channel count): the same output; any other call takes
    :func:`_batch_norm_call`."""
    d = m.__dict__
    buffers, params = d["_buffers"], d["_parameters"]
    mean, var = buffers.get("running_mean"), buffers.get("running_var")
    if d.get("training") is not False or mean is None or var is None or x.dim() != 4:
        return _batch_norm_call(m, x)
    n = x.shape[1]
    w, b = params.get("weight"), params.get("bias")
    if mean.numel() != n or var.numel() != n or (w is not None and w.numel() != n) or (b is not None and b.numel() != n):
        return _batch_norm_call(m, x)
    return meta_like(x)


_BATCH_NORM_DIMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}  # as their _check_input_dim
_CONV_FNS = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
_CONV_NAMES = {nn.Conv1d: "conv1d", nn.Conv2d: "conv2d", nn.Conv3d: "conv3d"}
#: exact layer type -> ``fn(layer, x)``: the functional call its own ``forward`` makes, on :func:`fast_meta`
_LAYER_CALLS = {
    **{t: _conv_call for t in _CONV_FNS},
    nn.Linear: _linear_layer,
    nn.LayerNorm: lambda m, x: fast_meta(F.layer_norm, "layer_norm", (x, m.normalized_shape, m.weight, m.bias, m.eps),
                                         {}),
    **{t: _batch_norm_call for t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)},
    nn.Conv2d: _conv2d_layer, nn.BatchNorm2d: _batch_norm_layer,  # the common cases, fewer checks
}


def layer_on_meta(module: nn.Module, args, kwargs) -> Optional[torch.Tensor]:
    """The output of ``module(*args, **kwargs)`` on meta tensors without running its ``forward``, for torch's own
    conv / linear / layer norm / eval-mode batch norm layers (exact types, one positional input): what
    :func:`fast_meta` gives for the functional call that ``forward`` makes with the layer's own arguments. None for
    any other layer or call (the layer's ``forward`` then runs).

    >>> conv = nn.Conv2d(3, 4, 3, padding=1).to("meta")
    >>> tuple(layer_on_meta(conv, (torch.empty(2, 3, 8, 8, device="meta"),), {}).shape)
    (2, 4, 8, 8)
    """
    fn = _LAYER_CALLS.get(type(module))
    x = single_meta_input(args, kwargs) if fn is not None else None
    return None if x is None else fn(module, x)


def single_meta_input(args, kwargs) -> Optional[torch.Tensor]:
    """The one meta tensor of a layer call ``(args, kwargs)`` that the layer shape rules answer (one positional
    meta tensor, no keyword arguments), or None for any other call."""
    if kwargs or len(args) != 1:
        return None
    x = args[0]
    return x if isinstance(x, torch.Tensor) and x.is_meta else None


def _elementwise(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What :func:`fast_meta` gives for the functional call of an element-wise activation / dropout layer (one meta
    tensor, keyword arguments it accepts): the input itself when ``inplace is True``, else a new tensor like it."""
    return x if getattr(m, "inplace", False) is True else meta_like(x)


#: exact layer type -> ``fn(layer, x)``: :data:`_LAYER_CALLS` and the element-wise activation / dropout layers and
#: adaptive average pooling, whose forward is one functional call :func:`fast_meta` answers
_MODULE_CALLS = {
    **_LAYER_CALLS,
    **{t: _elementwise for t in (nn.ReLU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
                                 nn.GELU, nn.Sigmoid, nn.Tanh, nn.Dropout)},
    nn.AdaptiveAvgPool2d: lambda m, x: fast_meta(F.adaptive_avg_pool2d, "adaptive_avg_pool2d", (x, m.output_size), {}),
}


def module_rule(module: nn.Module):
    """``fn(module, x)`` giving ``module(x)``'s output on a meta ``x`` (None where :func:`fast_meta` does not answer
    the call), or None: :func:`layer_on_meta`'s layers and torch's element-wise activation / dropout layers and
    adaptive average pooling (exact types whose ``forward`` is not overridden on the instance)."""
    if "forward" in module.__dict__:
        return None
    return _MODULE_CALLS.get(type(module))


def module_on_meta(module: nn.Module, args, kwargs) -> Optional[torch.Tensor]:
    """:func:`layer_on_meta` for the layers of :func:`module_rule`: the output of ``module(*args, **kwargs)`` on a
    meta input without running its ``forward``, exactly what a :class:`ShapeOnlyMode` gives for the functional call
    that ``forward`` makes (a mismatch gives None: the forward then runs and PyTorch raises its own error).

    >>> relu = nn.ReLU(inplace=True)
    >>> x = torch.empty(2, 3, device="meta")
    >>> module_on_meta(relu, (x,), {}) is x
    True
    """
    fn = module_rule(module)
    x = single_meta_input(args, kwargs) if fn is not None else None
    return None if x is None else fn(module, x)


class ShapeOnlyMode(TorchFunctionMode):
    """Within it, the ops :func:`fast_meta` knows take their output from it on meta tensors (a forward pass on
    meta stand-ins, such as the post-prune check of :mod:`prune_explorer.pruner.post_check`).

    >>> a, b = torch.empty(2, 3, device="meta"), torch.empty(2, 5, device="meta")
    >>> with ShapeOnlyMode():
    ...     torch.cat([a, b], dim=1).shape
    torch.Size([2, 8])
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = fast_meta(func, op_name(func), args, kwargs)
        return func(*args, **kwargs) if out is None else out
