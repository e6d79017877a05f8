"""The explorer in a real JupyterLab, in headless Chromium, on ResNet-18, DenseNet-121 and ViT-B/16.

One JupyterLab and one page for the module: a notebook whose cells build the three apps. Checked in the browser
(bounding boxes, not widget state): the graph shows nodes inside its viewport at open; a block just expanded and
a layer just searched for (highlighted) are inside the viewport; no panel's content overflows its box at 1,000
and 1,920 px window widths; a whole session of accept, skip, adjust, undo, expand, search, sweep, ignore, finish,
save and export logs no JavaScript error. The browser round trip of Accept is printed (run with ``-s``).

Nothing is written outside pytest's temporary directories (README screenshots: ``scripts/screenshots.py``).
"""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_probes import (  # noqa: E402
    CHARTS,
    CHARTS_DRAWN,
    HEADER_PARAMS,
    IN_VIEW,
    OVERFLOW,
    PANELS,
    VISIBLE_NODES,
    app,
    click_element,
    explorer_page,
    search,
    status_text,
    wait_status,
    wait_until,
)
from lab_driver import console_messages, widget_problems  # noqa: E402

pytestmark = pytest.mark.browser

#: model -> (a collapsed block to open, a layer to search for)
MODELS = {
    "resnet18": ("layer4", "layer4.1.conv2"),
    "densenet121": ("features.denseblock2", "features.denseblock4.denselayer16.conv2"),
    "vit_b_16": ("encoder.layers.encoder_layer_11", "encoder.layers.encoder_layer_11.mlp.3"),
}
INDEX = {name: i for i, name in enumerate(MODELS)}

SETUP = """\
import os, torch, torchvision
import prune_explorer as pe
os.environ["HF_HUB_OFFLINE"] = "1"
torch.manual_seed(0)
x = torch.randn(1, 3, 224, 224)
"""
CELL = """\
ex_{name} = pe.Explorer(torchvision.models.{name}().eval(), x, pruning_ratio=0.5)  # random weights
ex_{name}
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explorer_browser")
    with explorer_page(tmp, "explorer.ipynb", [SETUP] + [CELL.format(name=n) for n in MODELS],
                       requires=["torchvision"], apps=range(len(MODELS)), timeout=360) as pg:
        for i in range(len(MODELS)):
            wait_until(pg, VISIBLE_NODES, [i], lambda v: v is not None and v >= 0, timeout=120,
                       what=f"the graph of app {i}")
        yield pg


def _js_errors(page) -> list:
    return [m for m in console_messages(page) if m.startswith("pageerror") or m.startswith("console.error")]


@pytest.mark.parametrize("name", list(MODELS))
def test_graph_shows_its_target_in_the_viewport(page, name):
    i = INDEX[name]
    block, layer = MODELS[name]
    a = app(page, i)
    a.scroll_into_view_if_needed()
    # at open: nodes inside the visible viewport (not an empty white box), the current group's root among them
    n = wait_until(page, VISIBLE_NODES, [i], lambda v: v and v > 0, what="visible nodes at open")
    assert n > 0
    # a block clicked open is brought into view
    a.locator(".pe-gv-fit").first.click()  # whole graph in view, so the block can be clicked
    if a.locator(f'.pe-gv-viewport [id="pe-c-{block}"]').count():  # open at start: its label closes it first
        a.locator(f'.pe-gv-viewport [id="pe-c-{block}"] text').first.click()
        wait_until(page, IN_VIEW, [i, f"pe-b-{block}"], lambda v: v and v["found"] and v["inside"],
                   what=f"{block} closed and inside the viewport")
    click_element(page, i, f"pe-b-{block}")
    wait_until(page, IN_VIEW, [i, f"pe-c-{block}"], lambda v: v and v["found"] and v["inside"],
               what=f"{block} opened and inside the viewport")
    # a layer searched for is revealed, highlighted and inside the viewport, in both axes
    search(page, i, layer)
    v = wait_until(page, IN_VIEW, [i, f"pe-n-{layer}"], lambda v: v and v["found"] and v["inside"] and v["highlighted"],
                   what=f"{layer} found, highlighted and inside the viewport")
    assert v["highlighted"]
    assert f"found {layer}" in wait_status(page, i, "found")
    assert a.locator(".pe-layer-search input").first.input_value() == ""  # the next search starts afresh
    search(page, i, "no_such_layer_here")
    wait_status(page, i, "no layer or block matches 'no_such_layer_here'")
    assert _js_errors(page) == []


@pytest.mark.parametrize("width", [1000, 1920])
def test_no_panel_overflows_its_box(page, width):
    page.set_viewport_size({"width": width, "height": 1000})
    for name, i in INDEX.items():
        app(page, i).scroll_into_view_if_needed()
        # nothing sticks out of its panel, and every chart is drawn at the width of its box (redrawn on resize)
        wait_until(page, OVERFLOW, [i, list(PANELS)], lambda v: v == [], timeout=20, what=f"{name} fitting at {width}px")
        wait_until(page, CHARTS, [i], lambda v: v == [], timeout=20, what=f"{name}'s charts at their box width")
    page.set_viewport_size({"width": 1400, "height": 1000})


@pytest.mark.parametrize("name", list(MODELS))
def test_charts_are_drawn_with_plotly_at_open(page, name):
    i = INDEX[name]
    app(page, i).scroll_into_view_if_needed()
    # the histogram and the ratio curves (parameters and MACs in one chart), at their boxes' width
    assert wait_until(page, CHARTS_DRAWN, [i], lambda v: v >= 2, what=f"{name}'s charts drawn") >= 2
    assert page.evaluate(CHARTS, [i]) == []
    assert _js_errors(page) == []


def test_a_whole_session_logs_no_javascript_error(page, tmp_path):
    i = INDEX["resnet18"]
    a = app(page, i)
    a.scroll_into_view_if_needed()
    p0 = page.evaluate(HEADER_PARAMS, [i])
    # accept: the browser round trip (click -> header updated) is what the user waits for
    t = time.perf_counter()
    a.locator("button.pe-accept").first.click()
    p1 = wait_until(page, HEADER_PARAMS, [i], lambda v: v != p0, what="the header after Accept")
    round_trip = time.perf_counter() - t
    print(f"\n[explorer] accept browser round trip on resnet18: {round_trip * 1e3:.0f} ms")
    assert p1 < p0
    wait_status(page, i, "accepted conv1")
    # skip, adjust by hand, undo
    a.locator("button.pe-skip").first.click()
    wait_status(page, i, "skipped layer1.0.conv1")
    pick = a.locator(".pe-pick input").first
    pick.fill("0-2")
    pick.press("Enter")  # Enter applies; ranges work
    wait_status(page, i, "3 of")
    a.locator("button.pe-undo").first.click()
    wait_until(page, HEADER_PARAMS, [i], lambda v: v == p0, what="the header after Undo")
    wait_status(page, i, "undid conv1")
    # keyboard: focus inside the app, then S skips
    a.locator(".pe-app-title").first.click()
    page.keyboard.press("s")
    wait_status(page, i, "skipped conv1")
    # graph: expand, search; sweep
    a.locator(".pe-gv-fit").first.click()
    search(page, i, "layer3.1.conv1")
    wait_status(page, i, "found layer3.1.conv1")
    a.locator("button.pe-sweep").first.click()
    a.locator(".pe-curves-view", has_text="uniform p = 0.5 removes").first.wait_for()
    a.screenshot(path=str(tmp_path / "after_sweep.png"))
    wait_until(page, "([i]) => document.querySelectorAll('.pe-app')[i].querySelectorAll("
                     "'.pe-curves .scatterlayer .point').length", [i], lambda v: v >= 20,
               what="the sweep's points drawn (10 per quantity)")
    # ignore the selected layer from the graph, and filter / clear the ignored-layers list
    ignore = a.locator(".pe-ignore-toggle").first
    assert ignore.inner_text().strip() == "Ignore this layer"
    ignore.click()
    wait_status(page, i, "rebuilt")
    assert ignore.inner_text().strip() == "Stop ignoring this layer"
    filt = a.locator(".pe-ignored-filter input").first
    filt.fill("layer4")
    time.sleep(0.5)
    filt.fill("")  # used to log "Cannot set properties of undefined (setting 'selected')"
    time.sleep(0.5)
    # finish: the summary appears by itself when the walk ends
    a.locator("button.pe-accept-all").first.click()
    wait_status(page, i, "all groups decided", timeout=120)
    a.locator(".pe-finish-view .pe-total-params").first.wait_for(timeout=120_000)
    shown = int(a.locator(".pe-finish-view .pe-total-params").first.get_attribute("data-value"))
    assert shown == page.evaluate(HEADER_PARAMS, [i])
    a.locator(".pe-finish-macs .main-svg").first.wait_for(timeout=60_000)  # the MACs bars, drawn with plotly
    assert wait_until(page, CHARTS, [i], lambda v: v == [], what="the charts after finish") == []
    assert a.locator("button.pe-undo").first.is_enabled() and not a.locator("button.pe-accept").first.is_enabled()
    # save, download the script, export ONNX, measure speed
    a.locator(".pe-save-path input").first.fill(str(tmp_path / "resnet18_pruned.pth"))
    a.locator("button.pe-save").first.click()
    wait_status(page, i, "saved the pruned model")
    assert (tmp_path / "resnet18_pruned.pth").is_file()
    with page.expect_download(timeout=60_000) as dl:
        a.locator("button.pe-download-script").first.click()
    script = tmp_path / "reproduce_pruning.py"
    dl.value.save_as(str(script))
    assert "STEPS = [" in script.read_text() and "prune_explorer" in script.read_text()
    a.locator(".pe-onnx-path input").first.fill(str(tmp_path / "resnet18_pruned.onnx"))
    a.locator("button.pe-export-onnx").first.click()
    wait_status(page, i, "exported", timeout=240)
    assert (tmp_path / "resnet18_pruned.onnx").is_file()
    a.locator("button.pe-measure-speed").first.click()
    wait_status(page, i, "latency on cpu", timeout=180)
    assert a.locator(".pe-latency-now").count() == 1
    assert widget_problems(page) == []
    assert "Traceback" not in a.inner_text()
    # the finished app (summary table, MACs bars) fits too, at both widths
    for width in (1000, 1920):
        page.set_viewport_size({"width": width, "height": 1000})
        a.scroll_into_view_if_needed()
        wait_until(page, OVERFLOW, [i, list(PANELS)], lambda v: v == [], timeout=20, what=f"finished app at {width}px")
        wait_until(page, CHARTS, [i], lambda v: v == [], timeout=20, what=f"finished app's charts at {width}px")
    page.set_viewport_size({"width": 1400, "height": 1000})
    assert _js_errors(page) == []
