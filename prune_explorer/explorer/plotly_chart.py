"""``PlotlyChart``: the one widget that shows every chart of the explorer (a plotly figure, sized to its box).

Charts are built in Python as ``plotly.graph_objects.Figure`` (see :mod:`.charts` and
:mod:`.sensitivity_figures`), so tests read their data; :class:`PlotlyChart` shows one in JupyterLab. It is a small
anywidget (front end: ``static/plotly_chart.js``) that draws the figure's JSON with the plotly.js shipped inside the
plotly package (sent by the kernel once per page and shared by every chart), at exactly the width of its own box,
and redraws it when that width changes (a ResizeObserver). A chart drawn before its box is laid out waits for a
width instead of drawing at 0 or 700 px, which is what left plotly's own ``FigureWidget`` empty inside boxes. The
height is the figure's ``layout.height`` (default 300 px).

A new figure updates the chart, it does not replace it: its traces (``plot_data``) and its layout (``plot_layout``)
are two traits, each sent only when it changed (after a decision, usually the data alone), and the front end
hands them to ``Plotly.react``, which redraws only what differs.

The charts a click redraws (the card's histogram, the ratio curves) come as plain JSON (:meth:`PlotlyChart.show_spec`,
``{"data": [...], "layout": {...}}`` of lists and numbers, as :mod:`.charts` builds them): no ``go.Figure`` is
built and no plotly JSON encoding runs on the click's path; ``fig`` is made from the spec when something reads it.

Usage::

    chart = PlotlyChart(histogram_figure(kept, removed, threshold))   # in any box of the app
    chart.show(other_figure)                                           # replace what it shows
    chart.show_spec(histogram_spec(kept, removed, threshold))          # the same from plain JSON (faster)

Example (no browser needed: the figure is plain data)::

    >>> import plotly.graph_objects as go
    >>> chart = PlotlyChart(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])))
    >>> chart.fig.data[0].y
    (1, 2)
    >>> chart.figure["data"][0]["type"], chart.figure["layout"]["height"]
    ('bar', 300)
    >>> chart.layout.width, chart.layout.min_width
    ('100%', '0')
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Optional

import anywidget
import ipywidgets as widgets
import plotly.graph_objects as go
import traitlets

__all__ = ["PlotlyChart", "DEFAULT_HEIGHT"]

#: height in px of a chart whose figure does not set ``layout.height``
DEFAULT_HEIGHT = 300

_STATIC = Path(__file__).resolve().parent / "static"


@lru_cache(maxsize=1)
def plotly_js_source() -> str:
    """The plotly.js bundle that ships with the installed plotly package (read once)."""
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():  # pragma: no cover - a broken plotly install
        raise FileNotFoundError(f"plotly.js not found at {path}: reinstall plotly (pip install --force-reinstall plotly)")
    return path.read_text(encoding="utf-8")


class PlotlyChart(anywidget.AnyWidget):
    """A plotly figure in the app, as wide as its box (see the module docstring).

    Args:
        fig: the figure to show (``go.Figure``, or ``None`` for an empty chart until :meth:`show`).
        **kwargs: widget options (``layout=...``); the default layout is ``width: 100%``, ``min_width: 0``.

    Attributes:
        fig: the ``go.Figure`` on show (read it in tests; built on first read after :meth:`show_spec`); ``figure`` is
            its JSON (``{"data", "layout"}``), synced to the browser as ``plot_data`` and ``plot_layout``.
    """

    _esm = _STATIC / "plotly_chart.js"
    plot_data = traitlets.List([]).tag(sync=True)  # the figure's traces (JSON)
    plot_layout = traitlets.Dict({}).tag(sync=True)  # its layout (JSON), without width or template

    @property
    def figure(self) -> dict:
        """The figure on show as plotly.js draws it: ``{"data": [...], "layout": {...}}``."""
        return {"data": self.plot_data, "layout": self.plot_layout}

    def __init__(self, fig: Optional[go.Figure] = None, **kwargs):
        kwargs.setdefault("layout", widgets.Layout(width="100%", min_width="0", overflow="hidden"))
        super().__init__(**kwargs)
        self._fig: Optional[go.Figure] = None
        self.on_msg(self._on_front_end_msg)
        self.show(fig if fig is not None else go.Figure())

    @property
    def fig(self) -> go.Figure:
        """The figure on show (after :meth:`show_spec`, built from its JSON on first read)."""
        if self._fig is None:
            self._fig = go.Figure(self.figure, _validate=False)
        return self._fig

    def show(self, fig: go.Figure) -> None:
        """Show ``fig`` (the browser redraws it in place)."""
        if not isinstance(fig, go.Figure):
            raise TypeError(f"PlotlyChart.show takes a plotly.graph_objects.Figure, not {type(fig).__name__}"
                            " (plain JSON goes to show_spec)")
        self._set_figure(json.loads(fig.to_json()))  # numpy arrays become plotly.js typed-array specs
        self._fig = fig

    def show_spec(self, spec: dict) -> None:
        """Show a figure given as plain JSON, ``{"data": [trace dicts], "layout": {...}}`` (lists and numbers, no
        numpy arrays; the builders of :mod:`.charts` make them). Nothing is validated or converted: the fast path of
        the charts a click redraws."""
        if not isinstance(spec, dict) or not isinstance(spec.get("data", []), list):
            raise TypeError("PlotlyChart.show_spec takes {'data': [trace dicts], 'layout': {...}}")
        self._set_figure({"data": spec.get("data", []), "layout": dict(spec.get("layout") or {})})
        self._fig = None

    def _set_figure(self, spec: dict) -> None:
        layout = spec.setdefault("layout", {})
        layout.setdefault("height", DEFAULT_HEIGHT)
        layout.pop("width", None)  # the box decides the width
        layout.pop("template", None)  # figures style themselves; an empty template costs nothing to drop
        with self.hold_sync():  # what changed travels, in one message
            self.plot_data = spec.get("data", [])
            self.plot_layout = layout

    def _on_front_end_msg(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("event") == "need-plotly-js":
            self.send({"event": "plotly-js", "source": plotly_js_source()})
