"""The docstring examples of the plan and sensitivity modules run."""

import doctest
import importlib

import pytest

MODULES = ["prune_explorer.plan", "prune_explorer.sensitivity.table", "prune_explorer.sensitivity.cache",
           "prune_explorer.sensitivity.budget", "prune_explorer.sensitivity.scan"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_sensitivity_and_plans_import_no_plotly_widgets_or_ray():
    import os
    import subprocess
    import sys

    code = ("import sys, prune_explorer as pe; pe.sensitivity.scan; pe.PruningPlan; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'plotly', 'ray', 'ipywidgets', 'anywidget', "
            "'pandas'}))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
