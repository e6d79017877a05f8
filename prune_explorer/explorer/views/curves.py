"""Ratio curves: fraction of parameters (left) and MACs (right) removed vs fraction of channels removed.

Each accepted group adds a point; the quadratic rule ``1-(1-p)^2`` and the linear ``p`` are drawn as
references; the sweep button draws the whole curve of uniform pruning at p = 0 .. 0.9 for this model, computed
from the group structure (nothing is pruned). The two panels are plotly charts (:func:`..charts.ratio_curve_figure`
in a :class:`..plotly_chart.PlotlyChart`) that sit side by side and wrap to one column in a narrow box.
"""

from __future__ import annotations

import ipywidgets as widgets

from ..charts import ratio_curve_figure
from ..plotly_chart import PlotlyChart
from .common import MACS_COLOR, PARAMS_COLOR
from .controls import action_button


class RatioCurvesView(widgets.VBox):
    """Live ratio curves and the sweep button."""

    def __init__(self, app):
        self.app = app
        self.params_chart = PlotlyChart(layout=widgets.Layout(flex="1 1 240px", min_width="0", max_width="520px",
                                                              overflow="hidden"))
        self.macs_chart = PlotlyChart(layout=widgets.Layout(flex="1 1 240px", min_width="0", max_width="520px",
                                                            overflow="hidden"))
        self.fig_box = widgets.Box([self.params_chart, self.macs_chart],
                                   layout=widgets.Layout(width="100%", min_width="0", flex_flow="row wrap"))
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
        xs, roots = pts["channels_removed"], pts["roots"]
        self.params_chart.show(ratio_curve_figure(
            "Parameters removed", xs, pts["params_removed"], roots, color=PARAMS_COLOR,
            sweep=None if sw is None else (sw["channels_removed"], sw["params_removed"]),
            sweep_ratios=() if sw is None else sw["ratios"]))
        if pts["macs_removed"]:
            self.macs_chart.show(ratio_curve_figure(
                "MACs removed", xs, pts["macs_removed"], roots, color=MACS_COLOR,
                sweep=None if sw is None else (sw["channels_removed"], sw["macs_removed"]),
                sweep_ratios=() if sw is None else sw["ratios"]))
            self.macs_chart.layout.display = ""
        else:  # MACs could not be counted for this model
            self.macs_chart.layout.display = "none"
        if sw is not None:
            k = min(range(len(sw["ratios"])), key=lambda i: abs(sw["ratios"][i] - c.pruning_ratio))
            self.note.value = (f"<span class='pe-muted'>uniform p = {sw['ratios'][k]:.1f} removes "
                               f"{100 * sw['params_removed'][k]:.1f}% of parameters and "
                               f"{100 * sw['macs_removed'][k]:.1f}% of MACs (of the original model)</span>")
        else:
            self.note.value = ("<span class='pe-muted'>x: fraction of prunable channels removed so far; y: of the "
                               "original model</span>")
