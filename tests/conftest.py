"""Project-wide test set-up. Keep it light: feature-specific fixtures live in conftest.py files
of the test sub-folders."""

import random

import pytest
import torch

# Denormal floats make CPU timings erratic and tiny-weight tests slow; the benchmarks use the same.
torch.set_flush_denormal(True)


@pytest.fixture(autouse=True)
def seed():
    """Seed torch (and ``random``) with 0 before every test; returns the seed."""
    torch.manual_seed(0)
    random.seed(0)
    return 0


@pytest.fixture(autouse=True, scope="session")
def lint_every_edit():
    """Every prune and undo of every graph in the suite runs ``DG.lint()`` afterwards (cheap: no forward pass), so
    a graph that drifts from its model fails the test that caused it."""
    from prune_explorer.graph import lint_after_edits

    with lint_after_edits():
        yield
