"""Ratio curves: fractions of parameters and MACs removed vs fraction of channels removed, in one chart.

Each accepted group adds a point to each quantity's line; the quadratic rule ``1-(1-p)^2`` and the linear ``p`` are
drawn as references; the sweep button draws the whole curve of uniform pruning at p = 0 .. 0.9 for this model,
computed from the group structure (nothing is pruned). The chart is a plotly chart
(:func:`..charts.ratio_curves_spec` in a :class:`..plotly_chart.PlotlyChart`): parameters and MACs share its axes
(both are fractions of the original model), so a decision redraws one chart, not two. A model whose MACs cannot be
counted shows parameters alone.
"""

from __future__ import annotations

import ipywidgets as widgets

from ..charts import RatioSeries, ratio_curves_spec
from ..plotly_chart import PlotlyChart
from .common import MACS_COLOR, PARAMS_COLOR
from .controls import action_button


class RatioCurvesView(widgets.VBox):
    """Live ratio curves and the sweep button."""

    def __init__(self, app):
        self.app = app
        self.chart = PlotlyChart(layout=widgets.Layout(width="100%", min_width="0", max_width="640px",
                                                       overflow="hidden"))
        self.fig_box = widgets.Box([self.chart], layout=widgets.Layout(width="100%", min_width="0"))
        self.fig_box.add_class("pe-curves")
        self.sweep_btn = action_button("Sweep p = 0…0.9", "line-chart", "Uniform pruning of every group at p = 0, "
                                       "0.1, ... 0.9 (computed from the group structure, nothing is pruned)",
                                       "pe-sweep", lambda: self.app.run(lambda c: c.sweep(), busy="sweeping"))
        self.note = widgets.HTML()
        self.note.layout = widgets.Layout(min_width="0")
        super().__init__([widgets.HBox([self.sweep_btn, self.note],
                                       layout=widgets.Layout(flex_flow="row wrap", align_items="center")),
                          self.fig_box])
        self.add_class("pe-curves-view")
        self.refresh()

    def refresh(self, event: str = "") -> None:
        if event in ("output", "adjust", "speed", "status"):
            return  # no decision taken or undone, no sweep: the curves are as they were
        c = self.app.controller
        data = c.curves()
        pts, sw = data["points"], data["sweep"]
        series = [RatioSeries("parameters", pts["params_removed"], PARAMS_COLOR,
                              None if sw is None else sw["params_removed"])]
        if pts["macs_removed"]:  # (MACs could not be counted for this model otherwise)
            series.append(RatioSeries("MACs", pts["macs_removed"], MACS_COLOR,
                                      None if sw is None else sw["macs_removed"]))
        title = "Parameters and MACs removed" if len(series) == 2 else "Parameters removed"
        self.chart.show_spec(ratio_curves_spec(
            title, pts["channels_removed"], series, pts["roots"], None if sw is None else sw["channels_removed"],
            () if sw is None else sw["ratios"], height=340))
        if sw is not None:
            k = min(range(len(sw["ratios"])), key=lambda i: abs(sw["ratios"][i] - c.pruning_ratio))
            self.note.value = (f"<span class='pe-muted'>uniform p = {sw['ratios'][k]:.1f} removes "
                               f"{100 * sw['params_removed'][k]:.1f}% of parameters and "
                               f"{100 * sw['macs_removed'][k]:.1f}% of MACs (of the original model)</span>")
        else:
            self.note.value = ("<span class='pe-muted'>x: fraction of prunable channels removed so far; y: of the "
                               "original model</span>")
