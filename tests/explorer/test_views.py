"""The widgets: instantiate the app on real models, act through its buttons, check what the views show."""

import re
import shutil

import pytest
import torch

import prune_explorer as pe
from prune_explorer.explorer import Explorer
from prune_explorer.explorer.graph_state import GraphState
from prune_explorer.explorer.views.common import IGNORED_COLOR, MEMBER_COLOR, PRUNED_COLOR, ROOT_COLOR, fmt_count
from prune_explorer.explorer.views.header import header_html

from explorer_helpers import same_as, snapshot
from small_models import Broken

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' is not installed")


def params_shown(ex) -> int:
    m = re.search(r"class='pe-params-now' data-value='(\d+)'", ex.header.html.value)
    return int(m.group(1))


def status(ex) -> str:
    return re.sub("<[^>]+>", "", ex.status.value)


@pytest.fixture
def ex(small):
    model, x = small
    return Explorer(model, x, importance=pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5)


def test_app_builds_and_displays(ex, small):
    model, _ = small
    assert ex.controller is not None and ex.error is None
    assert ex.model is model
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert pe.Explorer is Explorer
    assert "Ready" in status(ex) and "ignoring fc" in status(ex)
    assert "Explorer(SmallNet" in repr(ex)


def test_header_shows_the_figures_and_follows_accept_and_undo(ex, small):
    model, _ = small
    p0 = sum(p.numel() for p in model.parameters())
    assert params_shown(ex) == p0
    html = ex.header.html.value
    assert f"{p0:,}" in html and "0 accepted" in html and "3 left" in html and "0.50" in html
    ex.card.accept_btn.click()
    p1 = sum(p.numel() for p in model.parameters())
    assert p1 < p0 and params_shown(ex) == p1
    assert "1 accepted" in ex.header.html.value and "2 left" in ex.header.html.value
    assert "accepted conv1" in status(ex)
    ex.card.undo_btn.click()
    assert params_shown(ex) == p0 and "undid conv1" in status(ex)


def test_header_html_formats():
    f = dict(params_now=1234567, params_original=2000000, params_removed=0.3827, macs_now=None, macs_original=None,
             macs_removed=None, groups_accepted=2, groups_skipped=1, groups_left=4, groups_guard_skipped=1,
             channels_removed=0.25, pruning_ratio=0.5, current_ratio=0.5, finished=False)
    html = header_html(f)
    assert "1,234,567" in html and "38.3%" in html and "n/a" in html and "1 skipped by guards" in html
    assert fmt_count(1816557056) == "1.82G" and fmt_count(11689512) == "11.69M" and fmt_count(999) == "999"


def test_group_card_table_histogram_and_prediction(ex):
    c = ex.controller
    card = ex.card
    assert "conv1" in card.title.value and "16 channels" in card.title.value
    table = card.table.value
    for name in ("conv1", "bn1", "block.conv_a", "block.conv_b", "conv2"):
        assert f"<td>{name.replace('.', '.<wbr>')}</td>" in table
    assert "16 → 8" in table and "pe-root" in table
    pred = c.predict()
    assert f"&minus;{pred['params_removed']:,}" in card.prediction.value
    hist = card.hist.fig
    assert [t.name for t in hist.data] == ["proposed for removal (8)", "kept (8)"] and hist.layout.shapes
    assert card.hist.figure["data"][0]["name"] == "proposed for removal (8)"  # what the browser draws
    # the slider adjusts the selection (snapped to reachable counts), the card follows
    card.slider.value = 3
    assert len(c.current_idxs) == 3 and card.hist.fig.data[0].name == "proposed for removal (3)"
    assert "adjusted" in card.prediction.value
    card.reset_btn.click()
    assert c.current_idxs == c.card()["proposed"]


def test_pick_by_hand_and_bad_indices_show_an_error_and_change_nothing(ex, small):
    model, _ = small
    c = ex.controller
    card = ex.card
    card.pick.value = "0, 2, 4"
    card.pick_btn.click()
    assert c.current_idxs == [0, 2, 4] and card.hist.fig.data[0].name == "proposed for removal (3)"
    snap = snapshot(model)
    card.pick.value = "1, 99"
    card.pick_btn.click()
    assert "out of range" in status(ex) and "pe-status-error" in ex.status.value
    assert c.current_idxs == [0, 2, 4] and same_as(model, snap)


def test_skip_accept_all_and_the_end_of_the_walk(ex, small):
    model, _ = small
    ex.card.skip_btn.click()
    assert "skipped conv1" in status(ex) and "block.conv_a" in ex.card.title.value
    ex.card.all_btn.click()
    c = ex.controller
    assert c.current is None and "All groups decided" in ex.card.done.value
    assert ex.card.accept_btn.disabled and not ex.card.undo_btn.disabled
    assert ex.card.details.layout.display == "none"
    snap = snapshot(model)
    assert not ex.run(lambda c: c.accept())  # accept after the last group: a message, nothing changes
    assert "walk is over" in status(ex) and same_as(model, snap)
    assert len(ex.history) == 3 and ex.history[0]["action"] == "skip"


def test_graph_view_svg_highlights_and_selection(ex):
    g = ex.graph
    svg = g.svg.svg
    assert svg.startswith("<svg") and "conv1" in svg and 'id="pe&#45;n&#45;conv1"' in svg
    # the colours of the walk travel as styles, patched into the laid-out SVG by the front end
    st = g.svg.styles
    assert st["pe-n-conv1"]["fill"].lower() == ROOT_COLOR.lower() and "pe-root" in st["pe-n-conv1"]["cls"]
    assert MEMBER_COLOR.lower() in {v["fill"].lower() for v in st.values()}
    assert g.svg.target["element"] == "pe-n-conv1" and g.svg.target["kind"] == "current"
    # a click on a layer (reported by the front end) selects it: its groups and the ignore button show
    g.handle_event({"event": "click", "element": "pe-n-conv2"})
    assert g.svg.selected == "pe-n-conv2" and "conv2" in g.info.value and "conv1" in g.info.value
    assert g.ignore_btn.layout.display == "" and g.ignore_btn.description == "Ignore this layer"
    g.ignore_btn.click()
    c = ex.controller
    assert "conv2" in c.ignored_names
    # ignoring changes the layout (a dashed box, one more label line): a new SVG
    assert IGNORED_COLOR.lower() in g.svg.svg.lower() and "(ignored)" in g.svg.svg
    assert g.svg.styles["pe-n-conv2"]["lines"][-1] == "(ignored)" and g.svg.styles["pe-n-conv2"]["dash"]
    assert not g.svg.styles["pe-n-conv1"]["dash"]
    assert g.ignore_btn.description == "Stop ignoring this layer"  # worded as the action it takes
    g.ignore_btn.click()
    assert "conv2" not in c.ignored_names and g.ignore_btn.description == "Ignore this layer"
    # accepting patches styles only: the same SVG, the pruned layers show their new widths and colour
    svg = g.svg.svg
    sent = []
    g.svg.observe(lambda ch: sent.append(ch["name"]), names=["svg", "styles"])
    ex.card.accept_btn.click()
    assert sent == ["styles"] and g.svg.svg is svg
    lines = [ln for v in g.svg.styles.values() for ln in v["lines"]]
    assert any("out 8/16" in ln for ln in lines) and "out 8/16" not in svg
    assert g.svg.styles["pe-n-conv1"]["fill"].lower() == PRUNED_COLOR.lower()
    assert g.svg.styles["pe-n-conv1"]["cls"].split() == ["pe-layer", "pe-pruned"]
    # each label line fits the room the layout gave it (laid out at its widest)
    layout = dict(re.findall(r'^\s*n\d+ \[id="([^"]+)".* label="([^"]*)"\];$', g.state.layout_source(), flags=re.M))
    assert set(layout) == set(g.svg.styles)
    for eid, lay in layout.items():
        lay, now = lay.split("\\n"), g.svg.styles[eid]["lines"]
        assert len(lay) == len(now) and all(len(b) <= len(a) for a, b in zip(lay, now)), (lay, now)
    ex.card.undo_btn.click()
    assert g.svg.svg is svg and g.svg.styles["pe-n-conv1"]["fill"].lower() == ROOT_COLOR.lower()


def test_graph_view_search_box_and_not_found(ex):
    g = ex.graph
    g.search.value = "conv_b"
    assert g.svg.highlight == "pe-n-block.conv_b" and g.svg.target["kind"] == "search"
    assert g.search.value == ""  # cleared: the next search does not append to the last name
    assert "found block.conv_b" in status(ex)
    g.search.value = "conv"
    assert g.next_btn.layout.display == ""  # several matches: "Next match" shows the next one
    first = g.state.highlight
    g.next_btn.click()
    assert g.state.highlight != first
    g.search.value = "nothing_like_it"
    assert "no layer or block matches" in status(ex) and "pe-status-error" in ex.status.value
    assert g.svg.highlight == ""


def test_graph_collapses_blocks_and_expands_on_click():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    ex = Explorer(model, torch.randn(1, 3, 64, 64), max_graph_items=10)
    g = ex.graph
    gs = g.state
    assert "layer1.0" in gs.blocks and gs.count_items() <= 10
    assert 'id="pe-b-layer3"' in g._last_source  # collapsed blocks are single boxes
    g.follow.value = False
    g.handle_event({"event": "click", "element": "pe-b-layer3"})  # the front end reports the click
    assert "layer3" in gs.expanded and g.svg.target["element"] == "pe-c-layer3"
    g.handle_event({"event": "click", "element": "pe-b-layer3.1"})
    assert "layer3.1.conv2" in g.svg.svg and g.svg.target["kind"] == "expanded"
    ex.card.skip_btn.click()  # follow is off: the view stays on the block just opened
    assert g.svg.target["kind"] == "keep" and "layer3.1" in gs.expanded
    g.handle_event({"event": "click", "element": "pe-c-layer3.1"})  # an open block's label closes it
    assert "layer3.1.conv2" not in g.svg.svg
    g.handle_event({"event": "click", "element": "pe-n-nothing"})
    assert "no element" in status(ex)
    # "Current group" (front-end button) opens the current group's block and looks at it
    assert ex.controller.current.root_name == "layer1.0.conv1"
    g.handle_event({"event": "current"})
    assert g.svg.target == {"element": "pe-n-layer1.0.conv1", "kind": "current", "seq": gs.target.seq}
    g.overview_btn.click()
    assert g.svg.target["kind"] == "overview"


def test_graph_state_plain_python(small):
    model, x = small
    from prune_explorer.explorer import ExplorerController

    c = ExplorerController(model, x)
    gs = GraphState(c, max_items=100)
    assert gs.block_of["block.conv_a"] == "block" and gs.block_of["conv1"] == ""
    assert gs.expanded == {"block"}
    gs.collapse("block")
    gs.follow = False
    src = gs.dot_source()
    assert "block  ▸" in src and "block.conv_a" not in src
    gs.search("block.bn_a")
    assert "block.conv_a" in gs.dot_source()
    root, members = gs.roles()
    assert root == "conv1" and {"bn1", "block.conv_a", "conv2"} <= members


def test_curves_view_points_and_sweep(ex):
    cv = ex.curves
    def traces():
        return {t.name: t for t in cv.chart.fig.data}

    t = traces()  # parameters and MACs in one chart
    assert set(t) == {"1-(1-p)²", "p", "parameters, accepted groups", "MACs, accepted groups"}  # no sweep yet
    assert len(t["parameters, accepted groups"].x) == 1  # the start point only
    assert cv.chart.fig.layout.title.text == "Parameters and MACs removed"
    ex.card.accept_btn.click()
    t = traces()
    acc = t["parameters, accepted groups"]
    assert len(acc.x) == 2 and "conv1" in acc.text
    f = ex.controller.figures()
    assert acc.y[-1] == pytest.approx(f["params_removed"])
    macs = t["MACs, accepted groups"]
    assert list(macs.x) == list(acc.x) and macs.y[-1] == pytest.approx(f["macs_removed"])
    cv.sweep_btn.click()
    sw = ex.controller.sweep_result
    t = traces()
    sweep = t["parameters, uniform sweep"]
    assert len(sweep.x) == len(sw.ratios) == 10
    k = sw.ratios.index(0.5)
    assert sweep.text[k] == "p = 0.5"
    assert sweep.x[k] == pytest.approx(sw.channels_removed[k]) and sweep.y[k] == pytest.approx(sw.params_removed[k])
    assert t["MACs, uniform sweep"].y[k] == pytest.approx(sw.macs_removed[k])
    assert "uniform p = 0.5" in cv.note.value


def test_ignored_layers_view(ex):
    v = ex.ignored
    c = ex.controller
    labels = [lab for lab, _ in v.select.options]
    assert any(lab.startswith("fc ") for lab in labels) and v.select.value == ("fc",)
    assert "can remove" in v.effect.value and "with your edits" not in v.effect.value
    v.filter.value = "conv"
    assert all("conv" in lab.lower() for lab, _ in v.select.options)
    v.select.value = ("block.conv_a",)
    assert v.selection == {"fc", "block.conv_a"}  # fc stays selected although filtered out
    assert "with your edits" in v.effect.value and "points" in v.effect.value
    v.apply.click()
    assert c.ignored_names == ["block.conv_a", "fc"] or sorted(c.ignored_names) == ["block.conv_a", "fc"]
    assert "rebuilt" in status(ex)
    assert "with your edits" not in v.effect.value


def test_ratio_box_rebuilds_and_rejects_bad_values(ex, small):
    model, _ = small
    snap = snapshot(model)
    ex.header.ratio.value = 1.2
    ex.header.apply_ratio.click()
    assert "[0, 1)" in status(ex) and ex.controller.pruning_ratio == 0.5 and same_as(model, snap)
    ex.header.ratio.value = 0.25
    ex.header.apply_ratio.click()
    assert ex.controller.pruning_ratio == 0.25 and "0.25" in ex.header.html.value
    assert ex.card.hist.fig.data[0].name == "proposed for removal (4)"


def test_model_that_fails_to_trace_shows_the_error():
    ex = Explorer(Broken(), torch.randn(1, 3))
    assert ex.controller is None and isinstance(ex.error, pe.PruneExplorerError)
    assert "Cannot start" in status(ex) and "does not run on these example inputs" in status(ex)
    assert "application/vnd.jupyter.widget-view+json" in ex._repr_mimebundle_()
    with pytest.raises(pe.PruneExplorerError, match="did not start"):
        ex.code()


def test_bad_ratio_at_build_shows_the_error(small):
    model, x = small
    ex = Explorer(model, x, pruning_ratio=1.0)
    assert ex.controller is None and "[0, 1)" in status(ex)


def test_progress_view_names_its_stage_and_disappears_when_done():
    from prune_explorer.explorer.views import ProgressView

    p = ProgressView()
    assert not p.visible
    p.update("sweep", 3, 10)
    assert p.bar.max == 10 and p.bar.value == 3 and p.label.value == "sweep: 3/10" and p.visible
    p.update("sweep", 10, 10)
    assert not p.visible  # a finished bar is not left behind
    p.update("tracing", 1, 4)
    assert p.visible and p.label.value == "tracing — step 2 of 4"
    p.hide()
    assert not p.visible


def test_status_is_replaced_by_every_action(ex):
    card = ex.card
    card.pick.value = "33-40, x"
    card.pick_btn.click()
    assert "pe-status-error" in ex.status.value
    card.pick.value = "0, 2"
    card.pick_btn.click()  # a later valid pick replaces the error
    assert "pe-status-error" not in ex.status.value and "2 of 16 channels selected" in status(ex)
    ex.controller.accept_all_remaining()  # from code: the app still says where the walk is
    assert "all groups decided" in status(ex) and "Ready" not in status(ex)


def test_keyboard_shortcuts_run_the_actions(ex, small):
    model, _ = small
    p0 = sum(p.numel() for p in model.parameters())
    assert ex.bridge.shortcuts == {"a": "accept", "s": "skip", "u": "undo"}
    ex._on_bridge_msg(ex.bridge, {"event": "key", "action": "accept"}, [])
    assert sum(p.numel() for p in model.parameters()) < p0 and "accepted conv1" in status(ex)
    ex._on_bridge_msg(ex.bridge, {"event": "key", "action": "undo"}, [])
    assert sum(p.numel() for p in model.parameters()) == p0
    ex._on_bridge_msg(ex.bridge, {"event": "key", "action": "skip"}, [])
    assert "skipped conv1" in status(ex)
    assert not ex.shortcut("explode") and "unknown shortcut" in status(ex)


def test_add_panel_puts_a_refreshed_panel_in_the_lower_grid(ex):
    import ipywidgets as widgets

    class Panel(widgets.HTML):
        events = []

        def refresh(self, event=""):
            self.events.append(event)

    panel = Panel("extra")
    ex.add_panel(panel, title="Sensitivity")
    assert any(panel in getattr(ch, "children", ()) for ch in ex.panels.children)
    ex.card.skip_btn.click()
    assert panel.events == ["skip"]


def test_notebook_text_fallback_is_readable(ex):
    text = ex._repr_mimebundle_()["text/plain"]
    assert text.startswith("Explorer(SmallNet") and "VBox" not in text and "HTML(" not in text


def test_save_and_code_from_the_app(ex, tmp_path):
    ex.card.accept_btn.click()
    ex.save(tmp_path / "m.pth")
    assert (tmp_path / "m.pth").stat().st_size > 0
    assert "STEPS" in ex.code()


def test_pick_box_applies_on_enter_and_is_cleared_when_the_group_changes(ex):
    c = ex.controller
    card = ex.card
    card.pick.value = "1, 3"  # what the front end sends on Enter (continuous_update=False)
    assert c.current_idxs == [1, 3] and "2 of 16 channels selected" in status(ex)
    card.accept_btn.click()
    assert card.pick.value == ""
    card.pick.value = "0"
    card.undo_btn.click()
    assert card.pick.value == "" and c.current.root_name == "conv1"
    card.pick_btn.click()  # nothing typed: a hint, nothing changes
    assert "type the channels" in status(ex)


def test_view_helpers_docstrings_run():
    import doctest

    from prune_explorer.explorer.views import common

    result = doctest.testmod(common)
    assert result.attempted > 0 and result.failed == 0


def test_the_output_change_follows_a_decision_the_page_already_shows(ex):
    c = ex.controller
    later = []
    c.defer_output = later.append  # the app's scheduler runs it after the page has the decision
    events = []
    c.subscribe(lambda e: events.append((e, c.output_pending)))
    ex.card.accept_btn.click()
    assert events == [("accept", True)] and len(later) == 1  # the views heard of the decision before the measure
    assert "pe-output-pending" in ex.header.output.value and "accepted conv1" in status(ex)
    later.pop()()
    assert events[-1] == ("output", False) and "pe-output-pending" not in ex.header.output.value
    assert c.output_change()["rel_error"] > 0 and "relative error" in ex.header.output.value
    ex.card.undo_btn.click()  # back to a state measured before: nothing to defer
    assert later == [] and events[-1] == ("undo", False) and c.output_change()["rel_error"] == 0.0
    ex.card.skip_btn.click()
    ex.card.accept_btn.click()
    assert c.output_pending and len(later) == 1
    assert c.output_change()["rel_error"] > 0 and not c.output_pending  # reading it measures it at once
    later.pop()()  # the scheduled measure then has nothing left to do
    assert [e for e, _ in events].count("output") == 2


def test_a_skip_before_the_deferred_measure_keeps_it_pending(ex):
    """Clicks faster than the app's delay: Accept, then Skip before the deferred forward pass has run. The skip
    changes nothing in the model, so the measurement the accept asked for is still due and still happens."""
    c = ex.controller
    later = []
    c.defer_output = later.append
    ex.card.accept_btn.click()
    ex.card.skip_btn.click()  # not a model change: the pending measure must survive it
    assert c.output_pending and "pe-output-pending" in ex.header.output.value
    for fn in list(later):
        fn()
    assert not c.output_pending and "pe-output-pending" not in ex.header.output.value
    assert c.output.latest["rel_error"] > 0 and "0.0% relative error" not in ex.header.output.value


def test_a_view_that_fails_to_update_says_so_in_the_status_line(ex, monkeypatch):
    def broken(event=""):
        raise RuntimeError("boom")

    monkeypatch.setattr(ex.curves, "refresh", broken)
    ex.card.accept_btn.click()
    assert "a view failed to update (RatioCurvesView: boom)" in status(ex)
    assert "pe-status-error" in ex.status.value and "details" in ex.status.value
