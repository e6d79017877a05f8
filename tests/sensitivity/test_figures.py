"""prune_explorer.explorer.sensitivity_figures: the figures show the table's and the comparison's numbers."""

import pytest

import prune_explorer as pe
from prune_explorer.explorer import sensitivity_figures as sf
from sens_helpers import NegMSE


def test_heatmap_is_groups_by_ratios(tiny_table):
    fig = sf.sensitivity_heatmap(tiny_table)
    heat = fig.data[0]
    assert list(heat.y) == tiny_table.keys()
    assert list(heat.x) == [f"{r:g}" for r in tiny_table.ratios]
    assert heat.z.tolist() == tiny_table.pivot("drop").values
    assert heat.customdata[1][2][0] == tiny_table.rows_of("conv2")[2].channels
    assert heat.zmid == 0
    assert sf.sensitivity_heatmap(tiny_table, value="metric").data[0].z[0].tolist() == \
        tiny_table.pivot("metric").values[0]


def test_group_curve_marks_the_proposed_ratio(tiny_table):
    plan = pe.sensitivity.solve_budget(tiny_table, target=0.3, kind="macs")
    key = next(d.key for d in plan if d.remove)
    fig = sf.group_curve_figure(tiny_table, key, proposed=plan)
    curve, marker = fig.data
    c = tiny_table.curve(key)
    assert list(curve.x) == c["fraction"] and list(curve.y) == c["metric"]
    assert marker.x[0] == pytest.approx(plan[key].remove / plan[key].channels)
    assert min(c["metric"]) <= marker.y[0] <= max(c["metric"])
    assert sf.group_curve_figure(tiny_table, key, proposed=0.5).data[1].x[0] == 0.5
    assert len(sf.group_curve_figure(tiny_table, key).data) == 1


def test_comparison_figures(tiny, tiny_table):
    model, x, batch, ref = tiny
    plans = [pe.sensitivity.solve_budget(tiny_table, target=0.5, kind="macs", name="guided"),
             pe.sensitivity.uniform_plan(table=tiny_table, target=0.5, kind="macs", name="uniform")]
    cmp = pe.sensitivity.compare_plans(model, x, plans, eval_fn=NegMSE(batch, ref))
    fig = sf.plan_comparison_figure(cmp)
    params, macs, metric = fig.data
    assert list(params.x) == ["original", "guided", "uniform"]
    assert list(params.y) == pytest.approx([r["params_fraction"] * 100 for r in cmp.records()])
    assert list(macs.y) == pytest.approx([r["macs_fraction"] * 100 for r in cmp.records()])
    assert list(metric.y) == [r.metric for r in cmp.rows]
    widths = sf.plan_widths_figure(cmp)
    assert [t.name for t in widths.data] == cmp.names()
    assert [list(t.y) for t in widths.data] == list(cmp.widths().values())
    table = sf.plan_comparison_table(cmp)
    assert list(table.data[0].cells.values[0]) == cmp.names()
