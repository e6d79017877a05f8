"""The explorer in a real JupyterLab, in headless Chromium: the app renders (graph SVG, plotly histogram and
curves, no widget error), Accept changes the header's parameter count and Undo restores it.

Saves a screenshot of the app to ``assets/explorer.png`` (shown in the README).
"""

import re
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_driver import (  # noqa: E402
    browser_available,
    console_messages,
    run_notebook_in_browser,
    running_lab,
    widget_problems,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "assets" / "explorer.png"

SOURCE = """\
import torch, torchvision
import prune_explorer as pe

torch.manual_seed(0)
model = torchvision.models.resnet18().eval()          # random weights
example_inputs = torch.randn(1, 3, 224, 224)
ex = pe.Explorer(model, example_inputs, importance=pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5)
ex
"""


def _write_notebook(path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SOURCE)]
    nbformat.write(nb, str(path))


def _params(page) -> int:
    return int(page.locator(".pe-params-now").first.get_attribute("data-value"))


def _wait_params(page, pred, timeout=60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = _params(page)
        if pred(v):
            return v
        time.sleep(0.2)
    raise AssertionError(f"header parameter count stayed at {_params(page)}")


def test_explorer_renders_and_accept_undo_round_trip(tmp_path):
    ok, why = browser_available()
    if not ok:
        pytest.skip(why)
    pytest.importorskip("jupyterlab")
    pytest.importorskip("torchvision")
    if shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' is not installed (apt-get install graphviz)")

    _write_notebook(tmp_path / "explorer.ipynb")
    with running_lab(tmp_path) as (url, token):
        with run_notebook_in_browser(url, token, "explorer.ipynb", screenshot_path=tmp_path / "page.png",
                                     timeout=300, viewport=(1500, 2200)) as page:
            app = page.locator(".pe-app")
            app.first.wait_for(state="visible", timeout=60_000)
            # the dependency graph: graphviz SVG with the layers' names
            svg = page.locator(".pe-graph svg")
            svg.first.wait_for(state="attached", timeout=30_000)
            inner = svg.first.inner_html()
            assert "conv1" in inner and "layer1" in inner
            assert page.locator(".pe-graph svg g.node").count() > 10
            # the importance histogram and the ratio curves: plotly drew them
            page.locator(".pe-hist .js-plotly-plot .main-svg").first.wait_for(state="attached", timeout=60_000)
            page.locator(".pe-curves .js-plotly-plot .main-svg").first.wait_for(state="attached", timeout=60_000)
            page.locator(".pe-hist .bars path").first.wait_for(state="attached", timeout=30_000)
            assert page.locator(".pe-curves .scatterlayer .trace").count() >= 4
            # the group card's table
            assert "layer1.0.conv1" in page.locator(".pe-card-members").first.inner_text()
            assert widget_problems(page) == []
            body = page.inner_text("body")
            assert "Loading widget" not in body and "Error displaying widget" not in body
            assert "Traceback" not in body

            p0 = _params(page)
            assert p0 == 11_689_512
            page.locator("button.pe-accept").first.click()
            p1 = _wait_params(page, lambda v: v != p0)
            assert p1 < p0
            # the header updates first; the status line replaces its busy text when the callback returns
            page.locator(".pe-status", has_text="accepted conv1").first.wait_for(timeout=60_000)
            page.locator("button.pe-undo").first.click()
            _wait_params(page, lambda v: v == p0)
            page.locator(".pe-status", has_text="undid conv1").first.wait_for(timeout=60_000)

            # a fuller picture for the screenshot: two groups accepted, the sweep drawn
            page.locator("button.pe-accept").first.click()
            p1 = _wait_params(page, lambda v: v < p0)
            page.locator("button.pe-accept").first.click()
            _wait_params(page, lambda v: v < p1)
            page.locator("button.pe-sweep").first.click()
            page.wait_for_function(
                "() => document.querySelectorAll('.pe-curves .scatterlayer .trace .point').length >= 20",
                timeout=30_000)
            page.locator(".pe-status", has_text="now at").first.wait_for(timeout=30_000)
            time.sleep(1.0)  # let plotly finish its transitions
            assert widget_problems(page) == []
            severe = [m for m in console_messages(page) if m.startswith("pageerror")]
            assert severe == [], severe
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            app.first.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 30_000
