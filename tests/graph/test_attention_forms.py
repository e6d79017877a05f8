"""Multi-head attention in the forms real models use is understood by the graph, without declaring num_heads.

For every form (separate or fused projections; softmax(q k^T) v with matmul or einsum; scaled_dot_product_attention,
also with enable_gqa; rotary embeddings; grouped-query attention through repeat_kv, also with one key-value head; masks and relative position
biases added to the scores) and both ways of cutting heads (``head_pruning="dims"``: the same offsets from every
head; ``"heads"``: whole heads), the group rooted at the query projection

* removes channels that contribute nothing *exactly*: after zeroing what the group's members own for those
  channels, pruning the group leaves the model's output unchanged (so every member is there, with the right
  channels: q, k, v, the output projection, rotary frequencies, position biases);
* keeps the head bookkeeping the forward reads (``num_heads``, ``head_dim``, ``attn_dim``...) in step, so the
  unmodified forward runs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import prune_explorer as pe

from attention_forms import FORMS, X, build, first_projection, zero_channels


def _graph(model, mode):
    return pe.DependencyGraph().build_dependency(model, X, head_pruning=mode)


def _attention_group(dg, model):
    root = first_projection(model)
    for g in dg.get_all_groups():
        if g.root_module is root:
            return g
    raise AssertionError(f"no group rooted at the query projection; fixed: {dg.fixed_reason(root)}")


def _attention_model(form, mode):
    """``(model, group)``: the form's model and its graph's group rooted at the query projection (``mode``: the
    graph's ``head_pruning``)."""
    model = build(form)
    return model, _attention_group(_graph(model, mode), model)


def _unit(group, k=1):
    units = group.units
    assert len(units) >= 2, f"the attention group has {len(units)} unit(s): {units}"
    return sorted(i for u in units[k:k + 1] for i in u)


@pytest.mark.parametrize("mode", ["dims", "heads"])
@pytest.mark.parametrize("form", FORMS)
def test_attention_group_prunes_exactly(form, mode):
    model, group = _attention_model(form, mode)
    sub = group.select(_unit(group))
    zero_channels(sub)
    with torch.no_grad():
        ref = model(X)
    sub.prune()
    with torch.no_grad():
        out = model(X)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def _head_sizes(attn):
    q = getattr(attn, "q", None) or getattr(attn, "q_proj", None)
    if q is None:  # fused qkv
        return attn.num_heads, attn.head_dim, attn.qkv.out_features // 3
    return attn.num_heads, attn.head_dim, q.out_features


@pytest.mark.parametrize("form", FORMS)
def test_dims_mode_narrows_every_head_equally(form):
    model, group = _attention_model(form, "dims")
    h0, d0, _ = _head_sizes(model.attn)
    # units are one offset in every head (a pair of offsets with rotary embeddings)
    per_unit = len(group.units[0])
    assert all(len(u) == per_unit for u in group.units)
    pair = 2 if form.startswith("rotary") else 1
    fused = 3 if form.startswith("fused") else 1  # the root qkv holds the offset of q, k and v
    assert per_unit == h0 * pair * fused
    group.select(_unit(group)).prune()
    h, d, width = _head_sizes(model.attn)
    assert (h, d, width) == (h0, d0 - pair, h0 * (d0 - pair))
    assert model(X).shape == (2, 6, 5)


@pytest.mark.parametrize("form", FORMS)
def test_heads_mode_removes_whole_heads(form):
    model, group = _attention_model(form, "heads")
    h0, d0, _ = _head_sizes(model.attn)
    # a key/value group is one unit; with one key-value head (multi-query) a query head is, and the kv head stays
    rep = model.attn.num_key_value_groups if form.startswith("rotary") and "mqa" not in form else 1
    fused = 3 if form.startswith("fused") else 1
    assert all(len(u) == d0 * rep * fused for u in group.units)
    group.select(_unit(group, 0)).prune()
    h, d, width = _head_sizes(model.attn)
    assert (h, d, width) == (h0 - rep, d0, (h0 - rep) * d0)
    if form.startswith("rotary"):
        assert model.attn.num_key_value_heads * model.attn.head_dim == model.attn.k_proj.out_features
    if form == "separate-bias":
        assert model.attn.rel.embedding_dim == h0 - rep  # the position bias keeps one column per head
    assert model(X).shape == (2, 6, 5)


@pytest.mark.parametrize("mode", ["dims", "heads"])
@pytest.mark.parametrize("form", FORMS)
def test_every_group_pruned_by_half_still_runs(form, mode):
    model = build(form)
    dg = _graph(model, mode)
    n = 0
    for g in list(dg.get_all_groups()):
        units = g.units
        if len(units) >= 2:
            g.select([i for u in units[: len(units) // 2] for i in u]).prune()
            n += 1
    assert n >= 2  # the residual stream and the attention (at least)
    assert model(X).shape == (2, 6, 5)
    assert model.embed.out_features < 32


def test_rotary_pairs_and_frequencies_are_pruned_together():
    model, group = _attention_model("rotary-repeat", "dims")
    sub = group.select(_unit(group, 1))
    q_idx = sorted(next(idxs for dep, idxs in sub if dep.layer is model.attn.q_proj))
    d = model.attn.head_dim
    assert sorted({i % d for i in q_idx}) == [1, 1 + d // 2]  # a rotary pair, in every head
    freqs = [idxs for dep, idxs in sub if isinstance(dep.layer, torch.Tensor)]
    assert freqs == [[1]]  # one frequency per pair
    kept = model.rotary.inv_freq[[0, 2, 3]].clone()
    sub.prune()
    torch.testing.assert_close(model.rotary.inv_freq, kept)


def test_sdpa_enable_gqa_matches_repeat_kv():
    """The two ways of writing grouped-query attention give the same groups."""
    a, b = build("rotary-repeat"), build("rotary-sdpa")
    for mode in ("dims", "heads"):
        ga = _attention_group(_graph(a, mode), a)
        gb = _attention_group(_graph(b, mode), b)
        assert ga.units == gb.units
        assert [(dep.target.name, list(idxs)) for dep, idxs in ga] == [(dep.target.name, list(idxs)) for dep, idxs in gb]


@pytest.mark.parametrize("mode", ["dims", "heads"])
def test_multihead_attention_keeps_heads_consistent(mode):
    model = build("mha")
    mha = model.attn
    dg = _graph(model, mode)
    (group,) = [g for g in dg.get_all_groups() if any(dep.layer is mha for dep, _ in g)]
    group.select(_unit(group, 0)).prune()
    if mode == "heads":
        assert (mha.num_heads, mha.head_dim, mha.embed_dim) == (3, 8, 24)
    else:
        assert (mha.num_heads, mha.head_dim, mha.embed_dim) == (4, 7, 28)
    assert model(X).shape == (2, 6, 5)


def test_scores_meet_an_unlabeled_mask_without_fixing_anything():
    """A (B, 1, L, S) mask broadcast over the heads is no reason to keep q, k or v fixed."""
    model = build("separate-mask")
    dg = _graph(model, "heads")
    for layer in (model.attn.q, model.attn.k, model.attn.v, model.attn.o):
        assert dg.fixed_reason(layer) is None, dg.fixed_reason(layer)


def test_literal_head_count_still_allows_dims_only():
    """``view(B, N, 4, -1)`` writes the head count as a literal: heads cannot change, head dims can."""

    class Literal(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(12, 32)
            self.q, self.k, self.v, self.o = (nn.Linear(32, 32) for _ in range(4))

        def forward(self, x):
            b, n, _ = x.shape
            h = self.embed(x)
            q, k, v = (t.view(b, n, 4, -1).transpose(1, 2) for t in (self.q(h), self.k(h), self.v(h)))
            out = (q @ k.transpose(-2, -1)).softmax(-1) @ v
            return h + self.o(out.transpose(1, 2).reshape(b, n, -1))

    model = Literal().eval()
    dg = pe.DependencyGraph().build_dependency(model, X, head_pruning="heads")
    group = next(g for g in dg.get_all_groups() if g.root_module is model.q)
    assert all(len(u) == 4 for u in group.units)  # one offset in each of the 4 heads
    group.select(group.units[0]).prune()
    assert model.q.out_features == 28
    model(X)
