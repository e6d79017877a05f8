"""Plans made on a meta-device model (shapes, no weights) and applied to the same architecture with real weights:
the counts come back exactly, the importance ranks the real weights, and weight-based importance on meta weights is
refused with a message that says what to do."""

import copy

import pytest
import torch
import torch.nn as nn
import torchvision

import prune_explorer as pe
from prune_explorer.explorer import ExplorerController, ExplorerError
from prune_explorer.plan import PlanError, causal_lm_inputs, check_importance, is_meta_model, needs_weights
from prune_explorer.sensitivity import SensitivityError

X_SHAPE = (1, 3, 32, 32)


def _resnet(device: str) -> nn.Module:
    torch.manual_seed(0)
    with torch.device(device):
        return torchvision.models.resnet18().eval()


@pytest.fixture(scope="module")
def meta_resnet():
    return _resnet("meta"), torch.randn(X_SHAPE, device="meta")


@pytest.fixture(scope="module")
def meta_uniform(meta_resnet):
    """A uniform 0.5 plan made on the meta ResNet-18 (classifier ignored, round_to=8)."""
    model, x = meta_resnet
    return pe.sensitivity.uniform_plan(model, x, ratio=0.5, ignored_layers=[model.fc], round_to=8)


def _widths(model) -> dict:
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def test_meta_detection_and_weight_free_importance():
    real = nn.Linear(3, 4)
    with torch.device("meta"):
        meta = nn.Linear(3, 4)
    assert is_meta_model(meta) and not is_meta_model(real)
    assert not needs_weights(pe.importance.RandomImportance())
    assert needs_weights(pe.importance.MagnitudeImportance(p=2)) and needs_weights(pe.importance.TaylorImportance())
    check_importance(real, pe.importance.MagnitudeImportance(p=2))  # real weights: fine
    check_importance(meta, pe.importance.RandomImportance())
    with pytest.raises(PlanError, match=r"meta device.*RandomImportance.*apply_plan"):
        check_importance(meta, pe.importance.TaylorImportance())


def test_a_plan_made_on_meta_records_counts_and_no_importance(meta_resnet, meta_uniform):
    model, _ = meta_resnet
    plan = meta_uniform
    assert plan.importance is None and plan.source["planned_on"] == "meta"
    assert plan.base["params"] == sum(p.numel() for p in model.parameters())
    assert plan.predicted["params"] < 0.4 * plan.base["params"]
    assert all(d.remove is not None and d.channels is not None for d in plan)
    assert is_meta_model(model)  # planning worked on a copy: the meta model is as it was
    assert model.layer1[0].conv1.out_channels == 64


def test_meta_plan_applied_to_real_weights_reaches_the_predicted_count(meta_uniform):
    plan = pe.PruningPlan.from_json(meta_uniform.to_json())
    real = _resnet("cpu").eval()
    x = torch.randn(X_SHAPE)
    pe.apply_plan(real, plan, example_inputs=x, importance=pe.importance.MagnitudeImportance(p=2))
    assert sum(p.numel() for p in real.parameters()) == plan.predicted["params"]
    kept = {d.root: d.keep for d in plan}
    assert all(_widths(real)[name] == keep for name, keep in kept.items() if name in _widths(real))
    assert real(x).shape == (1, 1000)


def test_meta_plan_ranks_the_real_weights_like_the_pruner(meta_uniform):
    """Applied with MagnitudeImportance, the meta plan removes the very channels MagnitudePruner removes at 0.5."""
    x = torch.randn(X_SHAPE)
    by_plan, by_pruner = _resnet("cpu").eval(), _resnet("cpu").eval()
    pe.apply_plan(by_plan, meta_uniform, example_inputs=x, importance=pe.importance.MagnitudeImportance(p=2))
    pe.pruner.MagnitudePruner(by_pruner, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                              ignored_layers=[by_pruner.fc], round_to=8).step()
    a, b = by_plan.state_dict(), by_pruner.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weight_based_importance_on_meta_is_refused_with_the_way_out(meta_resnet):
    model, x = meta_resnet
    with pytest.raises(SensitivityError, match=r"MagnitudeImportance ranks channels by the values.*RandomImportance"):
        pe.sensitivity.uniform_plan(model, x, ratio=0.5, importance=pe.importance.MagnitudeImportance(p=2))
    with pytest.raises(PlanError, match="meta device"):
        pe.apply_plan(model, pe.PruningPlan([pe.plan.GroupDecision("conv1", remove=8)]), example_inputs=x,
                      importance=pe.importance.LAMPImportance())
    with pytest.raises(ExplorerError, match=r"meta device.*RandomImportance.*export_plan"):
        ExplorerController(model, x, importance=pe.importance.MagnitudeImportance(p=2))
    with pytest.raises(SensitivityError, match="no latency"):
        pe.sensitivity.uniform_plan(model, x, target=0.5, kind="latency")
    assert model.conv1.out_channels == 64 and is_meta_model(model)


def test_explorer_on_meta_exports_a_plan_the_real_model_reproduces(tmp_path):
    meta, x_meta = _resnet("meta"), torch.randn(X_SHAPE, device="meta")
    c = ExplorerController(meta, x_meta, pruning_ratio=0.5, round_to=4)
    assert isinstance(c.importance, pe.importance.RandomImportance)
    assert "meta device" in c.message and "export_plan" in c.message
    c.adjust(n=c.allowed_counts()[1])  # a hand-chosen count for the first group
    first = c.accept()
    c.skip()
    c.accept_all_remaining()
    exported = c.export_plan(tmp_path / "plan.json", name="meta walk")
    plan = pe.PruningPlan.load(tmp_path / "plan.json")
    assert plan == exported and plan.name == "meta walk"
    assert plan.options == {"ignored_layers": ["fc"], "round_to": 4}
    assert plan.predicted["params"] == c.figures()["params_now"] and plan.base["params"] == c.params0
    assert plan[first.key].remove == first.n_removed and len(plan) == sum(d.action == "accept" for d in c.decisions)
    assert plan.importance is None and plan.source["planned_on"] == "meta"

    real = _resnet("cpu").eval()
    x = torch.randn(X_SHAPE)
    pe.apply_plan(real, plan, example_inputs=x, importance=pe.importance.MagnitudeImportance(p=2))
    assert sum(p.numel() for p in real.parameters()) == plan.predicted["params"]
    assert _widths(real) == _widths(meta)
    real(x)


def test_explorer_plan_on_real_weights_records_the_importance(tmp_path):
    model = torchvision.models.resnet18()
    x = torch.randn(X_SHAPE)
    c = ExplorerController(copy.deepcopy(model), x, pruning_ratio=0.25)
    c.accept()
    c.accept()
    plan = c.plan()
    assert plan.importance == repr(c.importance) and plan.source["planned_on"] == "weights"
    assert [d.key for d in plan] == [d.key for d in c.decisions if d.action == "accept"]
    pe.apply_plan(model, plan, example_inputs=x, importance=c.importance)
    a, b = model.state_dict(), c.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same importance, same weights: the very same channels


def test_causal_lm_inputs_are_refused_with_bad_sizes():
    with pytest.raises(PlanError, match="tokens"):
        causal_lm_inputs(nn.Linear(2, 2), tokens=0)
    with pytest.raises(PlanError, match="batch"):
        causal_lm_inputs(nn.Linear(2, 2), batch=True)
