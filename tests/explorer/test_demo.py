"""The headless demo (``python -m prune_explorer.demo``) runs the whole walk without any widget library."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# run the module as `python -m` does, then report which widget libraries ended up imported
_RUNNER = """
import json, runpy, sys
sys.argv = ["prune_explorer.demo", "--size", "64", "--accept", "2"]
try:
    runpy.run_module("prune_explorer.demo", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("RESULT " + json.dumps({"code": code, "widgets": [m for m in ("ipywidgets", "plotly", "anywidget")
                                                        if m in sys.modules]}))
"""


def test_headless_demo_imports_no_widget_library():
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", _RUNNER], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.rsplit("RESULT ", 1)[1])
    assert result == {"code": 0, "widgets": []}
    # it walked: accepted groups one by one, undid one exactly, swept and finished
    assert "undid" in out.stdout and "(exact)" in out.stdout
    assert "groups in" in out.stdout and "the pruned model runs" in out.stdout
    # the opening header says nothing is removed yet, not "-0.0%"; after pruning it gives the share
    assert "(none removed yet)" in out.stdout and "-0.0%" not in out.stdout
