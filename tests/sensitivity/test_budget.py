"""pe.sensitivity.solve_budget / uniform_plan: targets met within one group's granularity, guards never violated."""

import copy

import pytest
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.plan import GroupDecision, PruningPlan
from prune_explorer.sensitivity import SensitivityError, SensitivityTable
from prune_explorer.sensitivity.budget import greedy_path
from sens_helpers import assert_unchanged, snapshot

ROUND_TO, MAX_RATIO = 4, 0.75


def _cost(model, x, kind):
    macs, params = pe.utils.count_ops_and_params(model, x)
    return {"params": params, "macs": macs}[kind]


def _applied(model, x, plan):
    m = copy.deepcopy(model)
    pe.apply_plan(m, plan, example_inputs=x)
    return m


@pytest.fixture(scope="module")
def granularity(tiny, tiny_table):
    """{kind: the most one feasible step (round_to channels) of one group alone saves}, measured on the model."""
    model, x = tiny[0], tiny[1]
    out = {}
    for kind in ("params", "macs"):
        base = _cost(model, x, kind)
        steps = []
        for key in tiny_table.keys():
            m = _applied(model, x, PruningPlan([GroupDecision(key, remove=ROUND_TO)], options=dict(
                ignored_layers=["fc"], round_to=ROUND_TO, max_pruning_ratio=MAX_RATIO)))
            steps.append(base - _cost(m, x, kind))
        out[kind] = max(steps)
    return out


def _check_guards(plan, model):
    for d in plan:
        kept = d.channels - d.remove
        assert kept >= max(1, int(d.channels * (1 - MAX_RATIO))), d  # max_pruning_ratio
        assert kept % ROUND_TO == 0, d                                 # round_to
    for name, m in model.named_modules():                              # no layer is left without channels
        if isinstance(m, nn.Conv2d):
            assert m.out_channels >= 1 and m.in_channels >= 1, name
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_features >= 1, name


@pytest.mark.parametrize("kind, target", [("params", 0.7), ("params", 0.5), ("params", 0.2), ("macs", 0.6),
                                          ("macs", 0.3), ("macs", 0.1)])
def test_solver_meets_the_target_within_one_groups_granularity(tiny, tiny_table, granularity, kind, target):
    model, x = tiny[0], tiny[1]
    snap = snapshot(model)
    plan = pe.sensitivity.solve_budget(tiny_table, target=target, kind=kind)
    assert_unchanged(model, snap)  # plans are measured on a copy
    assert plan.keys() == tiny_table.keys() and plan.kind == kind and plan.target == target
    pruned = _applied(model, x, plan)
    base = _cost(model, x, kind)
    got = _cost(pruned, x, kind)
    budget = target * base
    assert got <= budget
    assert budget - got <= granularity[kind]
    macs, params = pe.utils.count_ops_and_params(pruned, x)
    assert plan.predicted["params"] == params and plan.predicted["macs"] == macs  # exact, not estimated
    _check_guards(plan, pruned)
    pruned(x)  # still runs


def test_predicted_metric_is_the_baseline_minus_the_scanned_drops(tiny_table):
    plan = pe.sensitivity.solve_budget(tiny_table, target=0.5, kind="params")
    drops = 0.0
    for d in plan:
        if d.remove:
            row = next(r for r in tiny_table.rows_of(d.key) if r.channels == d.remove)
            drops += tiny_table.baseline - row.metric
            assert d.extra["predicted_drop"] == pytest.approx(tiny_table.baseline - row.metric)
    assert plan.predicted["metric"] == pytest.approx(tiny_table.baseline - drops)


def test_speedup_is_the_inverse_target(tiny_table):
    a = pe.sensitivity.solve_budget(tiny_table, target=0.5, kind="macs")
    b = pe.sensitivity.solve_budget(tiny_table, speedup=2.0, kind="macs")
    assert [d.remove for d in a] == [d.remove for d in b]


def test_tighter_max_pruning_ratio_is_respected(tiny, tiny_table):
    plan = pe.sensitivity.solve_budget(tiny_table, target=0.4, kind="params", max_pruning_ratio=0.5)
    for d in plan:
        assert d.channels - d.remove >= d.channels * 0.5
    assert plan.options["max_pruning_ratio"] == 0.5
    pruned = _applied(tiny[0], tiny[1], plan)
    assert _cost(pruned, tiny[1], "params") <= 0.4 * tiny_table.base_params


def test_unreachable_and_bad_targets_are_refused(tiny_table):
    with pytest.raises(SensitivityError, match="cannot be met.*keeps 0.0"):
        pe.sensitivity.solve_budget(tiny_table, target=0.01, kind="params")
    for bad in (0, 1, 1.5, -0.2, float("nan"), "half", True):
        with pytest.raises(SensitivityError, match="fraction of the original cost to keep"):
            pe.sensitivity.solve_budget(tiny_table, target=bad)
    with pytest.raises(SensitivityError, match="exactly one of"):
        pe.sensitivity.solve_budget(tiny_table, target=0.5, speedup=2.0)
    with pytest.raises(SensitivityError, match="speedup=0.5 must be a number > 1"):
        pe.sensitivity.solve_budget(tiny_table, speedup=0.5)
    with pytest.raises(SensitivityError, match="kind must be one of"):
        pe.sensitivity.solve_budget(tiny_table, target=0.5, kind="flops")
    with pytest.raises(SensitivityError, match="must be a SensitivityTable"):
        pe.sensitivity.solve_budget({"rows": []}, target=0.5)


def test_latency_target_with_a_latency_function(tiny, tiny_table):
    """kind="latency" measures whole plans with the latency function (here: a deterministic MAC-based stand-in)."""
    x = tiny[1]
    calls = []

    def latency(model):
        calls.append(1)
        return pe.utils.count_macs(model, x) * 1e-9

    plan = pe.sensitivity.solve_budget(tiny_table, target=0.5, kind="latency", latency_fn=latency)
    assert calls and plan.predicted["latency"] <= 0.5 * plan.base["latency"]
    assert plan.base["latency"] == pytest.approx(tiny_table.base_macs * 1e-9)


def test_table_from_a_file_needs_the_model_and_refuses_a_pruned_one(tiny, tiny_table, tmp_path):
    model, x = tiny[0], tiny[1]
    tiny_table.save(tmp_path / "t.json")
    loaded = SensitivityTable.load(tmp_path / "t.json")
    with pytest.raises(SensitivityError, match="pass model= and example_inputs="):
        pe.sensitivity.solve_budget(loaded, target=0.5)
    plan = pe.sensitivity.solve_budget(loaded, target=0.5, model=model, example_inputs=x,
                                       importance=pe.importance.MagnitudeImportance(p=2))
    assert plan == pe.sensitivity.solve_budget(tiny_table, target=0.5).renamed(plan.name)
    pruned = _applied(model, x, plan)
    with pytest.raises(SensitivityError, match="architecture differs"):
        pe.sensitivity.solve_budget(loaded, target=0.5, model=pruned, example_inputs=x)


def test_uniform_plan_is_the_smallest_common_ratio_meeting_the_target(tiny, tiny_table):
    model, x = tiny[0], tiny[1]
    plan = pe.sensitivity.uniform_plan(table=tiny_table, target=0.5, kind="macs")
    r = plan.source["ratio"]
    assert plan.name == f"uniform {r:.3g}"
    pruner = pe.pruner.BasePruner(copy.deepcopy(model), x, pe.importance.MagnitudeImportance(p=2),
                                  ignored_layers=[], round_to=ROUND_TO, max_pruning_ratio=MAX_RATIO)
    for d in plan:  # each group: the pruner's own count for that ratio
        want = d.channels - int(d.channels * (1 - r))
        ok = [n for n in range(want + 1) if (d.channels - n) % ROUND_TO == 0
              and d.channels - n >= max(1, int(d.channels * (1 - MAX_RATIO)))]
        assert d.remove == max(ok)
    pruned = _applied(model, x, plan)
    assert _cost(pruned, x, "macs") <= 0.5 * tiny_table.base_macs
    smaller = pe.sensitivity.uniform_plan(table=tiny_table, ratio=r - 2e-4)
    assert _cost(_applied(model, x, smaller), x, "macs") > 0.5 * tiny_table.base_macs
    same = pe.sensitivity.uniform_plan(model, x, ratio=r, ignored_layers=[model.fc], round_to=ROUND_TO,
                                       max_pruning_ratio=MAX_RATIO)
    assert [d.remove for d in same] == [d.remove for d in plan]
    with pytest.raises(SensitivityError, match="either ratio="):
        pe.sensitivity.uniform_plan(model, x)


def test_greedy_path_follows_the_lower_convex_hull():
    # group a: its first point is not worth it on its own (0.5 lost for 10), the second is (0.6 for 30)
    curves = {"a": [(0, 0.0, 0), (4, 0.5, 10), (8, 0.6, 30)], "b": [(0, 0.0, 0), (4, 0.3, 10), (8, 1.0, 20)]}
    path = greedy_path(curves)
    assert [(m.key, m.n_from, m.n_to) for m in path] == [("a", 0, 8), ("b", 0, 4), ("b", 4, 8)]
    assert [m.efficiency for m in path] == pytest.approx([0.02, 0.03, 0.07])
    # a point where pruning helps (negative drop) comes first
    path = greedy_path({"a": [(0, 0.0, 0), (2, -0.1, 5)], "b": [(0, 0.0, 0), (2, 0.0, 50)]})
    assert path[0].key == "a"
