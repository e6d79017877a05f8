"""Scans, budgets and plans on a model whose attention heads the pruner removes (num_heads, prune_num_heads)."""

import copy

import pytest
import torch

import prune_explorer as pe
from sens_helpers import NegMSE, TinyTransformer, assert_unchanged, snapshot


@pytest.fixture(scope="module")
def attn():
    torch.manual_seed(0)
    model = TinyTransformer().eval()
    x = torch.randn(1, 6, 8)
    batch = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(batch)
    a = model.attn
    opts = dict(num_heads={a.q: 4, a.k: 4, a.v: 4}, prune_num_heads=True)
    table = pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=(0.25, 0.5, 0.75), executor="serial",
                                ignored_layers=[model.head], pruner_options=opts, progress=False)
    return model, x, batch, ref, opts, table


def test_attention_groups_are_scanned_and_workers_agree(attn):
    model, x, batch, ref, opts, table = attn
    # whole heads (the graph's group rooted at q), then the head dims of q / k and of v / o (the model infers the head
    # size with -1, so the two are independent)
    assert sorted(table.keys()) == ["attn.q:attention-dims", "attn.q:attention-heads", "attn.v:attention-dims", "inp",
                                    "mlp1"]
    heads = table.rows_of("attn.q:attention-heads")
    assert [r.channels for r in heads] == [8, 16, 24]  # whole heads of 8 channels
    snap = snapshot(model)
    local = pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=(0.25, 0.5, 0.75), executor="local",
                                workers=2, ignored_layers=[model.head], pruner_options=opts, progress=False)
    assert local.rows == table.rows  # the workers resolve num_heads by layer name
    assert_unchanged(model, snap)


def test_budget_plan_on_attention_applies_exactly(attn):
    model, x, batch, ref, opts, table = attn
    plan = pe.sensitivity.solve_budget(table, target=0.6, kind="params")
    removed = {d.key for d in plan if d.remove}
    assert not {"attn.q:attention-heads", "attn.q:attention-dims"} <= removed  # heads or head dims, not both
    assert plan.options["num_heads"] == {"attn.q": 4, "attn.k": 4, "attn.v": 4}
    m = copy.deepcopy(model)
    pe.apply_plan(m, plan, example_inputs=x)  # the plan's own options declare the heads
    macs, params = pe.utils.count_ops_and_params(m, x)
    assert params == plan.predicted["params"] <= 0.6 * table.base_params
    assert m.attn.q.out_features == m.attn.num_heads * m.attn.head_dim
    m(x)


def test_uniform_plan_on_attention_prunes_heads_then_dims(attn):
    model, x, batch, ref, opts, table = attn
    plan = pe.sensitivity.uniform_plan(table=table, ratio=0.5)
    assert plan["attn.q:attention-dims"].ratio == 0.5 and plan["attn.q:attention-heads"].remove == 16
    m = copy.deepcopy(model)
    pe.apply_plan(m, plan, example_inputs=x)
    assert m.attn.num_heads == 2 and m.attn.q.out_features == 2 * 4  # half the heads, then half their dims
    assert pe.utils.count_ops_and_params(m, x)[1] == plan.predicted["params"]
    m(x)
