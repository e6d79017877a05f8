"""Fixtures for the explorer tests: small seeded models with example inputs (models: tests/small_models.py)."""

import pytest
import torch

from explorer_helpers import snapshot
from small_models import AttnNet, GroupedNet, SmallNet


@pytest.fixture
def small():
    torch.manual_seed(0)
    return SmallNet().eval(), torch.randn(1, 3, 16, 16)


@pytest.fixture
def grouped():
    torch.manual_seed(0)
    return GroupedNet().eval(), torch.randn(1, 3, 12, 12)


@pytest.fixture
def attn():
    torch.manual_seed(0)
    return AttnNet().eval(), torch.randn(2, 5, 6)


@pytest.fixture
def accepted_once(small):
    """``(model, controller, snapshot)``: :func:`small` with its first group accepted, and the model's state then."""
    from prune_explorer.explorer import ExplorerController

    model, x = small
    c = ExplorerController(model, x)
    c.accept()
    return model, c, snapshot(model)
