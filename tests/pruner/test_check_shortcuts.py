"""The post-prune check's layer shortcuts: torch's own layers whose output shape is computed directly
(``meta_shapes.module_on_meta``) give exactly what their forward gives on the shape-only run, a mismatch still fails
with PyTorch's own error, and the model is left as it was (no instance ``forward`` left behind, even on interrupt)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from prune_explorer.graph.trace.meta_shapes import ShapeOnlyMode, module_on_meta
from prune_explorer.pruner.post_check import IndexDataMode, run_error

LAYERS = [
    (lambda: nn.Conv2d(3, 6, 3, padding=1, groups=3), (2, 3, 8, 8)),
    (lambda: nn.Conv1d(3, 4, 3, stride=2, bias=False), (2, 3, 9)),
    (lambda: nn.Linear(5, 6), (2, 7, 5)),
    (lambda: nn.LayerNorm(5), (2, 7, 5)),
    (lambda: nn.BatchNorm2d(3).eval(), (2, 3, 4, 4)),
    (lambda: nn.ReLU(), (2, 4)),
    (lambda: nn.ReLU(inplace=True), (2, 4)),
    (lambda: nn.SiLU(inplace=True), (2, 3, 4)),
    (lambda: nn.Mish(), (2, 3)),
    (lambda: nn.Hardswish(), (2, 3, 4, 4)),
    (lambda: nn.Hardsigmoid(inplace=True), (2, 3, 1, 1)),
    (lambda: nn.LeakyReLU(0.2), (2, 3)),
    (lambda: nn.ELU(inplace=True), (2, 3)),
    (lambda: nn.GELU(approximate="tanh"), (2, 5, 8)),
    (lambda: nn.Sigmoid(), (2, 3)),
    (lambda: nn.Tanh(), (3,)),
    (lambda: nn.Dropout(0.1), (2, 3)),
    (lambda: nn.Dropout(0.1, inplace=True).train(), (2, 3)),
    (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 7, 7)),
    (lambda: nn.AdaptiveAvgPool2d((None, 2)), (2, 3, 7, 6)),
]


@pytest.mark.parametrize("mode", [ShapeOnlyMode, IndexDataMode])
@pytest.mark.parametrize("make, shape", LAYERS)
def test_the_shortcut_gives_what_the_forward_gives_on_the_shape_only_run(make, shape, mode):
    layer = make().to("meta")
    x = torch.empty(shape, device="meta")
    with torch._C.DisableTorchFunction():
        out = module_on_meta(layer, (x,), {})
    with mode():
        expected = layer(x)
    assert out is not None
    assert (out.shape, out.stride(), out.dtype, out.device) == \
        (expected.shape, expected.stride(), expected.dtype, expected.device)
    assert (out is x) == (expected is x)  # an in-place layer hands back its input


def _mismatched(kind: str):
    """A model with a layer that no longer fits its input (a tensor left at its old size), the error of the real run
    and the one PyTorch's meta kernel gives on the shape-only run (the check's answer, as before the shortcuts)."""
    if kind == "conv":
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8).eval(), nn.ReLU(), nn.Conv2d(8, 4, 1))
        model[3].weight = nn.Parameter(torch.randn(4, 6, 1, 1))
        return model, torch.randn(1, 3, 6, 6), "to have 6 channels", "Invalid channel dimensions"
    if kind == "grouped conv":
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8))
        model[0].weight = nn.Parameter(torch.randn(6, 3, 3, 3))
        model[0].bias = nn.Parameter(torch.randn(6))
        return model, torch.randn(1, 3, 6, 6), "to have 8 channels", "Invalid channel dimensions"
    if kind == "linear":
        model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        model[2].weight = nn.Parameter(torch.randn(2, 5))
        return model, torch.randn(1, 4), "cannot be multiplied", "a and b must have same reduction dim"
    if kind == "batch norm":
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8).eval())
        model[1].running_mean = torch.zeros(6)
        return model, torch.randn(1, 3, 6, 6), *["running_mean should contain 8 elements not 6"] * 2
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6))
    model[1].weight = nn.Parameter(torch.ones(5))
    return model, torch.randn(1, 4), *["Expected weight to be of same shape as normalized_shape"] * 2


@pytest.mark.parametrize("kind", ["conv", "grouped conv", "linear", "batch norm", "layer norm"])
def test_a_layer_that_no_longer_fits_its_input_still_fails(kind):
    model, x, real, shape_only = _mismatched(kind)
    with pytest.raises(RuntimeError, match=real):  # the real model fails
        model(x)
    error = run_error(model, x)
    assert error is not None and error.startswith("RuntimeError: " + shape_only), error
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_a_forward_set_on_the_instance_is_not_skipped():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())

    def refuse(x):
        raise ValueError("the instance's own forward ran")

    model[1].forward = refuse
    assert "the instance's own forward ran" in run_error(model, torch.randn(1, 3, 4, 4))
    assert model[1].__dict__["forward"] is refuse
    assert "forward" not in model[0].__dict__


class Interrupts(nn.Module):
    def forward(self, x):
        raise KeyboardInterrupt


def test_an_interrupt_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4).eval(), nn.ReLU(), Interrupts(), nn.Linear(4, 2))
    weights = [p for p in model.parameters()]
    with pytest.raises(KeyboardInterrupt):
        run_error(model, torch.randn(1, 3, 4, 4))
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert [p for p in model.parameters()] == weights and all(p.device.type == "cpu" for p in weights)
