"""The tracer's shape-only fast paths for meta tensors must give exactly the shapes PyTorch computes."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from prune_explorer.graph.trace.meta_shapes import fast_meta as _fast_meta


def _meta(t):
    return t.to("meta")


def _random_meta(rng, most_size: int, most_dims: int):
    """A meta tensor of 1..most_dims dims of 1..most_size entries each, transposed (first and last dim) 3 times in 10."""
    x = torch.empty([rng.randint(1, most_size) for _ in range(rng.randint(1, most_dims))], device="meta")
    return x.transpose(0, -1) if rng.random() < 0.3 and x.dim() > 1 else x


def test_conv_shapes_match_torch_on_random_arguments():
    rng = random.Random(0)
    fast = 0
    for _ in range(300):
        nd = rng.choice([1, 2, 3])
        batched = rng.random() < 0.8
        g = rng.choice([1, 1, 2, 4])
        cin, cout = g * rng.randint(1, 3), g * rng.randint(1, 3)
        k = [rng.randint(1, 4) for _ in range(nd)]
        size = [rng.randint(3, 10) for _ in range(nd)]
        stride = rng.choice([1, 2, 3, tuple(rng.randint(1, 3) for _ in range(nd))])
        pad = rng.choice([0, 1, 2, tuple(rng.randint(0, 2) for _ in range(nd))])
        dil = rng.choice([1, 2])
        x = torch.zeros(([2] if batched else []) + [cin] + size)
        w = torch.zeros([cout, cin // g] + k)
        conv = getattr(F, f"conv{nd}d")
        try:
            ref = conv(x, w, None, stride, pad, dil, g).shape
        except RuntimeError:
            ref = None
        got = _fast_meta(None, f"conv{nd}d", (_meta(x), _meta(w), None, stride, pad, dil, g), {})
        if ref is None:
            assert got is None  # an invalid call is left to PyTorch, which raises
        elif got is not None:
            assert got.shape == ref and got.device.type == "meta"
            fast += 1
    assert fast > 200  # the fast path really is taken for ordinary convolutions


def test_conv_with_string_padding_is_left_to_torch():
    x, w = torch.zeros(1, 3, 8, 8, device="meta"), torch.zeros(4, 3, 3, 3, device="meta")
    assert _fast_meta(None, "conv2d", (x, w, None, 1, "same"), {}) is None


@pytest.mark.parametrize("size", [1, (3, 4), (None, 2), (2, None)])
def test_adaptive_avg_pool_shapes(size):
    x = torch.zeros(2, 5, 7, 9)
    assert _fast_meta(None, "adaptive_avg_pool2d", (_meta(x), size), {}).shape == F.adaptive_avg_pool2d(x, size).shape


def test_linear_and_norm_shapes():
    x = torch.zeros(2, 3, 5, device="meta")
    assert _fast_meta(None, "linear", (x, torch.zeros(4, 5, device="meta")), {}).shape == (2, 3, 4)
    assert _fast_meta(None, "linear", (x, torch.zeros(4, 6, device="meta")), {}) is None  # mismatch: torch raises
    y = torch.zeros(2, 4, 6, 6, device="meta").to(memory_format=torch.channels_last)
    out = _fast_meta(None, "relu", (y,), {})
    assert out.shape == y.shape and out.stride() == y.stride()


def test_rows_picked_by_an_index_tensor_match_torch_meta():
    """``x[index]`` (Swin's relative position bias table): shape and strides as PyTorch's own meta kernel gives."""
    rng = random.Random(0)
    fast = 0
    for _ in range(100):
        x = _random_meta(rng, 6, 3)  # transposed ones are not contiguous: left to PyTorch
        index = torch.empty([rng.randint(0, 5) for _ in range(rng.randint(0, 2))], dtype=torch.long, device="meta")
        got = _fast_meta(torch.Tensor.__getitem__, "__getitem__", (x, index), {})
        try:
            ref = x[index]
        except RuntimeError:  # a 0-d index is read as an int (.item(), refused on meta): left to PyTorch
            ref = None
        if got is not None:
            assert got.shape == ref.shape and got.stride() == ref.stride() and got.dtype == ref.dtype
            fast += 1
        else:
            assert not x.is_contiguous() or index.dim() == 0
    assert fast > 40
    mask = torch.empty(3, dtype=torch.bool, device="meta")
    assert _fast_meta(torch.Tensor.__getitem__, "__getitem__", (torch.empty(3, 2, device="meta"), mask), {}) is None


def test_comparisons_with_a_scalar_match_torch_meta():
    """``attn_mask != 0`` and its kind: shape, strides and dtype as PyTorch gives them on meta tensors."""
    import operator

    rng = random.Random(1)
    fast = 0
    ops = [(operator.eq, torch.Tensor.__eq__), (operator.ne, torch.Tensor.__ne__), (operator.lt, torch.Tensor.__lt__),
           (torch.Tensor.le, torch.Tensor.le), (torch.Tensor.gt, torch.Tensor.gt), (torch.ge, torch.ge)]
    for _ in range(120):
        dtype = rng.choice([torch.float32, torch.int64, torch.bool, torch.float16])
        x = torch.empty([rng.randint(0, 4) for _ in range(rng.randint(0, 3))], dtype=dtype, device="meta")
        if rng.random() < 0.3 and x.dim() > 1:
            x = x.transpose(0, -1)
        scalar = rng.choice([0, 1, -2.5, True])
        call, func = rng.choice(ops)
        ref = call(x, scalar)
        got = _fast_meta(func, func.__name__.strip("_"), (x, scalar), {})
        if got is not None:
            assert got.shape == ref.shape and got.stride() == ref.stride() and got.dtype == ref.dtype == torch.bool
            fast += 1
        else:
            assert not x.is_contiguous()
    assert fast > 60
    x = torch.empty(2, 3, device="meta")
    assert _fast_meta(torch.Tensor.eq_, "eq", (x, 0), {}) is None  # in place: x's dtype
    assert _fast_meta(torch.Tensor.eq, "eq", (x, x), {}) is None  # a tensor operand: left to PyTorch


def test_softmax_matches_torch_meta():
    rng = random.Random(2)
    fast = 0
    for _ in range(80):
        x = torch.empty([rng.randint(1, 4) for _ in range(rng.randint(0, 4))], device="meta",
                        dtype=rng.choice([torch.float32, torch.float16]))
        if rng.random() < 0.3 and x.dim() > 1:
            x = x.transpose(0, -1)
        dim = rng.randint(-max(x.dim(), 1), max(x.dim(), 1) - 1)
        fn, name = rng.choice([(F.softmax, "softmax"), (F.log_softmax, "log_softmax")])
        ref = fn(x, dim=dim)
        got = _fast_meta(fn, name, (x,), {"dim": dim, "_stacklevel": 3, "dtype": None})
        method = _fast_meta(getattr(torch.Tensor, name), name, (x, dim), {})
        if got is not None:
            for out in (got, method):  # (strides of size-1 dims do not matter)
                assert out.shape == ref.shape and out.dtype == ref.dtype
                assert [s for s, n in zip(out.stride(), out.shape) if n > 1] == \
                    [s for s, n in zip(ref.stride(), ref.shape) if n > 1]
            fast += 1
        else:
            assert not x.is_contiguous()
    assert fast > 40
    x = torch.empty(2, 3, device="meta")
    assert _fast_meta(F.softmax, "softmax", (x,), {"dim": 1, "dtype": torch.float64}) is None


def test_normalize_and_clamp_match_torch_meta():
    """Swin V2's ``F.normalize(q, dim=-1)`` and ``torch.clamp(logit_scale, max=...)`` on meta tensors."""
    rng = random.Random(3)
    fast = 0
    for _ in range(80):
        x = _random_meta(rng, 4, 4)  # (normalize keeps a transposed layout)
        if rng.random() < 0.3:
            x = torch.empty([2] + list(x.shape), device="meta").permute(*range(1, x.dim() + 1), 0)[..., 1]  # gaps
        if rng.random() < 0.2 and x.dim() > 1 and x.shape[0] == 1:
            x = x.expand(3, *x.shape[1:])  # broadcast: normalize left to PyTorch
        dim = rng.choice([-1, 0, (0, -1), 1])
        try:
            ref = F.normalize(x, dim=dim)
        except (IndexError, RuntimeError):
            ref = None
        got = _fast_meta(F.normalize, "normalize", (x,), {"p": 2.0, "dim": dim, "eps": 1e-12, "out": None})
        if got is not None:
            assert ref is not None and got.shape == ref.shape and got.dtype == ref.dtype
            assert [s for s, n in zip(got.stride(), got.shape) if n > 1] == \
                [s for s, n in zip(ref.stride(), ref.shape) if n > 1]
            fast += 1
        if not x.is_contiguous():
            continue
        bounds = rng.choice([{"max": 4.6}, {"min": 0}, {"min": -1.0, "max": 2}])
        ref = torch.clamp(x, **bounds)
        got = _fast_meta(torch.clamp, "clamp", (x,), bounds)
        if got is not None:
            assert got.shape == ref.shape and got.dtype == ref.dtype
            fast += 1
    assert fast > 60
    x = torch.empty(2, 3, device="meta")
    assert _fast_meta(torch.clamp, "clamp", (x,), {}) is None  # no bound: PyTorch's error
    assert _fast_meta(torch.Tensor.clamp_, "clamp", (x, 0.0), {}) is x
    assert _fast_meta(F.normalize, "normalize", (x,), {"dim": (1, -1)}) is None  # a dim twice: PyTorch's error


def test_reshape_matches_torch_meta():
    """A view where PyTorch gives one (same strides), a contiguous copy otherwise; invalid sizes left to PyTorch."""
    rng = random.Random(11)
    fast = copies = 0
    for _ in range(400):
        nd = rng.randint(0, 4)
        x = torch.empty([rng.randint(1, 4) for _ in range(nd)], device="meta")
        if nd > 1 and rng.random() < 0.5:
            perm = list(range(nd))
            rng.shuffle(perm)
            x = x.permute(perm)
        n = x.numel()
        sizes = rng.choice([[n], [-1], [1, n], [2, -1], [-1, 2, 2], [n + 1], [-1, -1]]
                           + ([list(x.shape)[::-1], [x.shape[0], -1]] if nd else []))
        try:
            ref = x.reshape(sizes)
        except RuntimeError:
            ref = None
        got = _fast_meta(torch.Tensor.reshape, "reshape", (x, *sizes), {})
        if ref is None:
            assert got is None
        elif got is not None:
            assert (got.shape, got.stride(), got._is_view()) == (ref.shape, ref.stride(), ref._is_view())
            fast += 1
            copies += not got._is_view()
    assert fast > 200 and copies > 10
