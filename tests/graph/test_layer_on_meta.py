"""Layers whose output shape the meta trace takes without running their forward, and the forward wrappers it uses."""

import pytest
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.graph.trace.meta_shapes import layer_on_meta

CASES = [
    (lambda: nn.Conv1d(3, 4, 3, stride=2), (2, 3, 9)),
    (lambda: nn.Conv2d(3, 6, 3, padding=1, groups=3), (2, 3, 8, 8)),
    (lambda: nn.Conv2d(4, 4, 3, padding="same"), (1, 4, 5, 5)),
    (lambda: nn.Conv3d(2, 4, (1, 3, 3), dilation=2), (1, 2, 3, 9, 9)),
    (lambda: nn.Linear(5, 6), (2, 7, 5)),
    (lambda: nn.Linear(5, 6, bias=False), (5,)),
    (lambda: nn.LayerNorm(5), (2, 7, 5)),
    (lambda: nn.LayerNorm((7, 5)), (2, 7, 5)),
    (lambda: nn.BatchNorm1d(3).eval(), (2, 3)),
    (lambda: nn.BatchNorm1d(3).eval(), (2, 3, 4)),
    (lambda: nn.BatchNorm2d(3).eval(), (2, 3, 4, 4)),
    (lambda: nn.BatchNorm3d(3).eval(), (2, 3, 2, 4, 4)),
]


@pytest.mark.parametrize("make, shape", CASES)
def test_same_output_as_the_layers_forward(make, shape):
    layer = make().to("meta")
    x = torch.empty(shape, device="meta")
    out = layer_on_meta(layer, (x,), {})
    expected = layer(x)
    if out is None:  # not a simple case ("same" padding): the layer's forward runs
        return
    assert out.shape == expected.shape and out.dtype == expected.dtype and out.device.type == "meta"


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.BatchNorm2d(3).train(), (2, 3, 4, 4)),  # updates its running statistics: forward runs
    (lambda: nn.BatchNorm2d(3, track_running_stats=False).eval(), (2, 3, 4, 4)),
    (lambda: nn.BatchNorm2d(3).eval(), (2, 3)),  # refused by the layer: its own error
    (lambda: nn.Conv2d(3, 4, 3, padding_mode="reflect", padding=1), (1, 3, 5, 5)),
    (lambda: nn.Conv2d(3, 4, 3), (1, 5, 5, 5)),  # wrong channel count: PyTorch's error
    (lambda: nn.Linear(5, 6), (2, 4)),
    (lambda: nn.ReLU(), (2, 4)),  # not one of the layers
])
def test_other_calls_run_the_layers_forward(make, shape):
    layer = make().to("meta")
    assert layer_on_meta(layer, (torch.empty(shape, device="meta"),), {}) is None


def test_dtype_mismatch_is_refused_like_the_real_kernel():
    conv = nn.Conv2d(3, 4, 1, bias=False).to("meta")
    with pytest.raises(RuntimeError, match="input type"):
        layer_on_meta(conv, (torch.empty(1, 3, 4, 4, dtype=torch.long, device="meta"),), {})


def test_the_meta_trace_puts_every_forward_back():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    model(torch.randn(1, 3, 6, 6))
    model.eval()
    own = model[0].forward  # a forward the user set on the instance stays
    model[0].forward = own
    dg = pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 6, 6))
    assert dg.state.traced_on_meta
    assert model[0].__dict__["forward"] is own
    assert all("forward" not in m.__dict__ for m in list(model)[1:])
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    group = dg.get_pruning_group(model[0], pe.prune_conv_out_channels, idxs=[0, 1])
    assert {dep.target.name for dep, _ in group.items} >= {"0", "1", "4"}
