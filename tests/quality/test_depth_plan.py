"""Depth decisions in plans and budgets: a plan holds depth groups beside width groups (``"<block>:depth"``), its
costs count a removed block, it applies and undoes exactly, round-trips through JSON, and a sensitivity scan +
budget with ``prune_depth`` can choose blocks (torchvision ResNet-18, random weights)."""

import pytest
import torch
import torch.nn as nn
import torchvision

import prune_explorer as pe
from prune_explorer.plan import GroupDecision, PlanError, PruningPlan
from prune_explorer.sensitivity.costs import PlanCostModel


def _model():
    return torchvision.models.resnet18(num_classes=10).eval()


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_plan_costs_count_a_removed_block_and_apply_undo_exactly(tmp_path):
    x = torch.randn(1, 3, 32, 32)
    m = _model()
    block = sum(p.numel() for p in m.layer3[1].parameters())
    cm = PlanCostModel(m, x, options={"prune_depth": True})
    assert "layer3.1:depth" in cm.keys and cm.channels["layer3.1:depth"] == 1
    depth_only = cm.measure({"layer3.1:depth": 1})
    assert depth_only["params"] == cm.base["params"] - block
    assert depth_only["macs"] < cm.base["macs"]
    both = cm.measure({"layer3.1:depth": 1, "layer2.0.conv1": 64})
    plan = cm.plan({"layer3.1:depth": 1, "layer2.0.conv1": 64}, name="width+depth")
    assert [d.kind for d in plan] == ["channels", "depth"] or [d.kind for d in plan] == ["depth", "channels"]
    plan.save(tmp_path / "p.json")
    plan = PruningPlan.load(tmp_path / "p.json")
    # applied on a fresh copy: the same parameter count as costed, then undone exactly through its pruner
    fresh = _model()
    fresh.load_state_dict(m.state_dict())
    ref = fresh(x)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    p = pe.pruner.BasePruner(fresh, x, pe.importance.MagnitudeImportance(p=2), prune_depth=True)
    p.DG.undo_depth = 100
    pe.apply_plan(fresh, plan, pruner=p)
    assert _params(fresh) == both["params"] and isinstance(fresh.layer3[1], nn.Identity)
    assert fresh(x).shape == ref.shape
    while p.DG.history:
        p.DG.undo()
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items()) and torch.equal(fresh(x), ref)
    # without a pruner: apply_plan builds one with the depth groups
    other = _model()
    pe.apply_plan(other, plan, example_inputs=x)
    assert _params(other) == both["params"]


def test_depth_decision_checks():
    assert GroupDecision("layer1.0:depth", channels=1, remove=1).kind == "depth"
    with pytest.raises(PlanError, match="depth group removes its block"):
        GroupDecision("layer1.0:depth", channels=1, remove=2)


def test_scan_and_budget_can_choose_blocks():
    x = torch.randn(4, 3, 32, 32)
    m = _model()
    with torch.no_grad():
        ref = m(x)

    def eval_fn(model):
        with torch.no_grad():
            return -float((model(x) - ref).pow(2).mean())

    table = pe.sensitivity.scan(m, x, eval_fn, ratios=(0.5,), executor="serial", progress=False,
                                pruner_options={"prune_depth": True})
    keys = [g.key for g in table.groups]
    assert sum(k.endswith(":depth") for k in keys) == 5
    plan = pe.sensitivity.solve_budget(table, target=0.5, kind="params")
    assert plan.options.get("prune_depth") is True
    fresh = _model()
    fresh.load_state_dict(m.state_dict())
    pe.apply_plan(fresh, plan, example_inputs=x)
    assert _params(fresh) == plan.predicted["params"] <= 0.5 * _params(m)


def test_uniform_plan_removes_the_ratio_of_blocks_lowest_influence_first():
    x = torch.randn(2, 3, 32, 32)
    m = _model()
    plan = pe.sensitivity.uniform_plan(m, x, ratio=0.4, pruner_options={"prune_depth": True})
    removed = [d.root for d in plan if d.kind == "depth" and d.remove]
    p = pe.pruner.BasePruner(_model(), x, pe.importance.MagnitudeImportance(), prune_depth=True)
    p.model.load_state_dict(m.state_dict())
    s = p.depth.scores()
    lowest = sorted(range(5), key=lambda k: (float(s[k]), p.depth.blocks[k].name))[:2]
    assert sorted(removed) == sorted(p.depth.blocks[k].name for k in lowest)
    fresh = _model()
    fresh.load_state_dict(m.state_dict())
    pe.apply_plan(fresh, plan, example_inputs=x)
    assert _params(fresh) == plan.predicted["params"]
    assert sum(isinstance(b, nn.Identity) for layer in (fresh.layer1, fresh.layer2, fresh.layer3, fresh.layer4)
               for b in layer) == 2
    met = pe.sensitivity.uniform_plan(m, x, target=0.5, kind="params", pruner_options={"prune_depth": True})
    assert met.predicted["params"] <= 0.5 * _params(m)
