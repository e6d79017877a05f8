"""The explorer in a real JupyterLab (headless Chromium) on ResNet-18: the header's output-change line and its curve
update after an Accept and go back after an Undo; Restart walk undoes everything; Verify script runs the
downloaded script in a subprocess and says the outputs are equal."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_probes import HEADER_PARAMS, app, explorer_page, wait_status, wait_until  # noqa: E402

pytestmark = pytest.mark.browser

SETUP = """\
import torch, torchvision
import prune_explorer as pe
torch.manual_seed(0)
x = torch.randn(2, 3, 64, 64)
"""
CELL = """\
ex = pe.Explorer(torchvision.models.resnet18().eval(), x, pruning_ratio=0.5,
                 model_fn=lambda: torchvision.models.resnet18())
ex
"""
OUTPUT = """([i]) => { const app = document.querySelectorAll('.pe-app')[i]; if (!app) return null;
  const e = app.querySelector('.pe-output-now'); const c = app.querySelector('.pe-output-curve');
  return e ? [e.textContent, c ? +c.dataset.points : 0] : null; }"""


def _rel_error(text: str) -> float:
    return float(re.search(r"([0-9.]+)% relative error", text).group(1))


def test_output_change_line_follows_accept_and_undo_and_restart_walk(tmp_path):
    with explorer_page(tmp_path, "out.ipynb", [SETUP, CELL], requires=["torchvision"]) as page:
        a = app(page, 0)
        text, points = wait_until(page, OUTPUT, [0], lambda v: v is not None, what="the output-change line")
        assert _rel_error(text) == 0.0 and "\x1b" not in text
        p0 = page.evaluate(HEADER_PARAMS, [0])
        a.locator("button.pe-accept").first.click()
        wait_until(page, HEADER_PARAMS, [0], lambda v: v != p0, what="the header after Accept")
        text, points = wait_until(page, OUTPUT, [0], lambda v: v and _rel_error(v[0]) > 0,
                                  what="the output change after Accept")
        assert points == 2  # the start and one decision
        a.locator("button.pe-undo").first.click()
        wait_status(page, 0, "undid conv1")
        text, points = wait_until(page, OUTPUT, [0], lambda v: v and _rel_error(v[0]) == 0.0,
                                  what="the output change after Undo")
        a.locator("button.pe-accept").first.click()
        wait_status(page, 0, "accepted conv1")
        a.locator("button.pe-skip").first.click()
        wait_status(page, 0, "skipped")
        a.locator("button.pe-restart").first.click()
        wait_status(page, 0, "started over")
        assert page.evaluate(HEADER_PARAMS, [0]) == p0
        a.locator("button.pe-accept").first.click()
        wait_status(page, 0, "accepted conv1")
        a.locator("button.pe-verify-script").first.click()
        status = wait_status(page, 0, "reproduces this model", timeout=240)
        assert "outputs equal" in status
