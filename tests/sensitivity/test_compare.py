"""pe.sensitivity.compare_plans: named plans side by side."""

import copy

import pytest

import prune_explorer as pe
from prune_explorer.sensitivity import SensitivityError
from sens_helpers import NegMSE, assert_unchanged, snapshot


@pytest.fixture(scope="module")
def plans(tiny_table):
    return {"guided": pe.sensitivity.solve_budget(tiny_table, target=0.5, kind="macs"),
            "uniform": pe.sensitivity.uniform_plan(table=tiny_table, target=0.5, kind="macs")}


def test_comparison_rows_are_what_applying_each_plan_gives(tiny, tiny_table, plans):
    model, x, batch, ref = tiny
    snap = snapshot(model)
    cmp = pe.sensitivity.compare_plans(model, x, plans, eval_fn=NegMSE(batch, ref), keep_models=True)
    assert_unchanged(model, snap)
    assert cmp.names() == ["original", "guided", "uniform"]
    assert cmp["original"].metric == tiny_table.baseline and cmp["original"].params == tiny_table.base_params
    assert cmp.layers == tiny_table.keys()  # the root layers, in the pruner's order
    for name, plan in plans.items():
        m = copy.deepcopy(model)
        pe.apply_plan(m, plan, example_inputs=x)
        macs, params = pe.utils.count_ops_and_params(m, x)
        row = cmp[name]
        assert (row.params, row.macs) == (params, macs) == (plan.predicted["params"], plan.predicted["macs"])
        assert row.metric == NegMSE(batch, ref)(m)
        assert row.widths == {k: getattr(m, k).out_channels for k in cmp.layers}
        assert row.plan is plan
        assert cmp.models[name].conv3.out_channels == m.conv3.out_channels
    rec = {r["name"]: r for r in cmp.records()}
    assert rec["guided"]["macs_fraction"] <= 0.5 and rec["original"]["params_fraction"] == 1.0
    assert cmp.widths()["original"] == [16, 24, 32, 40]
    text = repr(cmp)
    assert "guided" in text and "widths" in text and "conv5" in text
    assert cmp.as_dict()["rows"][1]["plan"]["name"] == plans["guided"].name


def test_plans_as_a_list_latency_and_no_original(tiny, plans):
    model, x = tiny[0], tiny[1]
    cmp = pe.sensitivity.compare_plans(model, x, list(plans.values()), include_original=False,
                                       latency=lambda m: pe.utils.count_macs(m, x) * 1e-9)
    assert cmp.names() == [p.name for p in plans.values()]
    assert all(r.metric is None for r in cmp.rows)
    assert cmp.rows[0].latency == pytest.approx(cmp.rows[0].macs * 1e-9)
    assert "latency ms" in cmp.summary()


def test_bad_comparisons_are_refused(tiny, plans):
    model, x = tiny[0], tiny[1]
    p = plans["guided"]
    with pytest.raises(SensitivityError, match="unique"):
        pe.sensitivity.compare_plans(model, x, [p, p])
    with pytest.raises(SensitivityError, match="unique"):
        pe.sensitivity.compare_plans(model, x, {"original": p})
    with pytest.raises(SensitivityError, match="must be PruningPlan"):
        pe.sensitivity.compare_plans(model, x, {"a": {"groups": []}})
    with pytest.raises(SensitivityError, match="latency must be"):
        pe.sensitivity.compare_plans(model, x, [p], latency="fast")
    with pytest.raises(SensitivityError, match="eval_fn raised ZeroDivisionError on plan 'original'"):
        pe.sensitivity.compare_plans(model, x, [p], eval_fn=lambda m: 1 / 0)


def test_measured_latency_with_pe_utils_benchmark(tiny, plans):
    model, x = tiny[0], tiny[1]
    cmp = pe.sensitivity.compare_plans(model, x, plans, latency=True)
    assert all(r.latency is not None and 0 < r.latency < 1 for r in cmp.rows)  # seconds per forward pass
