"""The pruner removes whole heads (``prune_num_heads=True`` at ``head_pruning_ratio``) or narrows every head
equally (``prune_head_dims=True``) in the attention forms real models use, without ``num_heads`` being declared;
declaring it stays possible, also for fused qkv projections and rotary / grouped-query attention."""

from __future__ import annotations


import pytest
import torch

import prune_explorer as pe
from prune_explorer.importance import MagnitudeImportance

from attention_forms import FORMS, X, build


def _sizes(attn):
    q = getattr(attn, "q", None) or getattr(attn, "q_proj", None)
    width = attn.qkv.out_features // 3 if q is None else q.out_features
    kv = getattr(attn, "num_key_value_heads", attn.num_heads)
    return attn.num_heads, kv, attn.head_dim, width


def _pruner(model, **kw):
    kw.setdefault("pruning_ratio", 0.5)
    return pe.pruner.MagnitudePruner(model, X, MagnitudeImportance(p=2), ignored_layers=[model.head], **kw)


@pytest.mark.parametrize("form", FORMS)
def test_whole_heads_without_declaring_them(form):
    model = build(form)
    h0, kv0, d0, _ = _sizes(model.attn)
    pr = _pruner(model, prune_num_heads=True, head_pruning_ratio=0.5, prune_head_dims=False)
    pr.step()
    h, kv, d, width = _sizes(model.attn)
    assert (h, kv, d) == (h0 // 2, max(kv0 // 2, 1), d0)  # one key-value head (multi-query) stays
    assert width == h * d
    assert model.embed.out_features == 16  # the residual stream follows pruning_ratio
    assert model(X).shape == (2, 6, 5)
    assert not [s for s in pr.skipped if s.kind == "error"]


@pytest.mark.parametrize("form", FORMS)
def test_whole_heads_then_narrower_heads(form):
    """prune_num_heads=True with prune_head_dims=True (the default, as in Torch-Pruning): half the heads leave, then
    the heads left lose half their dims."""
    model = build(form)
    h0, kv0, d0, _ = _sizes(model.attn)
    pr = _pruner(model, prune_num_heads=True, head_pruning_ratio=0.5)
    pr.step()
    h, kv, d, width = _sizes(model.attn)
    assert (h, kv, d) == (h0 // 2, max(kv0 // 2, 1), d0 // 2)
    assert width == h * d
    assert model(X).shape == (2, 6, 5)
    assert not [s for s in pr.skipped if s.kind == "error"]
    kinds = [rec["scope"] for rec in pr.history]
    assert len(kinds) == len(pr.history)


@pytest.mark.parametrize("form", FORMS)
def test_head_dims_without_declaring_them(form):
    model = build(form)
    h0, kv0, d0, _ = _sizes(model.attn)
    pr = _pruner(model, prune_head_dims=True)
    pr.step()
    h, kv, d, width = _sizes(model.attn)
    assert (h, kv) == (h0, kv0) and d == d0 // 2
    assert width == h * d
    assert model(X).shape == (2, 6, 5)


@pytest.mark.parametrize("form", ["separate-sdpa", "fused-sdpa", "rotary-repeat"])
def test_no_head_options_keep_attention_as_it_is(form):
    model = build(form)
    before = _sizes(model.attn)
    pr = _pruner(model, prune_head_dims=False, prune_num_heads=False)
    pr.step()
    assert _sizes(model.attn) == before
    assert model.embed.out_features == 16
    assert any(s.kind == "heads" for s in pr.skipped)
    model(X)


def _declared(model):
    a = model.attn
    if hasattr(a, "qkv"):
        return {a.qkv: a.num_heads}
    if hasattr(a, "q_proj"):
        return {a.q_proj: a.num_heads, a.k_proj: a.num_key_value_heads, a.v_proj: a.num_key_value_heads}
    return {a.q: a.num_heads, a.k: a.num_heads, a.v: a.num_heads}


@pytest.mark.parametrize("form", ["fused-sdpa", "fused-matmul", "rotary-repeat", "rotary-sdpa", "separate-sdpa"])
@pytest.mark.parametrize("heads", [True, False], ids=["heads", "dims"])
def test_declared_heads_accept_fused_and_rotary_projections(form, heads):
    model = build(form)
    h0, kv0, d0, _ = _sizes(model.attn)
    pr = _pruner(model, num_heads=_declared(model), prune_num_heads=heads, prune_head_dims=not heads,
                 head_pruning_ratio=0.5)  # heads only, or dims only
    pr.step()
    h, kv, d, _ = _sizes(model.attn)
    if heads:
        assert (h, kv, d) == (h0 // 2, max(kv0 // 2, 1), d0)  # one key-value head (multi-query) stays
    else:
        assert (h, kv, d) == (h0, kv0, d0 // 2)
    assert not [s for s in pr.skipped if "need exactly three" in s.reason or "feeding a Linear" in s.reason]
    model(X)


def test_declared_head_count_that_does_not_match_the_model_is_refused():
    model = build("separate-sdpa")
    with pytest.raises(pe.PruneExplorerError, match="num_heads"):
        _pruner(model, num_heads={model.attn.q: 3})


def test_head_decisions_are_recorded_per_attention_block():
    """What a plan needs to replay the heads decisions: per block, the heads and head dims removed."""
    model = build("rotary-repeat")
    pr = _pruner(model, prune_num_heads=True, head_pruning_ratio=0.5, prune_head_dims=False)
    pr.step()
    blocks = pr.DG.attention_blocks()
    (blk,) = blocks
    assert blk.name == "attn"
    assert (blk.num_heads, blk.num_key_value_heads, blk.head_dim) == (2, 1, 8)
    assert (blk.initial_num_heads, blk.initial_num_key_value_heads, blk.initial_head_dim) == (4, 2, 8)
    assert len(blk.removed_heads) == 2 and blk.removed_head_dims == []


def test_head_pruning_ratio_is_used_for_heads_and_pruning_ratio_for_widths():
    model = build("separate-sdpa")
    pr = _pruner(model, pruning_ratio=0.25, prune_num_heads=True, head_pruning_ratio=0.5)
    pr.step()
    assert model.attn.num_heads == 2 and model.attn.head_dim == 6
    assert model.embed.out_features == 24
