"""pe.sensitivity.scan: the table, exact restoration, executors, the cache and bad input."""

import copy
import json
import math
import os

import pytest
import torch

import prune_explorer as pe
from prune_explorer.plan import GroupDecision, PruningPlan
from prune_explorer.sensitivity import SensitivityError, SensitivityTable
from sens_helpers import (RATIOS, CheckingEval, Counting, InterruptAfter, NegMSE, ReturnsNaNWhenPruned, TrainModeEval,
                          assert_unchanged, make_tiny, returns_string, snapshot, state_of)

SCAN_OPTS = dict(ignored_layers=["fc"], round_to=4, max_pruning_ratio=0.75, progress=False)


# ---- the table -----------------------------------------------------------------------------------------------------
def test_table_has_one_row_per_group_and_ratio_with_the_pruners_counts(tiny, tiny_table):
    model = tiny[0]
    t = tiny_table
    assert t.keys() == ["conv1", "conv2", "conv3", "conv5"]
    assert len(t.rows) == len(t.keys()) * len(RATIOS)
    assert t.baseline == 0.0  # minus the MSE of the model to its own outputs
    pruner = pe.pruner.MagnitudePruner(copy.deepcopy(model), tiny[1], pe.importance.MagnitudeImportance(p=2),
                                       ignored_layers=[], round_to=4, max_pruning_ratio=0.75)
    for info in t.groups:
        c = info.channels
        min_keep = max(1, int(c * 0.25))
        for row in t.rows_of(info.key):
            want = c - int(c * (1 - row.ratio))
            # rounded down so that a multiple of 4 channels stays, and at least a quarter of them
            ok = [n for n in range(want + 1) if (c - n) % 4 == 0 and c - n >= min_keep]
            assert row.channels == max(ok)
            assert row.params_removed > 0 and row.macs_removed > 0
        metrics = [r.metric for r in t.rows_of(info.key)]
        assert metrics[-1] < t.baseline
    assert t.stats["executor"] == "serial" and t.stats["evaluated"] == t.stats["points"]


def test_rows_match_applying_the_same_single_group_plan(tiny, tiny_table):
    """Every row is what pruning that group alone gives: same parameters, MACs and metric."""
    model, x, batch, ref = tiny
    for row in tiny_table.rows[::4]:
        m = copy.deepcopy(model)
        plan = PruningPlan([GroupDecision(row.group, remove=row.channels)])
        pe.apply_plan(m, plan, example_inputs=x, ignored_layers=[m.fc], round_to=4, max_pruning_ratio=0.75)
        macs, params = pe.utils.count_ops_and_params(m, x)
        assert tiny_table.base_params - params == row.params_removed
        assert tiny_table.base_macs - macs == row.macs_removed
        assert NegMSE(batch, ref)(m) == row.metric


def test_pivot_curve_and_round_trips(tiny_table, tmp_path):
    t = tiny_table
    p = t.pivot("drop")
    assert p.groups == t.keys() and p.ratios == list(RATIOS)
    assert p.values[1][2] == pytest.approx(t.baseline - t.rows_of("conv2")[2].metric)
    assert t.pivot("fraction").values[0][1] == t.rows_of("conv1")[1].channels / 16
    c = t.curve("conv3")
    assert c["channels"][0] == 0 and c["metric"][0] == t.baseline and len(c["ratio"]) == len(RATIOS) + 1
    assert SensitivityTable.from_dict(json.loads(json.dumps(t.as_dict()))) == t
    path = tmp_path / "scan.json"
    t.save(path)
    assert SensitivityTable.load(path) == t
    assert [k for k, _ in t.most_sensitive(0.75)][0] in t.keys()
    assert "conv2" in repr(t)
    with pytest.raises(SensitivityError, match="pivot value"):
        t.pivot("accuracy")


def test_to_pandas(tiny_table):
    pd = pytest.importorskip("pandas")
    df = tiny_table.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == len(tiny_table.rows)
    assert set(df.columns) >= {"group", "ratio", "channels", "metric", "params_removed", "macs_removed", "drop"}


def test_to_pandas_without_pandas_says_how_to_fix(tiny_table, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(SensitivityError, match="pip install pandas"):
        tiny_table.to_pandas()


def test_groups_subset_by_key_or_module(tiny):
    model, x, batch, ref = tiny
    t = pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=(0.5,), groups=["conv3", model.conv1],
                            executor="serial", **SCAN_OPTS)
    assert t.keys() == ["conv1", "conv3"] and len(t.rows) == 2
    with pytest.raises(SensitivityError, match="did you mean 'conv3'"):
        pe.sensitivity.scan(model, x, NegMSE(batch, ref), groups=["conv33"], executor="serial", **SCAN_OPTS)


# ---- exact restoration -----------------------------------------------------------------------------------------------
def _group_layers(table):
    return [{name for name in g.layers} for g in table.groups]


def test_scan_restores_the_model_bit_exactly_after_every_evaluation(tiny, tiny_table):
    model, x, batch, ref = tiny
    snap = snapshot(model)
    check = CheckingEval(batch, ref, snap[0], _group_layers(tiny_table))
    t = pe.sensitivity.scan(model, x, check, ratios=RATIOS, executor="serial", **SCAN_OPTS)
    assert check.calls == t.stats["points"] > 10
    assert check.failures == []
    assert_unchanged(model, snap)
    assert t.rows == tiny_table.rows and t.baseline == tiny_table.baseline


def test_eval_fn_that_changes_the_model_in_place_is_undone_and_reported(tiny):
    """A careless eval_fn (train mode: BatchNorm statistics updated in place) cannot leak into later points."""
    model, x, batch, ref = tiny
    snap = snapshot(model)
    with pytest.warns(UserWarning, match="changed .* in place.*model.eval"):
        t1 = pe.sensitivity.scan(model, x, TrainModeEval(batch, ref), ratios=(0.5,), executor="serial", **SCAN_OPTS)
    assert_unchanged(model, snap)
    with pytest.warns(UserWarning):  # the same points in another order give the same metrics
        t2 = pe.sensitivity.scan(model, x, TrainModeEval(batch, ref), ratios=(0.5,), executor="serial",
                                 groups=list(reversed(t1.keys())), **SCAN_OPTS)
    assert sorted(r.metric for r in t1.rows) == sorted(r.metric for r in t2.rows)
    assert_unchanged(model, snap)


# ---- executors ---------------------------------------------------------------------------------------------------------
def test_local_processes_give_the_same_table_as_serial(tiny, tiny_table):
    model, x, batch, ref = tiny
    snap = snapshot(model)
    assert torch.get_num_threads() == 1  # as the workers: compare like with like
    serial = pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=RATIOS, executor="serial", **SCAN_OPTS)
    local = pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=RATIOS, executor="local", workers=2,
                                **SCAN_OPTS)
    assert local.stats["executor"] == "local" and local.stats["workers"] == 2
    assert local == serial
    assert_unchanged(model, snap)


@pytest.mark.slow  # spawned workers import torch afresh (several seconds)
def test_local_executor_object_and_spawned_workers(tiny):
    model, x, batch, ref = tiny
    ex = pe.sensitivity.LocalExecutor(workers=1, threads_per_worker=1, start_method="spawn")
    t = pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=(0.5,), groups=["conv1"], executor=ex, **SCAN_OPTS)
    assert len(t.rows) == 1 and t.stats["workers"] == 1


def test_unpicklable_eval_fn_is_refused_for_worker_processes(tiny):
    model, x, batch, ref = tiny
    snap = snapshot(model)
    with pytest.raises(SensitivityError, match="cannot be pickled.*executor='serial'"):
        pe.sensitivity.scan(model, x, lambda m: 1.0, ratios=(0.5,), executor="local", workers=2, **SCAN_OPTS)
    assert_unchanged(model, snap)


def test_error_in_a_worker_reaches_the_caller(tiny):
    model, x, batch, ref = tiny
    with pytest.raises(SensitivityError, match="eval_fn returned str 'high'"):  # from whichever point ends first
        pe.sensitivity.scan(model, x, returns_string, ratios=(0.5,), executor="local", workers=2, **SCAN_OPTS)


# ---- bad input -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratios, match", [
    ((0.0, 0.5), r"out of range"), ((0.5, 1.0), r"out of range"), ((-0.1,), r"out of range"),
    ((1.5,), r"out of range"), ((), r"non-empty"), (("a",), r"non-empty list of numbers"),
    ((float("nan"),), r"out of range"), ((True,), r"non-empty list of numbers"),
])
def test_ratios_out_of_range_are_refused(tiny, ratios, match):
    model, x, batch, ref = tiny
    snap = snapshot(model)
    with pytest.raises(SensitivityError, match=match):
        pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=ratios, executor="serial", **SCAN_OPTS)
    assert_unchanged(model, snap)


def test_bad_eval_fns_are_refused_and_the_model_is_unchanged(tiny):
    model, x, batch, ref = tiny
    snap = snapshot(model)
    with pytest.raises(SensitivityError, match="eval_fn must be callable"):
        pe.sensitivity.scan(model, x, 0.5, executor="serial", **SCAN_OPTS)
    with pytest.raises(SensitivityError, match="returned str 'high'.*one float"):
        pe.sensitivity.scan(model, x, returns_string, ratios=(0.5,), executor="serial", **SCAN_OPTS)
    with pytest.raises(SensitivityError, match="tensor of shape \\(2,\\)"):
        pe.sensitivity.scan(model, x, lambda m: torch.ones(2), ratios=(0.5,), executor="serial", **SCAN_OPTS)
    n_params = sum(p.numel() for p in model.parameters())
    with pytest.raises(SensitivityError, match=r"returned nan after removing \d+ root channels of group conv1"):
        pe.sensitivity.scan(model, x, ReturnsNaNWhenPruned(batch, ref, n_params), ratios=(0.5,), executor="serial",
                            **SCAN_OPTS)
    with pytest.raises(SensitivityError, match="eval_fn raised ZeroDivisionError"):
        pe.sensitivity.scan(model, x, lambda m: 1 / 0, ratios=(0.5,), executor="serial", **SCAN_OPTS)
    assert_unchanged(model, snap)


def test_other_bad_arguments(tiny):
    model, x, batch, ref = tiny
    ev = NegMSE(batch, ref)
    with pytest.raises(SensitivityError, match="executor must be"):
        pe.sensitivity.scan(model, x, ev, executor="threads", **SCAN_OPTS)
    with pytest.raises(SensitivityError, match="serial' runs one point"):
        pe.sensitivity.scan(model, x, ev, executor="serial", workers=3, **SCAN_OPTS)
    with pytest.raises(SensitivityError, match="workers=0"):
        pe.sensitivity.scan(model, x, ev, executor="local", workers=0, **SCAN_OPTS)
    with pytest.raises(SensitivityError, match="model must be an nn.Module"):
        pe.sensitivity.scan("resnet", x, ev, executor="serial")
    with pytest.raises(pe.plan.PlanError, match="unknown pruner option"):
        pe.sensitivity.scan(model, x, ev, executor="serial", pruner_options={"pruning_ratio": 0.5})


# ---- the cache ----------------------------------------------------------------------------------------------------------
def test_interrupted_scan_resumes_from_the_cache(tiny, tiny_table, tmp_path):
    model, x, batch, ref = tiny
    snap = snapshot(model)
    total = tiny_table.stats["points"]
    k = total // 2
    with pytest.raises(KeyboardInterrupt):
        pe.sensitivity.scan(model, x, InterruptAfter(batch, ref, k), ratios=RATIOS, executor="serial",
                            cache_dir=tmp_path, cache_key="tiny-negmse", **SCAN_OPTS)
    assert_unchanged(model, snap)
    (path,) = list(tmp_path.iterdir())
    assert len(path.read_text().splitlines()) == 1 + k  # header + the finished points
    counting = Counting(batch, ref)
    t = pe.sensitivity.scan(model, x, counting, ratios=RATIOS, executor="serial", cache_dir=tmp_path,
                            cache_key="tiny-negmse", **SCAN_OPTS)
    assert counting.calls == total - k
    assert t.stats["from_cache"] == k and t.stats["evaluated"] == total - k
    assert t.rows == tiny_table.rows and t.baseline == tiny_table.baseline
    # a third run evaluates nothing; more ratios evaluate only the new points
    again = Counting(batch, ref)
    pe.sensitivity.scan(model, x, again, ratios=RATIOS, executor="serial", cache_dir=tmp_path,
                        cache_key="tiny-negmse", **SCAN_OPTS)
    assert again.calls == 0
    more = Counting(batch, ref)
    t2 = pe.sensitivity.scan(model, x, more, ratios=RATIOS + (0.1,), executor="serial", cache_dir=tmp_path,
                             cache_key="tiny-negmse", **SCAN_OPTS)
    assert 0 < more.calls <= len(t2.keys())


def test_interrupt_in_a_worker_process_stops_the_scan_and_keeps_finished_points(tiny, tiny_table, tmp_path):
    model, x, batch, ref = tiny
    snap = snapshot(model)
    k = 5
    with pytest.raises(KeyboardInterrupt):
        pe.sensitivity.scan(model, x, InterruptAfter(batch, ref, k), ratios=RATIOS,
                            executor=pe.sensitivity.LocalExecutor(workers=1, threads_per_worker=1),
                            cache_dir=tmp_path, cache_key="tiny-negmse", **SCAN_OPTS)
    assert_unchanged(model, snap)
    counting = Counting(batch, ref)
    t = pe.sensitivity.scan(model, x, counting, ratios=RATIOS, executor="serial", cache_dir=tmp_path,
                            cache_key="tiny-negmse", **SCAN_OPTS)
    assert counting.calls == tiny_table.stats["points"] - k
    assert t.rows == tiny_table.rows


def test_cache_survives_a_line_cut_short_and_ignores_other_weights(tiny, tmp_path):
    model, x, batch, ref = tiny
    opts = dict(ratios=(0.5,), executor="serial", cache_dir=tmp_path, **SCAN_OPTS)
    t = pe.sensitivity.scan(model, x, NegMSE(batch, ref), cache_key="k", **opts)
    (path,) = list(tmp_path.iterdir())
    lines = path.read_text().splitlines()
    cut = lines[-1][: len(lines[-1]) // 2]
    path.write_text("\n".join(lines[:-1] + [cut]))  # the last point's line cut short, as by a kill
    c = Counting(batch, ref)
    t2 = pe.sensitivity.scan(model, x, c, cache_key="k", **opts)
    assert c.calls == 1 and t2.rows == t.rows
    after = path.read_text().splitlines()
    assert after[:-1] == lines[:-1] + [cut]  # the cut line stays on its own line and is ignored
    json.loads(after[-1])
    # without a cache_key, eval_fn's identity keys the cache: another class, another file
    c = Counting(batch, ref)
    pe.sensitivity.scan(model, x, c, **opts)
    assert c.calls == t.stats["points"] and len(list(tmp_path.iterdir())) == 2
    c = Counting(batch, ref)
    pe.sensitivity.scan(model, x, c, **opts)
    assert c.calls == 0
    # same architecture, other weights: nothing is reused
    c = Counting(batch, ref)
    pe.sensitivity.scan(make_tiny(seed=5), x, c, **opts)
    assert c.calls == t.stats["points"]


def test_progress_bar_is_shown(tiny, capsys):
    model, x, batch, ref = tiny
    pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=(0.5,), groups=["conv1"], executor="serial",
                        ignored_layers=["fc"], progress=True)
    assert "sensitivity scan (serial)" in capsys.readouterr().err


def test_progress_callback_counts_every_point(tiny, tiny_table):
    model, x, batch, ref = tiny
    seen = []
    pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=RATIOS, executor="serial",
                        progress=lambda done, total: seen.append((done, total)),
                        **{k: v for k, v in SCAN_OPTS.items() if k != "progress"})
    n = tiny_table.stats["points"]
    assert seen == [(i, n) for i in range(n + 1)]
    with pytest.raises(SensitivityError, match="progress must be"):
        pe.sensitivity.scan(model, x, NegMSE(batch, ref), executor="serial", progress="yes")
