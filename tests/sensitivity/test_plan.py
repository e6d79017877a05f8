"""pe.PruningPlan, pe.apply_plan and walking a plan through a pruner."""

import copy
import json

import pytest
import torch
import torchvision

import prune_explorer as pe
from prune_explorer.plan import (GroupDecision, PlanError, PruningPlan, group_key, options_from_names,
                                 options_to_names, plan_proposals, prune_with_plan)
from sens_helpers import assert_unchanged, make_tiny, snapshot


def _plan(**kw):
    return PruningPlan([GroupDecision("conv1", channels=16, remove=8), GroupDecision("conv3", channels=32, remove=12)],
                       name="by hand", **kw)


def test_plan_json_round_trip_and_access(tmp_path):
    plan = _plan(target=0.5, kind="macs", importance="MagnitudeImportance(p=2)",
                 options={"ignored_layers": ["fc"], "round_to": 4}, predicted={"params": 123},
                 metadata={"note": "test"})
    assert PruningPlan.from_json(plan.to_json()) == plan
    plan.save(tmp_path / "p.json")
    loaded = PruningPlan.load(tmp_path / "p.json")
    assert loaded == plan and loaded.name == "by hand" and loaded.options["round_to"] == 4
    assert json.loads(plan.to_json())["format"] == pe.plan.FORMAT
    assert plan.keys() == ["conv1", "conv3"] and "conv3" in plan and plan["conv3"].keep == 20
    assert plan["conv1"].fraction == 0.5 and plan.widths() == {"conv1": 8, "conv3": 20}
    assert "conv3" in repr(plan) and plan.renamed("x").name == "x"
    with pytest.raises(KeyError, match="no decision for 'conv2'"):
        plan["conv2"]


def test_decision_keys_sides_and_kinds():
    d = GroupDecision("blk.q_proj:attention-heads", remove=2)
    assert (d.root, d.kind, d.side) == ("blk.q_proj", "attention-heads", "out")
    assert GroupDecision("emb:in", ratio=0.5).side == "in"
    r = GroupDecision("conv1", ratio=0.3)
    assert r.count(16) == 16 - int(16 * 0.7) and r.keep is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(key="conv1", remove=-1), "int >= 0"), (dict(key="conv1", remove=2.5), "int >= 0"),
    (dict(key="conv1", ratio=1.0), r"in \[0, 1\)"), (dict(key="conv1"), "give remove="),
    (dict(key="conv1", channels=8, remove=8), "would leave none"), (dict(key="", remove=1), "needs a key"),
])
def test_bad_decisions_are_refused(kwargs, match):
    with pytest.raises(PlanError, match=match):
        GroupDecision(**kwargs)


def test_bad_plans_are_refused():
    with pytest.raises(PlanError, match="already has a decision"):
        PruningPlan([GroupDecision("a", remove=1), GroupDecision("a", remove=2)])
    with pytest.raises(PlanError, match="not a pruning plan"):
        PruningPlan.from_dict({"format": "other"})
    with pytest.raises(PlanError, match="JSON cannot store"):
        PruningPlan([GroupDecision("a", remove=1)], metadata={"model": object()}).to_json()


def test_apply_plan_removes_exactly_the_planned_counts(tiny):
    model, x = copy.deepcopy(tiny[0]), tiny[1]
    out = pe.apply_plan(model, _plan(), example_inputs=x)
    assert out is model
    assert model.conv1.out_channels == 8 and model.bn1.num_features == 8 and model.conv2.in_channels == 8
    assert model.conv3.out_channels == 20 and model.conv4.in_channels == 20
    assert model.conv2.out_channels == 24  # not in the plan
    model(x)


def test_apply_plan_picks_the_lowest_importance_channels(tiny):
    model, x = copy.deepcopy(tiny[0]), tiny[1]
    imp = pe.importance.MagnitudeImportance(p=2)
    pruner = pe.pruner.BasePruner(copy.deepcopy(model), x, imp)
    group = next(g for g in pruner.get_all_groups() if group_key(g) == "conv1")
    scores = imp(group)
    keep = sorted(torch.argsort(scores, descending=True)[:8].tolist())
    w = model.conv1.weight.detach().clone()
    pe.apply_plan(model, PruningPlan([GroupDecision("conv1", remove=8)]), example_inputs=x, importance=imp)
    assert torch.equal(model.conv1.weight, w[keep])


def test_ratio_decisions_follow_the_pruners_rule(tiny):
    model, x = copy.deepcopy(tiny[0]), tiny[1]
    pe.apply_plan(model, PruningPlan([GroupDecision("conv3", ratio=0.3)]), example_inputs=x, round_to=4)
    # 32 - int(32 * 0.7) = 10, rounded down so that a multiple of 4 stays: 8
    assert model.conv3.out_channels == 24


def test_plans_that_do_not_fit_leave_the_model_unchanged(tiny):
    model, x = copy.deepcopy(tiny[0]), tiny[1]
    snap = snapshot(model)
    with pytest.raises(PlanError, match="conv33.*did you mean 'conv3'"):
        pe.apply_plan(model, PruningPlan([GroupDecision("conv33", remove=4)]), example_inputs=x)
    assert_unchanged(model, snap)
    # the first group fits, the second cannot lose 6 channels with round_to=4: the first is undone
    bad = PruningPlan([GroupDecision("conv1", remove=8), GroupDecision("conv3", remove=6)])
    with pytest.raises(PlanError, match="conv3 can lose 4 root channels, not the planned 6.*round_to=4"):
        pe.apply_plan(model, bad, example_inputs=x, round_to=4)
    assert_unchanged(model, snap)
    # a predicted parameter count the result does not reach: undone too
    wrong = _plan(base={"params": sum(p.numel() for p in model.parameters())}, predicted={"params": 1})
    with pytest.raises(PlanError, match="predicted 1 parameters"):
        pe.apply_plan(model, wrong, example_inputs=x)
    assert_unchanged(model, snap)
    with pytest.raises(PlanError, match="needs example_inputs"):
        pe.apply_plan(model, _plan())
    with pytest.raises(PlanError, match="must be a PruningPlan"):
        pe.apply_plan(model, {"groups": []}, example_inputs=x)
    # strict=False rounds down and skips unknown groups
    pe.apply_plan(model, PruningPlan([GroupDecision("conv3", remove=6), GroupDecision("nope", remove=1)]),
                  example_inputs=x, round_to=4, strict=False)
    assert model.conv3.out_channels == 28


def test_plan_options_are_used_and_can_be_overridden(tiny):
    model, x = copy.deepcopy(tiny[0]), tiny[1]
    plan = PruningPlan([GroupDecision("conv3", remove=6)], options={"round_to": 4})
    with pytest.raises(PlanError, match="not the planned 6"):
        pe.apply_plan(model, plan, example_inputs=x)
    pe.apply_plan(model, plan, example_inputs=x, round_to=None)
    assert model.conv3.out_channels == 26


def test_plan_proposals_walk_the_pruners_groups_in_order(tiny):
    model, x = copy.deepcopy(tiny[0]), tiny[1]
    pruner = pe.pruner.BasePruner(model, x, pe.importance.MagnitudeImportance(p=2), ignored_layers=[model.fc])
    plan = PruningPlan([GroupDecision("conv5", remove=8), GroupDecision("conv1", remove=4),
                        GroupDecision("conv2", remove=8)])
    walked = []
    for prop in plan_proposals(pruner, plan):
        walked.append((prop.key, prop.n, prop.exact))
        if prop.key != "conv2":  # skip conv2, accept the others
            assert prop.accept() is not None
    assert walked == [("conv1", 4, True), ("conv2", 8, True), ("conv5", 8, True)]
    assert model.conv1.out_channels == 12 and model.conv2.out_channels == 24 and model.conv5.out_channels == 32
    assert [h["root"] for h in pruner.history] == ["conv1", "conv5"]


def test_prune_with_plan_returns_undoable_records(tiny):
    model, x = copy.deepcopy(tiny[0]), tiny[1]
    snap = snapshot(model)
    pruner = pe.pruner.BasePruner(model, x, pe.importance.MagnitudeImportance(p=2))
    pruner.DG.undo_depth = 5
    records = prune_with_plan(pruner, _plan())
    # the plan's two independent groups are cut together: one record, one history entry per group
    assert [len(rec.entries()) for rec in records] == [2] and model.conv3.out_channels == 20
    for rec in reversed(records):
        rec.undo()
    assert_unchanged(model, snap)


def test_options_by_name_round_trip(tiny):
    model = tiny[0]
    names = options_to_names(model, ignored_layers=[model.fc, model.conv5.weight], round_to=8,
                             num_heads={model.conv3: 4}, unwrapped_parameters=[(model.conv1.weight, 0)])
    assert names == {"ignored_layers": ["fc", "conv5.weight"], "round_to": 8, "num_heads": {"conv3": 4},
                     "unwrapped_parameters": [("conv1.weight", 0)]}
    back = options_from_names(model, names)
    assert back["ignored_layers"][0] is model.fc and back["ignored_layers"][1] is model.conv5.weight
    assert back["num_heads"] == {model.conv3: 4}
    with pytest.raises(PlanError, match="not a submodule"):
        options_to_names(model, ignored_layers=[torch.nn.Linear(2, 2)])
    with pytest.raises(PlanError, match="no layer named 'head'"):
        options_from_names(model, {"ignored_layers": ["head"]})


def test_plan_on_a_torchvision_model_reaches_its_predicted_parameter_count():
    model = torchvision.models.resnet18()
    x = torch.randn(1, 3, 32, 32)
    plan = pe.sensitivity.uniform_plan(model, x, ratio=0.5, ignored_layers=[model.fc], round_to=8)
    assert plan.predicted["params"] < plan.base["params"]
    pe.apply_plan(model, plan, example_inputs=x)
    assert pe.utils.count_ops_and_params(model, x)[1] == plan.predicted["params"]
    assert model.layer1[0].conv1.out_channels == 32
