"""The docstring examples of the plan package's modules run."""

import doctest
import importlib

import pytest

MODULES = ["prune_explorer.plan", "prune_explorer.plan.decisions", "prune_explorer.plan.options",
           "prune_explorer.plan.meta"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
