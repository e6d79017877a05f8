"""edits.read / assign / exchange: a module's tensors and attributes read and replaced through its dicts leave the
module exactly as getattr / setattr do (same entries, same order, same persistence), and fall back to setattr where
torch's own rules do more (registration hooks, a class attribute, an overridden __setattr__)."""

import torch
import torch.nn as nn

from prune_explorer.layers.edits import LayerEdit, assign, exchange, read


def _state(m: nn.Module):
    """Names and object ids of the parameters and buffers in order, the non-persistent buffers, the public attributes."""
    return ([(k, id(v)) for k, v in m._parameters.items()], [(k, id(v)) for k, v in m._buffers.items()],
            set(m._non_persistent_buffers_set), {k: v for k, v in m.__dict__.items() if not k.startswith("_")})


def test_exchange_leaves_what_setattr_leaves():
    a, b = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
    b.bias, b.running_var, b.num_batches_tracked = a.bias, a.running_var, a.num_batches_tracked  # the same objects
    a.register_buffer("scratch", torch.zeros(4), persistent=False)
    b.register_buffer("scratch", a.scratch, persistent=False)
    w, rm, s = nn.Parameter(torch.ones(2)), torch.zeros(2), torch.ones(2)
    olds = [exchange(a, "weight", w), exchange(a, "running_mean", rm), exchange(a, "scratch", s),
            exchange(a, "num_features", 2)]
    before = [b.weight, b.running_mean, b.scratch, b.num_features]
    b.weight, b.running_mean, b.scratch, b.num_features = w, rm, s, 2
    assert _state(a) == _state(b)
    assert [type(o) for o in olds] == [type(o) for o in before] and olds[3] == 4
    assert "scratch" not in a.state_dict() and a.weight is w and isinstance(a.weight, nn.Parameter)


def test_read_matches_getattr():
    conv = nn.Conv2d(3, 4, 1, bias=False)
    for name in ("weight", "bias", "in_channels", "missing"):
        assert read(conv, name, "default") is getattr(conv, name, "default")


def test_a_registration_hook_is_still_called():
    seen = []
    fc = nn.Linear(4, 3)
    handle = torch.nn.modules.module.register_module_parameter_registration_hook(
        lambda m, name, p: seen.append(name))
    try:
        LayerEdit().select(fc, "weight", (0, [0, 2])).select(fc, "bias", (0, [0, 2])).set(fc, "out_features", 2).apply()
    finally:
        handle.remove()
    assert seen == ["weight", "bias"] and fc.weight.shape == (2, 4)


class _Guarded(nn.Linear):
    def __setattr__(self, name, value):
        if name == "out_features":
            object.__setattr__(self, "changed", True)
        super().__setattr__(name, value)


def test_an_overridden_setattr_runs():
    fc = _Guarded(4, 3)
    assign(fc, "out_features", 2)
    assert fc.changed and fc.out_features == 2
