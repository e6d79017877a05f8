"""ultralytics YOLOv8n / YOLO11n detection models built from their yaml (random weights, nothing downloaded).

ultralytics is AGPL-3.0: an optional, test-only dependency (the ``yolo`` extra); prune_explorer never imports it.
The Detect head is ignored (as in Torch-Pruning's YOLOv8 example). A second test builds and prunes both models in a
fresh interpreter whose sockets refuse every connection and DNS lookup, and checks that nothing even tried.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo_models as Z
from known_failures import params

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Z.has_library("ultralytics"), reason="ultralytics is not installed (extra [yolo])")]

YOLO = [n for n, c in Z.CASES.items() if c.library == "ultralytics"]
HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("pruned", params("runs", YOLO), indirect=True)
def test_yolo_prunes_half_and_runs(pruned, record_kept):
    record_kept(pruned)
    assert Z.acceptance_problems(pruned) == []


# Runs in a fresh interpreter: patches the socket module before anything is imported, records every connection or
# name lookup (and refuses it), proves the guard sees a lookup, then builds, prunes and runs the YOLO models and a
# transformers model. Prints one JSON line.
GUARD = r"""
import json, socket, sys
attempts = []
def refuse(what):
    def f(*args, **kwargs):
        attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}"[:200])
        raise OSError(f"network disabled in this test: {what}")
    return f
socket.getaddrinfo = refuse("getaddrinfo")
socket.gethostbyname = refuse("gethostbyname")
socket.create_connection = refuse("create_connection")
socket.socket.connect = refuse("socket.connect")
socket.socket.connect_ex = refuse("socket.connect_ex")
try:
    socket.getaddrinfo("example.com", 443)
except OSError:
    pass
guard_works = attempts == ["getaddrinfo('example.com', 443)"]
attempts.clear()
import zoo_models as Z
results = {}
for name in sys.argv[1:]:
    out = Z.prune_case(Z.CASES[name])
    results[name] = {"problems": Z.acceptance_problems(out), "kept": out.kept}
print(json.dumps({"guard_works": guard_works, "attempts": attempts, "results": results}))
"""


def test_nothing_touches_the_network(tmp_path):
    """YOLO (ultralytics import, settings, model build from yaml, pruning, forward) and a transformers model never
    open a connection nor resolve a host name: no font, weight, update check or telemetry."""
    names = YOLO + (["hf/gpt2"] if Z.has_library("transformers") else [])
    env = {k: v for k, v in os.environ.items() if k not in Z.OFFLINE_ENV and k != "YOLO_CONFIG_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parents[1])] + [p for p in [env.get("PYTHONPATH")] if p])
    env["YOLO_CONFIG_DIR"] = str(tmp_path)  # zoo_models sets the rest of the offline environment itself
    proc = subprocess.run([sys.executable, "-c", GUARD, *names], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["guard_works"]
    assert report["attempts"] == []
    for name in YOLO:
        assert report["results"][name]["problems"] == []
    assert not list(tmp_path.glob("*.pt")), "weights were written"

