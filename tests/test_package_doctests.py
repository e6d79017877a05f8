"""Every docstring example in prune_explorer runs and prints what it shows (``pytest --doctest-modules`` over the
package, one test per module so that ``pytest -n 2`` spreads them)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import prune_explorer

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules():
    found = [prune_explorer.__name__]
    found += [m.name for m in pkgutil.walk_packages(prune_explorer.__path__, prefix="prune_explorer.")]
    return sorted(found)


def test_every_module_is_collected():
    names = _modules()
    assert {"prune_explorer.graph.dependency_graph", "prune_explorer.layers.conv", "prune_explorer.inputs",
            "prune_explorer.validation", "prune_explorer.measure.mac_rules"} <= set(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file never writes into the repository
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
