"""The explorer's sensitivity panel, driven through its plain-Python controller on a real resnet18.

The metric is real: minus the MSE between the (pruned) model's outputs and the unpruned model's outputs on a fixed
random batch. Scans run serially in this process, on a copy of the explorer's model.
"""

import math

import pytest
import torch
import torchvision

import prune_explorer as pe
from prune_explorer.explorer import ExplorerController, ExplorerError
from prune_explorer.explorer.sensitivity_controller import APPLY_STAGE, SCAN_STAGE, SensitivityController
from prune_explorer.measure import count_ops_and_params

from explorer_helpers import MSE_STATE, neg_mse, reference_outputs, same_as, snapshot

RATIOS = (0.3, 0.6)
X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
BATCH = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def make_resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    reference_outputs(model, BATCH)
    return model


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    MSE_STATE.update(calls=0, stop_after=None)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A controller at the start of the walk and a scan of every group (shared, read-only: tests that change the
    walk use their own controller and reuse this scan's cache)."""
    model = make_resnet()
    stages = []
    c = ExplorerController(model, X, progress=lambda stage, done, total: stages.append((stage, done, total)))
    snap = snapshot(model)
    s = SensitivityController(c, neg_mse, ratios=RATIOS, cache_dir=tmp_path_factory.mktemp("scan"))
    table = s.scan()
    return c, s, table, snap, stages


def fresh(scanned):
    """A new controller on a new resnet18 (same seed) with a sensitivity controller sharing the scan's cache."""
    model = make_resnet()
    c = ExplorerController(model, X)
    s = SensitivityController(c, neg_mse, ratios=RATIOS, cache_dir=scanned[1].cache_dir)
    return c, s


def test_scan_covers_the_groups_left_and_leaves_model_and_walk_unchanged(scanned):
    c, s, table, snap, stages = scanned
    assert same_as(c.model, snap) and c.decisions == [] and c.current.root_name == "conv1"
    assert table.keys() == s.remaining_keys() and len(table.keys()) >= 10
    assert tuple(table.ratios) == RATIOS
    assert "fc" not in table.keys()  # the explorer's ignored classifier is ignored by the scan too
    # named progress stage, ending at its total
    scan_stages = [st for st in stages if st[0] == SCAN_STAGE]
    assert scan_stages and scan_stages[-1][1] == scan_stages[-1][2] == table.stats["points"]
    assert "sensitivity scan" in c.message or table.stats["evaluated"] > 0
    # the metric is real: the baseline is the unpruned model (0 MSE), pruning more of a group never helps a lot
    assert table.baseline == 0.0
    assert all(r.metric <= 0 for r in table.rows)


def test_scan_matches_the_headless_scan(scanned):
    c, s, table, snap, stages = scanned
    model = make_resnet()
    headless = pe.sensitivity.scan(model, X, neg_mse, ratios=RATIOS, executor="serial", ignored_layers=["fc"],
                                   progress=False)
    assert headless == table


def test_heatmap_and_curve_data(scanned):
    c, s, table, snap, stages = scanned
    h = s.heatmap()
    assert h["groups"] == table.keys() and h["ratios"] == list(RATIOS) and h["current"] == "conv1"
    for g, row in zip(h["groups"], h["values"]):
        for r, v in zip(h["ratios"], row):
            m = next(x.metric for x in table.rows if x.group == g and x.ratio == r)
            assert v == pytest.approx(table.baseline - m)
    cur = s.curve()
    assert cur["key"] == "conv1" and cur["fraction"][0] == 0 and cur["metric"][0] == table.baseline
    assert cur["proposed_fraction"] == pytest.approx(len(c.current_idxs) / c.current.root_space.current_size)
    fig = s.heatmap_figure()
    assert list(fig.data[0].y) == table.keys()
    curve = s.curve_figure()
    assert [t.name for t in curve.data] == ["scan", "proposed"]
    assert curve.data[1].x[0] == pytest.approx(cur["proposed_fraction"])
    with pytest.raises(ExplorerError, match="not in the scan"):
        s.curve("fc")


def test_curve_marks_an_adjusted_selection():
    model = make_resnet()
    c = ExplorerController(model, X, pruning_ratio=0.5)
    s = SensitivityController(c, neg_mse, ratios=(0.5,))
    s.scan(groups=["conv1"])
    assert s.curve()["proposed_fraction"] == 0.5
    c.adjust(n=16)
    assert s.curve()["proposed_fraction"] == 16 / 64


def test_interrupted_scan_leaves_everything_and_resumes_from_the_cache(scanned, tmp_path):
    c, s = fresh(scanned)
    s._cache_dir = tmp_path  # a cache of its own: the interruption must be what fills it
    snap = snapshot(c.model)
    MSE_STATE.update(calls=0, stop_after=7)
    with pytest.raises(KeyboardInterrupt):
        s.scan()
    assert same_as(c.model, snap) and s.table is None and c.decisions == [] and c.current.root_name == "conv1"
    MSE_STATE.update(calls=0, stop_after=None)
    table = s.scan()
    assert table.stats["from_cache"] == 7 and table.stats["evaluated"] == table.stats["points"] - 7
    assert MSE_STATE["calls"] == table.stats["evaluated"]
    assert table == scanned[2]
    assert same_as(c.model, snap)


def test_scan_needs_a_metric_and_a_real_model():
    model = make_resnet()
    c = ExplorerController(model, X)
    s = SensitivityController(c)
    with pytest.raises(ExplorerError, match="needs a metric: pass eval_fn"):
        s.scan()
    with pytest.raises(ExplorerError, match="eval_fn must be a function"):
        s.set_eval_fn(3)
    with pytest.raises(ExplorerError, match="run a sensitivity scan first"):
        s.solve(0.5)
    s.set_eval_fn(neg_mse)
    with pytest.raises(ExplorerError, match="ratios .* out of range"):
        s.scan(ratios=(0.5, 1.0))
    assert s.table is None


def test_solve_review_accept_and_undo(scanned):
    c, s = fresh(scanned)
    s.scan()
    assert s.table.stats["evaluated"] == 0  # all from the shared cache
    snap = snapshot(c.model)
    plan = s.solve(0.5, kind="macs")
    assert plan.predicted["macs"] <= 0.5 * c.macs0 and plan.name in s.plans and s.plan is plan
    # reviewing: the group on show is pre-selected with the plan's count (through adjust: the card follows)
    assert len(c.current_idxs) == plan["conv1"].remove == s.planned_count()
    assert s.curve()["proposed_fraction"] == pytest.approx(plan["conv1"].remove / 64)
    while s.planned_count() == 0:  # groups the plan leaves alone are skipped, as the user would
        c.skip()
    key = s.current_key()
    assert 0 < len(c.current_idxs) == plan[key].remove
    snap = snapshot(c.model)
    first = c.accept()
    assert first.n_removed == plan[key].remove
    c.undo()  # undo works as always, and the group on show is pre-selected again
    assert same_as(c.model, snap) and s.current_key() == key and len(c.current_idxs) == plan[key].remove
    s.stop_review()  # back to the pruner's proposal (ratio 0.5)
    assert s.plan is None and len(c.current_idxs) == c.current.root_space.current_size // 2


def test_apply_plan_reaches_the_predicted_cost_and_undo_plan_restores(scanned):
    c, s = fresh(scanned)
    s.scan()
    snap = snapshot(c.model)
    plan = s.solve(speedup=2.0, kind="macs", review=False)
    decisions = s.apply_plan(plan)
    assert c.current is None and len(decisions) == len(c.decisions)
    macs, params = count_ops_and_params(c.model, X)
    assert macs == plan.predicted["macs"] <= 0.5 * c.macs0 and params == plan.predicted["params"]
    pruned = {d.key: d.n_removed for d in decisions if d.action == "accept"}
    assert pruned == {d.key: d.remove for d in plan if d.remove}
    s.undo_plan()
    assert same_as(c.model, snap) and c.decisions == [] and c.current.root_name == "conv1"
    with pytest.raises(ExplorerError, match="nothing to undo"):
        s.undo_plan()


def test_apply_plan_interrupted_is_all_or_nothing(scanned):
    c, s = fresh(scanned)
    c.accept()  # one decision before: it stays
    s.scan()
    plan = s.solve(0.6, kind="params")
    snap = snapshot(c.model)
    before = list(c.decisions)

    def progress(stage, done, total):
        if stage == APPLY_STAGE and done == 3:
            raise KeyboardInterrupt

    c.progress = progress
    with pytest.raises(KeyboardInterrupt):
        s.apply_plan(plan)
    c.progress = None
    assert same_as(c.model, snap) and c.decisions == before and s.applied == []
    assert len(c.current_idxs) == s.planned_count()  # still reviewing, at the same group


def test_budget_after_decisions_counts_what_was_pruned(scanned):
    c, s = fresh(scanned)
    c.accept()
    c.accept()
    done_keys = {d.key for d in c.decisions}
    s.scan()
    assert not done_keys & set(s.table.keys())
    assert s.table.base_macs < c.macs0
    plan = s.solve(0.5, kind="macs", review=False)  # half the *original* MACs
    s.apply_plan(plan)
    macs, _ = count_ops_and_params(c.model, X)
    assert macs <= 0.5 * c.macs0 and macs == plan.predicted["macs"]
    now = s.solve  # a target already met is refused with the figures
    s.undo_plan()
    with pytest.raises(ExplorerError, match="already met"):
        now(0.99, kind="macs")
    with pytest.raises(ExplorerError, match="target=1.5 must be a fraction"):
        s.solve(1.5)
    with pytest.raises(ExplorerError, match="kind must be one of"):
        s.solve(0.5, kind="flops")


def test_nothing_left_to_scan(scanned):
    model = make_resnet()
    c = ExplorerController(model, X)
    s = SensitivityController(c, neg_mse, ratios=(0.5,))
    c.accept_all_remaining()
    with pytest.raises(ExplorerError, match="nothing left to scan"):
        s.scan()
    assert math.isfinite(neg_mse(c.model))
