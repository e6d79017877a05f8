"""The examples in the docstrings of the Torch-Pruning compatibility modules run as written."""

import doctest
import importlib

import pytest

MODULES = [
    "prune_explorer.graph.tp_api",
    "prune_explorer.calibration.statistics",
    "prune_explorer.measure.benchmark",
    "prune_explorer.model_diff",
    "prune_explorer.ops",
    "prune_explorer.inputs",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
