"""The dependency-graph view: the Graphviz drawing in a pan-and-zoom viewport, a layer search, and the selected
layer's groups with an ignore button.

All decisions (what is drawn, where the viewport goes, what is selected) are taken by
:class:`~prune_explorer.explorer.graph_state.GraphState`; this module only wires widgets to it.
:class:`GraphWidget` is a small anywidget whose front end (``explorer/static/graph.js``) shows the SVG, pans and
zooms, and reports clicks. A decision does not lay the graph out again: the SVG (``svg``) is that of
:meth:`GraphState.layout_source`, sent when the boxes drawn change, and ``styles`` (:meth:`GraphState.styles`)
carries the colours, labels and tooltips, which the front end patches into the boxes whose style changed.

Colours: the current group's root (dark orange), the layers coupled to it (light orange), pruned layers
(blue, with their new widths ``now/original``), ignored layers (grey, dashed).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import anywidget
import ipywidgets as widgets
import traitlets

from ..graph_dot import is_laid_out
from ..graph_state import DEFAULT_MAX_ITEMS, GraphState, GraphStateError, render_svg
from .common import IGNORED_COLOR, MEMBER_COLOR, PRUNED_COLOR, ROOT_COLOR, esc

__all__ = ["GraphView", "GraphWidget", "GraphState", "selection_html"]

#: controller events after which the drawing is as it was (the output change measured, a sweep, a timing)
_UNCHANGED_BY = ("output", "sweep", "speed", "status")

_STATIC = Path(__file__).resolve().parent.parent / "static"


class GraphWidget(anywidget.AnyWidget):
    """The SVG in a pan-and-zoom viewport. Traits are set from :class:`GraphState`; clicks come back as messages
    ``{"event": "click", "element": id}`` and ``{"event": "current"}``."""

    _esm = _STATIC / "graph.js"
    _css = _STATIC / "graph.css"
    svg = traitlets.Unicode("").tag(sync=True)  # the layout (Graphviz SVG of GraphState.layout_source)
    styles = traitlets.Dict({}).tag(sync=True)  # element id -> {"cls", "fill", "stroke", "pw", "font", "lines", "tip"}
    target = traitlets.Dict({}).tag(sync=True)  # {"element", "kind", "seq"}: what to bring into view
    selected = traitlets.Unicode("").tag(sync=True)  # element id of the selected box
    highlight = traitlets.Unicode("").tag(sync=True)  # element id of the box the last search found
    height = traitlets.Unicode("560px").tag(sync=True)


def selection_html(controller, state: GraphState) -> str:
    """What the view says about the selected layer or block: its groups, and why channels are fixed."""
    name = state.selected
    if not name:
        return ("<span class='pe-muted'>Click a layer to see its groups; click a block to open it. "
                "Search finds layers and blocks by name.</span>")
    if name not in state.by_name:  # a block
        n_layers = state.block_layers.get(name, 0)
        return f"<b>{esc(name)}</b>: block of {n_layers} layers"
    node = state.by_name[name]
    if node.kind == "op":
        return f"<b>{esc(name)}</b>: operation <code>{esc(node.op)}</code> ({esc(node.channels()) or 'no channels'})"
    try:
        groups = controller.groups_of(name)
    except Exception:  # noqa: BLE001 - a loose parameter or a layer the walk does not know
        groups = []
    rows = "".join(
        f"<li>{'<b>' if g['is_current'] else ''}{esc(g['root'])}{'</b> (current)' if g['is_current'] else ''}"
        f" — {g['members']} members, {g['channels']} channels, this layer: {'/'.join(g['sides'])}"
        f"{' — ' + esc(g['decision']) if g['decision'] else ''}</li>"
        for g in groups[:12]
    )
    more = f"<li class='pe-muted'>... {len(groups) - 12} more</li>" if len(groups) > 12 else ""
    txt = (f"<b>{esc(name)}</b> ({esc(node.op)}): "
           + (f"in {len(groups)} group(s)<ul style='margin:2px 0'>{rows}{more}</ul>" if groups
              else "in no group of the walk"))
    mod = state.modules.get(name)
    fixed = controller.DG.fixed_reason(mod) if mod is not None else None
    if fixed:
        txt += f"<div class='pe-muted'>some channels are fixed: {esc(fixed)}</div>"
    if name in controller.ignored_names:
        txt += "<div class='pe-muted'>ignored: its output channels are never pruned</div>"
    return txt


class GraphView(widgets.VBox):
    """Search + follow + overview, the selected layer's groups and ignore button, the legend, the drawing."""

    def __init__(self, app, max_items: int = DEFAULT_MAX_ITEMS):
        self.app = app
        self.state = GraphState(app.controller, max_items)
        self.svg = GraphWidget()
        self.svg.add_class("pe-graph")
        self.svg.on_msg(self._on_msg)
        self.search = widgets.Combobox(placeholder="find a layer or block, then Enter", options=self.state.searchable(),
                                       ensure_option=False, continuous_update=False,
                                       layout=widgets.Layout(flex="1 1 180px", min_width="140px", width="auto"))
        self.search.add_class("pe-layer-search")
        self.search.observe(self._on_search, names="value")
        self.next_btn = widgets.Button(description="Next match", layout=widgets.Layout(width="auto", display="none"),
                                       tooltip="Show the next layer matching the last search")
        self.next_btn.add_class("pe-search-next")
        self.next_btn.on_click(lambda _: self.find(self._last_query))
        self.follow = widgets.Checkbox(value=True, description="follow the current group", indent=False,
                                       layout=widgets.Layout(width="auto"))
        self.follow.add_class("pe-follow")
        self.follow.observe(self._on_follow, names="value")
        self.elementwise = widgets.Checkbox(value=False, description="show activations & pooling", indent=False,
                                            layout=widgets.Layout(width="auto"))
        self.elementwise.observe(self._on_elementwise, names="value")
        self.overview_btn = widgets.Button(description="Overview", icon="compress", layout=widgets.Layout(width="auto"),
                                           tooltip="Back to the opening drawing: blocks closed, whole graph in view")
        self.overview_btn.add_class("pe-graph-overview")
        self.overview_btn.on_click(lambda _: self._act(self.state.reset))
        self.info = widgets.HTML()
        self.info.add_class("pe-layer-info")
        self.info.layout = widgets.Layout(width="auto", min_width="0")
        self.ignore_btn = widgets.Button(description="Ignore this layer", icon="ban",
                                         layout=widgets.Layout(width="auto", display="none", align_self="flex-start"),
                                         tooltip="Never prune this layer's output channels (rebuilds the pruner)")
        self.ignore_btn.add_class("pe-ignore-toggle")
        self.ignore_btn.on_click(self._on_ignore)
        legend = widgets.HTML(
            "<div class='pe-legend'>"
            f"<span style='background:{ROOT_COLOR};color:white'>root</span>"
            f"<span style='background:{MEMBER_COLOR}'>coupled</span>"
            f"<span style='background:{PRUNED_COLOR}'>pruned (now/orig)</span>"
            f"<span style='background:{IGNORED_COLOR};border-style:dashed'>ignored</span>"
            "<span style='background:#f8f9fa'>block ▸ (click to open)</span></div>"
        )
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center", width="100%")
        super().__init__([
            widgets.HBox([self.search, self.next_btn, self.overview_btn], layout=wrap),
            widgets.HBox([self.follow, self.elementwise], layout=wrap),
            legend,
            self.ignore_btn,
            self.info,
            self.svg,
        ])
        self.add_class("pe-graph-view")
        self.layout = widgets.Layout(min_width="0")
        self._last_source: Optional[str] = None
        self._last_query = ""
        self._clearing = False
        self.refresh()

    # ---- events ---------------------------------------------------------------------------------------------------
    def _on_msg(self, _widget, content, _buffers) -> None:
        self.handle_event(content)

    def handle_event(self, content: dict) -> None:
        """A message from the front end: ``{"event": "click", "element": id}`` or ``{"event": "current"}``."""
        event = content.get("event") if isinstance(content, dict) else None
        if event == "click":
            try:
                what = self.state.click(str(content.get("element", "")))
            except GraphStateError as exc:
                self.app.notify(str(exc), error=True)
                return
            if what == "selected":
                self.state.highlight = None
            self._push()
            self._show_info()
        elif event == "current":
            if not self.state.focus_current():
                self.app.notify("every group has been decided: there is no current group to show")
                return
            self._push()

    def _act(self, fn) -> None:
        fn()
        self._push()

    def _on_search(self, change) -> None:
        if self._clearing:
            return
        q = (change["new"] or "").strip()
        if q:
            self.find(q)

    def find(self, query: str) -> bool:
        """Search for ``query`` (see :meth:`GraphState.search`), say what was found in the status line."""
        res = self.state.search(query)
        self._last_query = res.query
        self._clearing = True
        try:
            self.search.value = ""  # the next search starts from an empty box
        finally:
            self._clearing = False
        self.next_btn.layout.display = "" if len(res.matches) > 1 else "none"
        if res.ok:
            self.app.notify(res.message)
            self._push()
            self._show_info()
        else:
            self.app.notify(res.message, error=True)
            self._push()
        return res.ok

    def _on_follow(self, change) -> None:
        self._act(lambda: self.state.set_follow(bool(change["new"])))

    def _on_elementwise(self, change) -> None:
        self.state.show_elementwise = bool(change["new"])
        self._push()

    def _on_ignore(self, _=None) -> None:
        name = self.state.selected
        if not name:
            return
        flag = name not in self.app.controller.ignored_names
        self.app.run(lambda c: c.ignore(name, flag),
                     busy=f"{'ignoring' if flag else 'no longer ignoring'} {name}: rebuilding the pruner")

    # ---- drawing --------------------------------------------------------------------------------------------------
    def _show_info(self) -> None:
        c = self.app.controller
        self.info.value = selection_html(c, self.state)
        name = self.state.selected
        prunable = {d["name"] for d in c.measures.prunable_layers(details=False)} if name else set()
        if name in prunable:
            ignored = name in c.ignored_names
            self.ignore_btn.description = "Stop ignoring this layer" if ignored else "Ignore this layer"
            self.ignore_btn.icon = "check" if ignored else "ban"
            self.ignore_btn.layout.display = ""
        else:
            self.ignore_btn.layout.display = "none"

    def _push(self) -> None:
        """Send the state to the front end, in one message: the SVG only when the layout changed, the styles of the
        boxes, the marks and the target (each trait travels only when its value changed)."""
        src, styles = self.state.layout_and_styles()
        with self.svg.hold_sync():
            if src != self._last_source:
                self.svg.svg = render_svg(src)
                self._last_source = src
            self.svg.styles = styles
            self.svg.selected = self.state.selected_element()
            self.svg.highlight = self.state.highlight_element()
            self.svg.target = self.state.target.as_dict()

    def _lay_out_next(self) -> None:
        """Lay out, in a background thread, the drawing the next group will need (Graphviz runs as a separate
        process): when the walk gets there, its SVG comes from the cache instead of a ``dot`` run."""
        src = self.state.next_layout_source()
        if src is None or is_laid_out(src):
            return

        def render() -> None:
            try:
                render_svg(src)
            except Exception:  # noqa: BLE001 - only a head start: the drawing is laid out when it is needed
                pass

        threading.Thread(target=render, name="pe-graph-layout", daemon=True).start()

    def refresh(self, event: str = "") -> None:
        if event in _UNCHANGED_BY:
            return
        if event in ("accept", "skip", "undo", "build", ""):
            self.app.after_the_page(self._lay_out_next)
        rebuilt = self.state.rebind()
        self.state.walk_changed(event)
        if rebuilt:
            self.search.options = self.state.searchable()
        self._push()
        self._show_info()
