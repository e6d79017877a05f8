"""The sensitivity panel of the app (widgets, no browser): buttons drive the controller, charts show its figures."""

import pytest
import torch

import prune_explorer as pe
from prune_explorer.explorer.sensitivity_panel import parse_ratios
from prune_explorer.explorer import ExplorerError

from explorer_helpers import MSE_STATE, neg_mse, reference_outputs, same_as, snapshot
from small_models import SmallNet

BATCH = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def make_app(eval_fn=neg_mse, **kwargs):
    torch.manual_seed(0)
    model = SmallNet().eval()
    reference_outputs(model, BATCH)
    return pe.Explorer(model, torch.randn(1, 3, 16, 16), eval_fn=eval_fn, **kwargs)


def status(ex):
    return ex.controller.status.text


def test_without_a_metric_the_panel_says_how_to_give_one():
    ex = make_app(eval_fn=None)
    p = ex.sensitivity_panel
    assert p.scan_btn.disabled and "eval_fn" in p.note.value and p.heatmap.layout.display == "none"
    assert p.solve_btn.disabled and p.apply_btn.disabled
    ex.sensitivity.set_eval_fn(neg_mse)
    assert not p.scan_btn.disabled


def test_scan_from_the_app_shows_heatmap_and_card_curve():
    ex = make_app()
    p = ex.sensitivity_panel
    snap = snapshot(ex.model)
    p.ratios_text.value = "0.25, 0.5, 0.75"
    p.scan_btn.click()
    t = ex.sensitivity.table
    assert t is not None and "sensitivity scan" in status(ex), status(ex)
    assert same_as(ex.model, snap)
    heat = p.heatmap.fig.data[0]
    assert heat.type == "heatmap" and list(heat.y) == t.keys() and list(heat.x) == ["0.25", "0.5", "0.75"]
    assert p.heatmap.layout.display == "" and p.heatmap.figure["data"][0]["type"] == "heatmap"
    # the group on show is outlined on the heatmap and has its curve on the card
    assert p.heatmap.fig.layout.shapes[0].y0 == t.keys().index(ex.sensitivity.current_key()) - 0.5
    assert p.curve_box in ex.card.children and p.curve_box.layout.display == ""
    assert p.curve.fig.data[1].x[0] == pytest.approx(len(ex.controller.current_idxs) / 16)
    # the curve follows the walk
    ex.controller.accept()
    assert ex.sensitivity.current_key() in p.curve_title.value


def test_bad_ratios_are_shown_and_change_nothing():
    ex = make_app()
    p = ex.sensitivity_panel
    p.ratios_text.value = "0.5, lots"
    p.scan_btn.click()
    assert ex.controller.status.is_error and "could not read" in status(ex)
    p.ratios_text.value = "0.5, 1.5"
    p.scan_btn.click()
    assert ex.controller.status.is_error and "out of range" in status(ex) and ex.sensitivity.table is None
    with pytest.raises(ExplorerError, match="at least one"):
        parse_ratios(" , ")


def test_interrupted_scan_is_reported_and_changes_nothing():
    ex = make_app()
    p = ex.sensitivity_panel
    snap = snapshot(ex.model)
    MSE_STATE.update(stop_after=3, calls=0)
    p.scan_btn.click()  # the interrupt is caught by the panel: the cell does not fail
    assert ex.controller.status.is_error and "interrupted" in status(ex)
    assert same_as(ex.model, snap) and ex.sensitivity.table is None and not ex.progress.visible
    MSE_STATE.update(stop_after=None, calls=0)
    p.scan_btn.click()
    assert ex.sensitivity.table.stats["from_cache"] == 3


def test_solve_apply_and_undo_plan_from_the_app():
    ex = make_app()
    p = ex.sensitivity_panel
    snap = snapshot(ex.model)
    p.scan_btn.click()
    p.kind.value = "parameters"
    p.target.value = 0.6
    p.solve_btn.click()
    plan = ex.sensitivity.plan
    assert plan is not None and "Reviewing" in p.plan_info.value and not p.apply_btn.disabled
    assert plan.predicted["params"] <= 0.6 * ex.controller.params0
    p.apply_btn.click()
    assert ex.controller.current is None and "applied plan" in status(ex)
    assert "Applied" in p.plan_info.value and "Reviewing" not in p.plan_info.value  # the plan text follows
    assert sum(q.numel() for q in ex.model.parameters()) == plan.predicted["params"]
    assert not p.undo_btn.disabled
    p.undo_btn.click()
    assert same_as(ex.model, snap) and ex.controller.decisions == [] and "undid the plan" in status(ex)
    assert "Reviewing" in p.plan_info.value
    p.stop_btn.click()
    assert ex.sensitivity.plan is None and p.stop_btn.disabled
