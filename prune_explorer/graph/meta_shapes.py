"""Output shapes of common ops on meta tensors, computed directly instead of by PyTorch's (Python) meta kernels.

When the tracer runs on meta-device stand-ins (shapes only), most of the time would go into PyTorch's meta
implementations, several of which are written in Python. :func:`fast_meta` returns the output of the common simple
cases directly: element-wise ops, normalisations (shape-preserving), convolutions, linear layers and adaptive
average pooling. It returns None for anything else, and the op then runs normally. The shapes must be exactly
PyTorch's (``tests/graph/test_fast_meta_shapes.py`` compares them on random arguments).

>>> import torch, torch.nn.functional as F
>>> x, w = torch.empty(2, 3, 8, 8, device="meta"), torch.empty(4, 3, 3, 3, device="meta")
>>> tuple(fast_meta(F.conv2d, "conv2d", (x, w, None, 2, 1), {}).shape)
(2, 4, 4, 4)
>>> fast_meta(F.conv2d, "conv2d", (x, w), {"padding": "same"}) is None   # not a simple case: PyTorch computes it
True
"""

from __future__ import annotations

from typing import Optional

import torch

from .op_names import full_op_name

__all__ = ["fast_meta", "meta_like"]


_FAST_UNARY = set("""relu relu6 hardtanh hardswish hardsigmoid silu gelu sigmoid tanh elu leaky_relu selu celu mish
softplus softsign dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout clone contiguous neg abs
exp log sqrt rsqrt reciprocal square sign erf logsigmoid tanhshrink hardshrink softshrink""".split())
_FAST_BINARY = {"add", "sub", "mul", "div", "true_divide", "rsub"}
_SHAPE_PRESERVING_NORMS = {"batch_norm", "layer_norm", "group_norm", "instance_norm"}


def meta_like(x: torch.Tensor) -> torch.Tensor:
    """A new meta tensor shaped like ``x`` (``torch.empty_like`` on meta runs a Python reference: ~40x slower)."""
    if x.is_contiguous() or 0 in x.stride():
        return torch.empty(x.shape, dtype=x.dtype, device="meta")
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")


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
    if not args or not isinstance(args[0], torch.Tensor) or args[0].device.type != "meta":
        return None
    x = args[0]
    if name in ("conv1d", "conv2d", "conv3d"):
        if kwargs or len(args) < 2 or not isinstance(args[1], torch.Tensor) or args[1].device.type != "meta":
            return None
        w = args[1]
        if w.dim() != {"conv1d": 3, "conv2d": 4, "conv3d": 5}[name] or w.dtype != x.dtype:
            return None
        bias, stride, padding, dilation, groups = tuple(args[2:]) + _CONV_DEFAULTS[len(args) - 2:]
        shape = _conv_shape(x, w, stride, padding, dilation, groups)
        return None if shape is None else torch.empty(shape, dtype=x.dtype, device="meta")
    if name == "linear":
        w = args[1] if len(args) > 1 else kwargs.get("weight")
        if not isinstance(w, torch.Tensor) or w.device.type != "meta" or w.dim() != 2 or x.dim() < 1:
            return None
        if x.shape[-1] != w.shape[1] or w.dtype != x.dtype or set(kwargs) - {"weight", "bias"}:
            return None
        return torch.empty(tuple(x.shape[:-1]) + (w.shape[0],), dtype=x.dtype, device="meta")
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
        return torch.empty(tuple(x.shape[:-n]) + size, dtype=x.dtype, device="meta")
    return None


_FAST_LAYER_OPS = {"conv1d", "conv2d", "conv3d", "linear", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
                   "adaptive_avg_pool3d"}


def fast_meta(func, name: str, args, kwargs) -> Optional[torch.Tensor]:
    """Output of a shape-only op on meta tensors, without running PyTorch's (Python) meta kernels: elementwise
    ops, normalisations, convolutions, linear layers and adaptive average pooling.

    Returns None when the op is not one of the simple cases (the op then runs normally)."""
    if name in _SHAPE_PRESERVING_NORMS:
        x = args[0] if args else None
        return meta_like(x) if isinstance(x, torch.Tensor) and x.device.type == "meta" else None
    if name in _FAST_LAYER_OPS:
        return _fast_meta_layer(name, args, kwargs)
    if name not in _FAST_UNARY and name not in _FAST_BINARY:
        return None
    if kwargs and any(k not in ("inplace", "alpha", "p", "training", "approximate", "negative_slope") for k in kwargs):
        return None
    full = full_op_name(func)
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.device.type != "meta":
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
    if isinstance(other, torch.Tensor) and other.device.type != "meta" and other.dim() > 0:
        return None
    shape = torch.broadcast_shapes(x.shape, other.shape) if isinstance(other, torch.Tensor) else x.shape
    dtype = torch.result_type(x, other)
    if name in ("div", "true_divide") and not dtype.is_floating_point:
        return None
    if inplace:
        return x if tuple(shape) == tuple(x.shape) and dtype == x.dtype else None
    return torch.empty(shape, dtype=dtype, device="meta")
