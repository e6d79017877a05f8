"""Smoke test of the real-browser harness: JupyterLab + ipywidgets + plotly FigureWidget + graphviz
SVG, rendered by Chromium, with a Python callback round trip (button click -> label text)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_driver import (  # noqa: E402
    console_messages,
    run_notebook_in_browser,
    running_lab,
    skip_without_lab,
    widget_problems,
    write_notebook,
)

pytestmark = pytest.mark.browser

SOURCE = '''\
import graphviz
import ipywidgets as widgets
import plotly.graph_objects as go

label = widgets.Label("not clicked")
label.add_class("pe-smoke-label")
button = widgets.Button(description="Click me")
button.add_class("pe-smoke-button")

def on_click(_):
    label.value = "clicked from python"

button.on_click(on_click)

fig = go.FigureWidget(data=[go.Bar(x=["conv1", "conv2"], y=[64, 128])])
fig.layout.title = "smoke"

dot = graphviz.Digraph()
dot.edge("conv1", "bn1")
svg = dot.pipe(format="svg", encoding="utf-8")
graph = widgets.HTML(svg[svg.index("<svg"):])
graph.add_class("pe-smoke-graph")

widgets.VBox([button, label, fig, graph])
'''


def test_widgets_plotly_graphviz_render_and_callback_works(tmp_path):
    skip_without_lab(dot=True)

    # a markdown cell first, and no kernelspec on purpose: a fresh JupyterLab then shows its "Select Kernel" dialog,
    # which the driver must accept
    nbformat = pytest.importorskip("nbformat")
    write_notebook(tmp_path / "smoke.ipynb", [nbformat.v4.new_markdown_cell("# smoke"), SOURCE], kernelspec=False)
    shot = tmp_path / "smoke.png"
    with running_lab(tmp_path) as (url, token):
        with run_notebook_in_browser(url, token, "smoke.ipynb", screenshot_path=shot, timeout=120) as page:
            # plotly's FigureWidget (an anywidget) drew its plot
            page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=30_000)
            assert page.locator(".js-plotly-plot .main-svg").count() >= 1
            # the graphviz SVG is inside the HTML widget, with its node labels
            svg = page.locator(".pe-smoke-graph svg")
            svg.first.wait_for(state="attached", timeout=10_000)
            assert "conv1" in svg.first.inner_html() and "bn1" in svg.first.inner_html()
            # every widget rendered; no placeholder or error text anywhere
            assert widget_problems(page) == []
            assert "Loading widget" not in page.inner_text("body")

            label = page.locator(".pe-smoke-label")
            assert "not clicked" in label.inner_text()
            page.locator(".pe-smoke-button").click()
            page.locator(".pe-smoke-label", has_text="clicked from python").wait_for(timeout=15_000)

            severe = [m for m in console_messages(page) if m.startswith("pageerror")]
            assert severe == [], severe
    assert shot.is_file() and shot.stat().st_size > 10_000
