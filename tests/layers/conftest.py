"""Fixtures for the per-layer pruner tests: the device to run on, and before/after snapshots of a module."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=_DEVICES)
def device(request) -> torch.device:
    """Every device test runs on: the CPU, and the GPU when there is one."""
    return torch.device(request.param)


def _plain_attrs(module: nn.Module) -> dict:
    out = {}
    for name, m in module.named_modules():
        for k, v in vars(m).items():
            if k.startswith("_") and k not in ("_qkv_same_embed_dim",):
                continue
            if isinstance(v, (int, float, bool, str, tuple, type(None))):
                out[f"{name}.{k}"] = copy.deepcopy(v)
    return out


class Snapshot:
    """Everything observable about a module: tensors (values and identity), plain attributes, repr."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        sd = module.state_dict(keep_vars=True)
        self.ids = {k: id(v) for k, v in sd.items()}
        self.values = {k: v.detach().clone() for k, v in sd.items()}
        self.grads = {
            k: (v.grad.detach().clone() if v.grad is not None else None) for k, v in module.named_parameters()
        }
        self.attrs = _plain_attrs(module)
        self.repr = repr(module)

    def assert_unchanged(self) -> None:
        m = self.module
        sd = m.state_dict(keep_vars=True)
        assert list(sd) == list(self.values)
        for k, v in sd.items():
            assert id(v) == self.ids[k], f"{k} was replaced"
            assert v.shape == self.values[k].shape, k
            assert torch.equal(v.detach(), self.values[k]), k
        for k, v in m.named_parameters():
            g = self.grads[k]
            assert (v.grad is None) == (g is None), k
            if g is not None:
                assert torch.equal(v.grad, g), k
        assert _plain_attrs(m) == self.attrs
        assert repr(m) == self.repr
        if isinstance(m, nn.RNNBase):
            assert all(a is getattr(m, n) for a, n in zip(m._flat_weights, m._flat_weights_names))


@pytest.fixture
def snapshot():
    """``snap = snapshot(module)`` ... ``snap.assert_unchanged()``."""
    return Snapshot
