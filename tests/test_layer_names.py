"""Layers in ``ignored_layers`` given by qualified name work everywhere a module does (pruners, the dependency graph,
plans, sensitivity scans, the explorer), and an unknown name gets close-name suggestions (issue 18, item 8)."""

import pytest
import torch
import torchvision

import prune_explorer as pe
from prune_explorer.explorer import ExplorerController, ExplorerError


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 3, 32, 32)


def _resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_pruners_take_names_and_prune_as_with_modules(x):
    by_module, by_name = _resnet(), _resnet()
    imp = pe.importance.MagnitudeImportance(p=2)
    pe.pruner.MagnitudePruner(by_module, x, imp, pruning_ratio=0.5,
                              ignored_layers=[by_module.fc, by_module.layer1]).step()
    pruner = pe.pruner.MagnitudePruner(by_name, x, imp, pruning_ratio=0.5, ignored_layers=["fc", "layer1"])
    assert any(m is by_name.layer1[0].conv1 for m in pruner.ignored_layers)  # expanded to submodules, as modules are
    pruner.step()
    a, b = _state(by_module), _state(by_name)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert by_name.layer1[0].conv1.out_channels == 64 and by_name.layer2[0].conv1.out_channels == 64


def test_an_unknown_name_is_refused_with_suggestions_and_the_model_untouched(x):
    model = _resnet()
    before = _state(model)
    with pytest.raises(pe.pruner.PrunerConfigError, match=r"ignored_layers: there is no layer named 'fcc'.*"
                                                          r"Did you mean 'fc'"):
        pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), ignored_layers=["fcc"])
    with pytest.raises(pe.pruner.PrunerConfigError, match=r"'classifier'.*top-level layers: 'conv1', .*'fc'"):
        pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), ignored_layers=["classifier"])
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_dependency_graph_groups_take_names(x):
    model = _resnet()
    DG = pe.DependencyGraph().build_dependency(model, x)
    keys = lambda groups: [pe.plan.group_key(g) for g in groups]  # noqa: E731
    by_module = keys(DG.get_all_groups(ignored_layers=[model.layer4[1].conv1, model.conv1]))
    by_name = keys(DG.get_all_groups(ignored_layers=["layer4.1.conv1", "conv1"]))
    assert by_name == by_module and "layer4.1.conv1" not in by_name and len(by_name) < len(keys(DG.get_all_groups()))
    with pytest.raises(pe.DependencyError, match=r"no layer named 'layer4.1.conv3'.*Did you mean 'layer4.1.conv2'"):
        list(DG.get_all_groups(ignored_layers=["layer4.1.conv3"]))
    DG2 = pe.DependencyGraph().build_dependency(model, x, ignored_layers=["layer4.1.conv1", "conv1"])
    assert keys(DG2.get_all_groups()) == by_module


def test_plans_and_scans_take_names(x):
    model = _resnet()
    plan = pe.sensitivity.uniform_plan(model, x, ratio=0.5, kind="params", ignored_layers=["layer1.0.conv1"])
    assert plan.options["ignored_layers"] == ["layer1.0.conv1"] and "layer1.0.conv1" not in plan.keys()
    with pytest.raises(pe.plan.PlanError, match=r"no layer named 'layer1.0.conv'.*Did you mean .*'layer1.0.conv1'"):
        pe.sensitivity.uniform_plan(model, x, ratio=0.5, kind="params", ignored_layers=["layer1.0.conv"])
    pe.apply_plan(model, plan, example_inputs=x, ignored_layers=["layer1.0.conv1"])
    assert sum(p.numel() for p in model.parameters()) == plan.predicted["params"]

    small = _resnet()
    table = pe.sensitivity.scan(small, x, lambda m: 0.0, ratios=[0.5], executor="serial", progress=False,
                                ignored_layers=["layer2.0.conv1"])
    assert "layer1.0.conv1" in table.keys() and "layer2.0.conv1" not in table.keys()


def test_the_explorer_suggests_names(x):
    with pytest.raises(ExplorerError, match=r"no layer named 'classifier'.*top-level layers: 'conv1', .*'fc'"):
        ExplorerController(_resnet(), x, ignored_layers=["classifier"])
    app = pe.explorer.Explorer(_resnet(), x, ignored_layers=["classifier"])
    assert "Cannot start" in app.status.value and "top-level layers: &#x27;conv1&#x27;" in app.status.value
