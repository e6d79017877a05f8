"""Ratio curves: fraction of parameters (left) and MACs (right) removed vs fraction of channels removed.

Each accepted group adds a point; the quadratic rule ``1-(1-p)^2`` and the linear ``p`` are drawn as
references; the sweep button draws the whole curve of uniform pruning at p = 0 .. 0.9 for this model, computed
from the group structure (see :mod:`prune_explorer.explorer.structure`).
"""

from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import MACS_COLOR, PARAMS_COLOR

# trace indices (two per panel for the references, then the sweep and the accepted points)
_TRACES = ("quad_p", "lin_p", "sweep_p", "points_p", "quad_m", "lin_m", "sweep_m", "points_m")


def build_figure() -> go.FigureWidget:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Parameters removed", "MACs removed"),
                        horizontal_spacing=0.1)
    for col, color, what in ((1, PARAMS_COLOR, "params"), (2, MACS_COLOR, "MACs")):
        legend = col == 1
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name="1-(1-p)²", line=dict(color="#adb5bd", dash="dash"),
                                 showlegend=legend, legendgroup="q"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name="p", line=dict(color="#ced4da", dash="dot"),
                                 showlegend=legend, legendgroup="l"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name=f"uniform sweep",
                                 line=dict(color=color, width=1.5), marker=dict(size=5, symbol="diamond-open"),
                                 showlegend=legend, legendgroup="s"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name=f"accepted groups",
                                 line=dict(color="#e8590c", width=1), marker=dict(size=7, color="#e8590c"),
                                 showlegend=legend, legendgroup="a", text=[], hovertemplate="%{text}<br>"
                                 "channels %{x:.1%}<br>removed %{y:.1%}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="fraction of channels removed", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    fig.update_layout(height=300, autosize=True, margin=dict(l=48, r=24, t=40, b=44), template="plotly_white",
                      legend=dict(orientation="h", y=-0.28, x=0.5, xanchor="center", font=dict(size=10)))
    w = go.FigureWidget(fig)
    w._config = {"responsive": True, "displaylogo": False}
    return w


class RatioCurvesView(widgets.VBox):
    """Live ratio curves and the sweep button."""

    def __init__(self, app):
        self.app = app
        self.fig = build_figure()
        self.fig_box = widgets.Box([self.fig], layout=widgets.Layout(width="100%", min_width="0"))
        self.fig_box.add_class("pe-curves")
        self.fig_box.add_class("pe-plot-box")  # resized with its box (static/app.js)
        self.sweep_btn = widgets.Button(description="Sweep p = 0…0.9", icon="line-chart",
                                        layout=widgets.Layout(width="auto"),
                                        tooltip="Uniform pruning of every group at p = 0, 0.1, ... 0.9 "
                                                "(computed from the group structure, nothing is pruned)")
        self.sweep_btn.add_class("pe-sweep")
        self.sweep_btn.on_click(lambda _: self.app.run(lambda c: c.sweep(), busy="sweeping"))
        self.note = widgets.HTML()
        super().__init__([widgets.HBox([self.sweep_btn, self.note],
                                       layout=widgets.Layout(flex_flow="row wrap", align_items="center")),
                          self.fig_box])
        self.add_class("pe-curves-view")
        self.refresh()

    def refresh(self, event: str = "") -> None:
        c = self.app.controller
        data = c.curves()
        ref, pts, sw = data["reference"], data["points"], data["sweep"]
        d = self.fig.data
        with self.fig.batch_update():
            for i in (0, 4):
                d[i].x, d[i].y = ref["p"], ref["quadratic"]
            for i in (1, 5):
                d[i].x, d[i].y = ref["p"], ref["linear"]
            if sw is not None:
                d[2].x, d[2].y = sw["channels_removed"], sw["params_removed"]
                d[6].x, d[6].y = sw["channels_removed"], sw["macs_removed"]
            else:
                d[2].x = d[2].y = d[6].x = d[6].y = []
            d[3].x, d[3].y, d[3].text = pts["channels_removed"], pts["params_removed"], pts["roots"]
            if pts["macs_removed"]:
                d[7].x, d[7].y, d[7].text = pts["channels_removed"], pts["macs_removed"], pts["roots"]
        if sw is not None:
            k = min(range(len(sw["ratios"])), key=lambda i: abs(sw["ratios"][i] - c.pruning_ratio))
            self.note.value = (f"<span class='pe-muted'>uniform p = {sw['ratios'][k]:.1f} removes "
                               f"{100 * sw['params_removed'][k]:.1f}% of parameters and "
                               f"{100 * sw['macs_removed'][k]:.1f}% of MACs</span>")
        else:
            self.note.value = "<span class='pe-muted'>x: fraction of prunable channels removed so far</span>"
