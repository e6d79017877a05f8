"""Fixtures for the explorer tests: small seeded models with example inputs (see explorer_helpers.py)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_helpers import AttnNet, GroupedNet, SmallNet  # noqa: E402


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
