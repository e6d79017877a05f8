"""torchvision's detection models traced, pruned and run with Torch-Pruning's example inputs: ONE list of images,
``example_inputs=[torch.rand(3, 320, 320)]`` (called ``model(*x)`` first, then, since that fails, ``model(x)``;
issue 18, item 3). Random weights, no downloads."""

import pytest
import torch
import torchvision

import prune_explorer as pe


@pytest.mark.parametrize("name, kwargs", [
    ("ssdlite320_mobilenet_v3_large", {}),
    pytest.param("fasterrcnn_mobilenet_v3_large_320_fpn", {}, marks=pytest.mark.slow),
    pytest.param("fcos_resnet50_fpn", {"min_size": 192, "max_size": 192}, marks=pytest.mark.slow),
])
def test_detection_model_takes_a_list_of_images(name, kwargs):
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs).eval()
    x = [torch.rand(3, 320, 320)]
    params0 = sum(p.numel() for p in model.parameters())
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5)
    pruner.step()
    params = sum(p.numel() for p in model.parameters())
    assert params < 0.6 * params0
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, list) and len(out) == 1 and {"boxes", "scores", "labels"} <= set(out[0])
    assert pe.utils.count_ops_and_params(model, x)[1] == params
