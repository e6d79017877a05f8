"""Attention blocks with separate q/k/v/o Linear layers, with num_heads declared: head dims and whole heads, MHA and
GQA, head sizes read from the input (``view(B, N, self.num_heads, -1)``) or written as ``self.head_dim``. (The
same without declaring num_heads, and in more forms: ``test_heads_auto.py``.)"""

from __future__ import annotations

import pytest
import torch

import prune_explorer as pe
from prune_explorer.importance import MagnitudeImportance
from prune_explorer.pruner import BasePruner

from small_models import AttnModel

X = torch.randn(2, 6, 8)
VARIANTS = [dict(), dict(literal=True), dict(kv=2), dict(kv=2, literal=True)]


def _ids(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items()) or "mha"


def _kill_heads(m, q_heads):
    """Zero every weight of the given query heads (and of their key/value heads): they contribute nothing."""
    a = m.attn
    d = a.head_dim
    rep = a.num_heads // a.num_key_value_heads
    with torch.no_grad():
        for h in q_heads:
            a.q.weight[h * d:(h + 1) * d] = 0
            a.q.bias[h * d:(h + 1) * d] = 0
            a.o.weight[:, h * d:(h + 1) * d] = 0
        for g in {h // rep for h in q_heads}:
            for lin in (a.k, a.v):
                lin.weight[g * d:(g + 1) * d] = 0
                lin.bias[g * d:(g + 1) * d] = 0


@pytest.mark.parametrize("kw", VARIANTS, ids=_ids)
def test_block_is_found(kw):
    m = AttnModel(**kw)
    pr = BasePruner(m, X, MagnitudeImportance(), num_heads=m.heads())
    (blk,) = pr.attention_blocks
    assert blk.name == "attn" and set(blk.layers) >= {"attn.q", "attn.k"}
    assert (blk.num_heads, blk.num_key_value_heads, blk.head_dim) == (4, kw.get("kv", 4), 8)


@pytest.mark.parametrize("kw", VARIANTS, ids=_ids)
def test_whole_heads_with_no_contribution_are_removed_exactly(kw):
    m = AttnModel(**kw).eval()
    kv = kw.get("kv", 4)
    dead = [0, 1] if kv == 2 else [1, 3]  # for GQA: the two query heads of key/value head 0
    _kill_heads(m, dead)
    ref = m(X)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.0, num_heads=m.heads(), prune_num_heads=True,
                    head_pruning_ratio=0.5, ignored_layers=[m.fc])
    pr.step()
    a = m.attn
    assert a.num_heads == 2 and a.num_key_value_heads == kv // 2 and a.head_dim == 8
    assert tuple(a.q.weight.shape) == (16, 32) and tuple(a.k.weight.shape) == (kv // 2 * 8, 32)
    assert tuple(a.o.weight.shape) == (32, 16)
    torch.testing.assert_close(m(X), ref, rtol=1e-5, atol=1e-6)
    hist = pr.history
    assert len(hist) == 1 and hist[0]["root"] == "attn.q"
    assert {mm["name"] for mm in hist[0]["members"]} == {"attn.q", "attn.k", "attn.v", "attn.o"}


@pytest.mark.parametrize("kw", VARIANTS, ids=_ids)
def test_head_dims_are_removed_alike_in_every_head(kw):
    m = AttnModel(**kw).eval()
    a = m.attn
    with torch.no_grad():  # offset 5 of every head carries nothing
        for lin in (a.q, a.k, a.v):
            lin.weight.view(-1, 8, 32)[:, 5] = 0
            lin.bias.view(-1, 8)[:, 5] = 0
        a.o.weight.view(32, -1, 8)[:, :, 5] = 0
    ref = m(X)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.125, num_heads=m.heads(), ignored_layers=[m.fc],
                    pruning_ratio_dict={m.inp: 0.0})
    plans = [pr.proposal(g) for g in pr.get_all_groups()]
    dims = next(p for p in plans if p.group.kind == "attention-dims")
    assert dims.proposed_idxs == [h * 8 + 5 for h in range(4)]
    pr.step()
    assert a.head_dim == 7 and a.num_heads == 4
    assert tuple(a.q.weight.shape) == (28, 32) and tuple(a.o.weight.shape) == (32, 28)
    torch.testing.assert_close(m(X), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", VARIANTS, ids=_ids)
def test_heads_and_dims_together_and_iteratively(kw):
    """prune_num_heads=True with prune_head_dims=True (the default): whole heads leave, then the heads left narrow."""
    m = AttnModel(**kw)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, num_heads=m.heads(), prune_num_heads=True,
                    head_pruning_ratio=0.5, iterative_steps=2, ignored_layers=[m.fc])
    pr.step()
    pr.step()
    a = m.attn
    kv = kw.get("kv", 4)
    assert (a.num_heads, a.num_key_value_heads, a.head_dim) == (2, kv // 2, 4)
    assert m(X).shape == (2, 6, 5)
    assert m.inp.out_features == 16  # the residual stream is pruned by the graph's group as usual


def test_interactive_attention_groups_and_user_choice():
    m = AttnModel()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.0, num_heads=m.heads(), prune_num_heads=True,
                    head_pruning_ratio=0.25, prune_head_dims=False, ignored_layers=[m.fc])
    gen = pr.step(interactive=True)
    g = next(gen)
    assert isinstance(g, pe.pruner.Proposal) and g.group.kind == "attention-heads"
    assert g.scope == "local:attn.q" and g.importance.shape == (32,)
    assert len(g.proposed_idxs) == 8 and sorted(len(u) for u in g.prune_units) == [8, 8, 8, 8]
    g.prune(idxs=[17])  # the user removes head 2 instead (any channel of it selects the whole head)
    assert list(gen) == []
    assert m.attn.num_heads == 3 and m.attn.q.out_features == 24
    assert pr.history[0]["members"][0]["idxs"] == list(range(16, 24))
    assert m(X).shape == (2, 6, 5)


def test_undo_of_a_head_pruning_restores_the_attributes():
    m = AttnModel(kv=2, literal=True)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.0, num_heads=m.heads(), prune_num_heads=True,
                    head_pruning_ratio=0.5, prune_head_dims=False, ignored_layers=[m.fc])
    pr.DG.undo_depth = 4
    ref = m(X)
    pr.step()
    assert (m.attn.num_heads, m.attn.num_key_value_heads) == (2, 1)
    (blk,) = pr.attention_blocks
    assert (blk.num_heads, blk.num_key_value_heads, len(blk.removed_heads)) == (2, 1, 2)
    pr.DG.undo()
    (blk,) = pr.attention_blocks
    assert (blk.num_heads, blk.num_key_value_heads, blk.removed_heads) == (4, 2, [])
    assert (m.attn.num_heads, m.attn.num_key_value_heads) == (4, 2)
    torch.testing.assert_close(m(X), ref)
    groups = list(pr.get_all_groups())
    assert not hasattr(groups[0], "scope") and len(groups[0].root_idxs) == 32  # pruner state lives on proposals


class _HiddenHeads(torch.nn.Module):
    """One projection whose 4 heads the forward never splits (they are summed in a way the tracer cannot see)."""

    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(8, 32)
        self.q = torch.nn.Linear(32, 32)
        self.fc = torch.nn.Linear(32, 5)

    def forward(self, x):
        h = self.inp(x)
        return self.fc(torch.relu(self.q(h)))


def test_declared_heads_are_checked_against_the_model():
    m = AttnModel()
    with pytest.raises(pe.PruneExplorerError, match=r"num_heads\[attn.q\]=2, but the model's forward splits"):
        BasePruner(m, X, MagnitudeImportance(), num_heads={m.attn.q: 2})
    pr = BasePruner(m, X, MagnitudeImportance(), num_heads={m.attn.q: 4, m.attn.k: 4})  # a subset is fine
    pr.step()
    assert m(X).shape == (2, 6, 5)


def test_declared_heads_the_graph_cannot_see_lose_the_same_offsets():
    m = _HiddenHeads()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, num_heads={m.q: 4}, prune_num_heads=True,
                    head_pruning_ratio=0.5)
    g = pr.proposal(next(g for g in pr.DG.get_all_groups() if g.root_module is m.q))
    assert sorted(len(u) for u in g.prune_units) == [4] * 8  # one offset in each of the 4 declared heads
    pr.step()
    reasons = [s.reason for s in pr.skipped if s.root == "q"]
    assert any(r.startswith("whole heads are not removed: the traced forward does not split q's outputs") for r in reasons)
    assert m.q.out_features == 16 and m(X).shape == (2, 6, 5)
