"""The explorer app on a meta-device model: it says plainly that channels are not ranked (no weights) and how to take
the decisions to the real weights; a weight-based importance does not start, with the way out; the finish view saves
the plan, which the real model then reproduces exactly."""

import pytest
import torch
import torchvision

import prune_explorer as pe

pytest.importorskip("ipywidgets")
from prune_explorer.explorer import Explorer  # noqa: E402

X_SHAPE = (1, 3, 32, 32)


def _resnet(device: str):
    torch.manual_seed(0)
    with torch.device(device):
        return torchvision.models.resnet18().eval()


@pytest.fixture(scope="module")
def meta_app():
    return Explorer(_resnet("meta"), torch.randn(X_SHAPE, device="meta"), pruning_ratio=0.5)


def test_the_app_says_what_a_meta_model_can_and_cannot_do(meta_app):
    ex = meta_app
    status = ex.status.value
    assert "meta device" in status and "not ranked" in status and "export_plan" in status and "apply_plan" in status
    assert isinstance(ex.controller.importance, pe.importance.RandomImportance)
    assert "apply_plan" in ex.finish.plan_btn.tooltip and ex.finish.plan_path.value.endswith("_plan.json")


def test_weight_importance_on_meta_does_not_start_and_says_how():
    ex = Explorer(_resnet("meta"), torch.randn(X_SHAPE, device="meta"),
                  importance=pe.importance.MagnitudeImportance(p=2))
    assert ex.controller is None and "Cannot start" in ex.status.value
    assert "RandomImportance" in ex.status.value and "apply_plan" in ex.status.value


def test_the_finish_view_saves_a_plan_the_real_model_reproduces(meta_app, tmp_path):
    ex = meta_app
    fv = ex.finish
    fv.plan_path.value = str(tmp_path / "missing" / "plan.json")
    assert not fv.save_plan() and ex.controller.status.is_error and "does not exist" in ex.controller.status.text
    assert not (tmp_path / "missing").exists()
    ex.card.accept_btn.click()
    ex.card.all_btn.click()
    fv.plan_path.value = str(tmp_path / "plan.json")
    assert fv.save_plan() and "saved the plan" in ex.controller.status.text
    plan = pe.PruningPlan.load(tmp_path / "plan.json")
    assert plan.predicted["params"] == ex.controller.figures()["params_now"] < 0.5 * plan.base["params"]
    real, x = _resnet("cpu"), torch.randn(X_SHAPE)
    pe.apply_plan(real, plan, example_inputs=x, importance=pe.importance.MagnitudeImportance(p=2))
    assert sum(p.numel() for p in real.parameters()) == plan.predicted["params"]
    assert real(x).shape == (1, 1000)
