"""The shape-only fast paths for concatenation, reductions, ``pow``, scaled dot-product attention and multi-head
attention give exactly PyTorch's shapes, never accept a call PyTorch refuses, and the dtype check refuses what the
real kernels refuse."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prune_explorer.graph.trace.meta_shapes import ShapeOnlyMode, check_meta_dtypes, fast_meta


def _meta(t):
    return t.to("meta")


def _compare(name, func, args, kwargs=None):
    """PyTorch's result shape (None if it raises) against the fast path's; returns whether the fast path answered."""
    kwargs = kwargs or {}
    try:
        ref = func(*args, **kwargs)
    except RuntimeError:
        ref = None
    margs = [_meta(a) if isinstance(a, torch.Tensor) else [_meta(t) for t in a] if isinstance(a, list) else a
             for a in args]
    got = fast_meta(func, name, tuple(margs), {k: _meta(v) if isinstance(v, torch.Tensor) else v
                                               for k, v in kwargs.items()})
    if ref is None:
        assert got is None
        return False
    if got is None:
        return False
    ref_t = ref if isinstance(ref, tuple) else (ref,)
    got_t = got if isinstance(got, tuple) else (got,)
    for r, g in zip(ref_t, got_t):
        assert (r is None) == (g is None)
        if r is not None:
            assert g.shape == r.shape and g.dtype == r.dtype and g.device.type == "meta"
    return True


def test_cat_matches_torch_on_random_arguments():
    rng = random.Random(0)
    fast = 0
    for _ in range(200):
        nd = rng.randint(1, 4)
        dim = rng.randint(-nd, nd - 1)
        base = [rng.randint(1, 4) for _ in range(nd)]
        parts = []
        for _ in range(rng.randint(1, 3)):
            shape = list(base)
            shape[dim] = rng.randint(1, 4)
            if rng.random() < 0.15:  # a mismatch on another dim: PyTorch refuses, so must the fast path
                k = rng.randrange(nd)
                shape[k] += 1
            parts.append(torch.zeros(shape))
        fast += _compare("cat", torch.cat, (parts, dim))
    assert fast > 100


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin"])
def test_reductions_match_torch(name):
    rng = random.Random(1)
    fast = 0
    for _ in range(60):
        nd = rng.randint(1, 4)
        x = torch.zeros([rng.randint(1, 4) for _ in range(nd)])
        dims = rng.sample(range(-nd, nd), rng.randint(1, nd))
        dims = [d for i, d in enumerate(dims) if d % nd not in {e % nd for e in dims[:i]}]
        dim = dims[0] if len(dims) == 1 and rng.random() < 0.5 else tuple(dims)
        fast += _compare(name, getattr(torch, name), (x, dim), {"keepdim": rng.random() < 0.5})
    assert fast == 60


def test_pow_matches_torch():
    assert _compare("pow", torch.pow, (torch.zeros(2, 3), 2))
    assert fast_meta(torch.pow, "pow", (torch.zeros(2, 3, dtype=torch.long, device="meta"), 2), {}) is None


def test_sdpa_matches_torch_including_grouped_query_attention():
    rng = random.Random(2)
    fast = 0
    for _ in range(80):
        b, hq, l, s, e, ev = (rng.randint(1, 3), rng.choice([2, 4]), rng.randint(1, 5), rng.randint(1, 5),
                              rng.choice([4, 8]), rng.choice([4, 6]))
        gqa = rng.random() < 0.3
        hk = hq // 2 if gqa else hq
        q, k, v = torch.zeros(b, hq, l, e), torch.zeros(b, hk, s, e), torch.zeros(b, hk, s, ev)
        if rng.random() < 0.2:
            k = torch.zeros(b, hk, s, e + 1)  # PyTorch refuses it
        kwargs = {"enable_gqa": True} if gqa else {}
        if rng.random() < 0.3:
            kwargs["attn_mask"] = torch.zeros(1, 1, l, s)
        fast += _compare("scaled_dot_product_attention", F.scaled_dot_product_attention, (q, k, v), kwargs)
    assert fast > 40


@pytest.mark.parametrize("batch_first, need_weights, average", [(False, True, True), (True, False, True),
                                                                 (False, True, False)])
def test_multi_head_attention_matches_torch(batch_first, need_weights, average):
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
    x = torch.randn(3, 5, 16)
    ref = mha(x, x, x, need_weights=need_weights, average_attn_weights=average)
    meta = mha.to("meta")
    calls = []

    class Spy(ShapeOnlyMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") == "multi_head_attention_forward":
                calls.append(fast_meta(func, "multi_head_attention_forward", args, kwargs or {}) is not None)
            return super().__torch_function__(func, types, args, kwargs)

    with torch.no_grad(), Spy():
        got = meta(_meta(x), _meta(x), _meta(x), need_weights=need_weights, average_attn_weights=average)
    assert calls == [True]
    assert got[0].shape == ref[0].shape
    assert (got[1] is None) == (ref[1] is None) and (ref[1] is None or got[1].shape == ref[1].shape)


@pytest.mark.parametrize("name, w_shape", [("conv2d", (4, 3, 1, 1)), ("linear", (4, 3))])
def test_dtype_mismatches_are_refused_like_the_real_kernels(name, w_shape):
    x = torch.zeros((1, 3, 2, 2) if name == "conv2d" else (2, 3), dtype=torch.long)
    w = torch.zeros(w_shape)
    with pytest.raises(RuntimeError):
        getattr(F, name)(x, w)
    with pytest.raises(RuntimeError, match="input type .*int64.* weight type .*float32"):
        check_meta_dtypes(name, (_meta(x), _meta(w)), {})
    check_meta_dtypes(name, (_meta(x.float()), _meta(w)), {})  # matching dtypes pass


def test_matmul_and_roll_match_torch_on_random_arguments():
    """``a @ b`` (batch dims broadcast, mismatched inner sizes refused) and ``torch.roll`` with explicit dims
    (out-of-range dims and mismatched shift / dim counts refused); ``__rmatmul__`` is left to PyTorch."""
    rng = random.Random(0)
    fast = 0
    for _ in range(200):
        batch_a = [rng.choice([1, 2, 3]) for _ in range(rng.randint(0, 2))]
        batch_b = [rng.choice([1, 2, 3]) for _ in range(rng.randint(0, 2))]
        n, k, m = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 4)
        k2 = k if rng.random() > 0.15 else k + 1
        a, b = torch.zeros(batch_a + [n, k]), torch.zeros(batch_b + [k2, m])
        fast += _compare("matmul", torch.matmul, (a, b))
        fast += _compare("matmul", torch.Tensor.__matmul__, (a, b))
        x = torch.zeros([rng.randint(1, 3) for _ in range(rng.randint(1, 4))])
        nd_dims = rng.randint(1, 2)
        dims = [rng.randint(-x.dim() - 1, x.dim()) for _ in range(nd_dims)]
        shifts = [rng.randint(-3, 3) for _ in range(nd_dims if rng.random() > 0.15 else nd_dims + 1)]
        for args, kwargs in (((x, tuple(shifts), tuple(dims)), {}), ((x,), {"shifts": shifts[0], "dims": dims[0]})):
            try:
                ref = torch.roll(*args, **kwargs)
            except (RuntimeError, IndexError):  # a dim out of range, or more shifts than dims
                ref = None
            got = fast_meta(torch.roll, "roll", (_meta(x),) + args[1:], kwargs)
            assert (got is None) == (ref is None)
            if ref is not None:
                assert got.shape == ref.shape and got.dtype == ref.dtype and got.is_contiguous()
                fast += 1
    assert fast > 400
    a, b = torch.zeros(2, 3), torch.zeros(3, 4)
    assert fast_meta(torch.Tensor.__rmatmul__, "matmul", (_meta(b), _meta(a)), {}) is None


def test_masked_fill_matches_torch_on_random_arguments():
    """Out of place and in place; masks that do not broadcast to the input, or are not boolean, go to PyTorch."""
    rng = random.Random(0)
    fast = 0
    for _ in range(100):
        shape = [rng.randint(1, 3) for _ in range(rng.randint(1, 3))]
        mshape = [rng.choice([1, s, s + 1]) for s in shape][rng.randint(0, len(shape) - 1):]
        x, mask = torch.zeros(shape), torch.zeros(mshape, dtype=torch.bool)
        fast += _compare("masked_fill", torch.Tensor.masked_fill, (x, mask, -100.0))
        got = fast_meta(torch.Tensor.masked_fill_, "masked_fill", (_meta(x), _meta(mask), 0.0), {})
        assert got is None or got.shape == x.shape
    assert fast > 30
    x = torch.zeros(2, 3, device="meta")
    assert fast_meta(torch.Tensor.masked_fill_, "masked_fill", (x, torch.zeros(3, dtype=torch.bool, device="meta"), 1.0),
                     {}) is x
    assert fast_meta(torch.Tensor.masked_fill, "masked_fill", (x, torch.zeros(3, device="meta"), 1.0), {}) is None
