"""The sensitivity panel in a real JupyterLab (headless Chromium): a small scan run from the app draws its heatmap and
the group's curve, and the page logs no JavaScript error. Same launch as tests/browser (lab_driver)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
from explorer_probes import app, wait_status, wait_until  # noqa: E402
from lab_driver import console_messages, run_notebook_in_browser, running_lab, skip_without_lab, write_notebook  # noqa: E402

pytestmark = pytest.mark.browser

CELLS = ["""\
import torch, torchvision
import prune_explorer as pe
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=10).eval()   # random weights
x = torch.randn(1, 3, 32, 32)
batch = torch.randn(4, 3, 32, 32)
with torch.no_grad():
    ref = model(batch)

def eval_fn(m):                  # higher is better: minus the MSE to the unpruned outputs
    m.eval()
    with torch.no_grad():
        return -torch.nn.functional.mse_loss(m(batch), ref).item()
""", """\
ex = pe.Explorer(model, x, eval_fn=eval_fn)
ex
"""]

HEATMAP = """([i]) => { const app = document.querySelectorAll('.pe-app')[i]; if (!app) return null;
  const h = app.querySelector('.pe-sens-heatmap'); if (!h) return null;
  const svg = h.querySelector('.main-svg'); const cells = h.querySelectorAll('g.hm image, g.hm').length;
  const r = svg ? svg.getBoundingClientRect() : null;
  return {width: r ? r.width : 0, height: r ? r.height : 0, cells: cells,
          rows: h.querySelectorAll('.ytick').length}; }"""
CURVE = """([i]) => { const app = document.querySelectorAll('.pe-app')[i]; if (!app) return null;
  const c = app.querySelector('.pe-group-card .pe-sens-curve .main-svg'); if (!c) return null;
  const r = c.getBoundingClientRect(); return {width: r.width, points: c.querySelectorAll('.point').length}; }"""


def test_scan_from_the_app_draws_the_heatmap_without_js_errors(tmp_path):
    skip_without_lab()
    write_notebook(tmp_path / "sensitivity.ipynb", CELLS)
    with running_lab(tmp_path) as (url, token):
        with run_notebook_in_browser(url, token, "sensitivity.ipynb", screenshot_path=tmp_path / "page.png",
                                     timeout=300, viewport=(1400, 1000)) as page:
            page.set_default_timeout(120_000)
            a = app(page, 0)
            a.wait_for(state="attached")
            panel = a.locator(".pe-sensitivity-view").first
            panel.scroll_into_view_if_needed()
            ratios = panel.locator(".pe-sens-ratios input").first
            ratios.fill("0.5")
            panel.locator("button.pe-sens-scan").first.click()
            text = wait_status(page, 0, "sensitivity scan:", timeout=240)
            assert "groups x 1 ratios" in text
            heat = wait_until(page, HEATMAP, [0], lambda v: v and v["width"] > 100 and v["cells"] > 0, timeout=60,
                              what="the heatmap drawn")
            assert heat["rows"] >= 10  # one row per group of resnet18
            curve = wait_until(page, CURVE, [0], lambda v: v and v["width"] > 100 and v["points"] >= 2, timeout=60,
                               what="the group's curve on the card")
            assert curve["points"] >= 2
            heatmap = panel.locator(".pe-sens-heatmap").first
            heatmap.scroll_into_view_if_needed()
            heatmap.screenshot(path=str(tmp_path / "heatmap.png"))
            a.locator(".pe-sens-curve-box").first.screenshot(path=str(tmp_path / "curve.png"))
            labels = page.evaluate("() => [...document.querySelectorAll('.pe-sens-heatmap .ytick text')]"
                                   ".map(t => [t.textContent, t.getBoundingClientRect().left])")
            box = page.evaluate("() => document.querySelector('.pe-sens-heatmap').getBoundingClientRect().left")
            assert {"conv1", "layer4.1.conv1"} <= {text for text, _ in labels}
            assert all(left >= box - 1 for _, left in labels)  # the group names are inside the chart, not cut off
            errors = [m for m in console_messages(page) if m.startswith("pageerror") or m.startswith("console.error")]
            assert errors == []
