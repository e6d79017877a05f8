"""The explorer's sensitivity panel (widgets): run a scan, see the heatmap, solve a budget, review or apply the plan.

A thin view over :class:`~.sensitivity_controller.SensitivityController` (``ex.sensitivity``), which holds the state
and does the work. The panel has

* the scan row: the ratios to scan and **Run scan** (the groups still to decide, on a copy of the model; the
  progress bar names the stage; interrupting the kernel stops it, leaves the model as it was, and the next run
  resumes from the points already evaluated);
* the **heatmap** (groups x ratios, coloured by the metric drop; the group on show is outlined);
* the budget row: what to keep (parameters / MACs / latency, as a fraction of the original) and **Solve**; then
  **Apply plan** (every remaining group at once), **Undo plan**, **Stop review**; the plan's predicted figures.

On the group card it adds the group's **sensitivity curve** (its scanned metric against the fraction of its
channels removed) with the selection marked, when the group was scanned. Charts are
:class:`~.plotly_chart.PlotlyChart` widgets showing the figures of :mod:`.sensitivity_figures`.
"""

from __future__ import annotations

import ipywidgets as widgets

from ..sensitivity import DEFAULT_RATIOS
from .plotly_chart import PlotlyChart
from .sensitivity_controller import SensitivityController
from .session import ExplorerError
from .views.common import esc
from .views.controls import action_button

__all__ = ["SensitivityPanel", "parse_ratios", "KIND_LABELS", "INTERRUPT_HELP"]

#: the budget kinds, as the dropdown names them
KIND_LABELS = {"MACs": "macs", "parameters": "params", "latency (measured)": "latency"}
INTERRUPT_HELP = ("Stop a scan with the notebook's Interrupt (■, or I I): the model is left as it was, and Run scan "
                  "again resumes from the points already evaluated.")


def parse_ratios(text: str) -> tuple:
    """Ratios typed as text, e.g. ``"0.1, 0.3, 0.5"`` or ``"0.2 0.4"``.

    >>> parse_ratios("0.5, 0.25 0.75")
    (0.5, 0.25, 0.75)
    """
    tokens = [t for t in str(text).replace(",", " ").split() if t]
    try:
        values = tuple(float(t) for t in tokens)
    except ValueError:
        raise ExplorerError(f"ratios: could not read {text!r} as numbers; type fractions of each group's channels "
                            "separated by commas, e.g. '0.1, 0.3, 0.5'") from None
    if not values:
        raise ExplorerError("ratios: type at least one fraction of each group's channels to remove, e.g. '0.5'")
    return values


class SensitivityPanel(widgets.VBox):
    """The sensitivity panel of ``app`` (an :class:`~.app.Explorer`); ``eval_fn`` is the metric (or None: the panel
    says how to give one). ``panel.controller`` is the :class:`SensitivityController` (``ex.sensitivity``)."""

    def __init__(self, app, eval_fn=None, ratios=DEFAULT_RATIOS):
        self.app = app
        self.controller = SensitivityController(app.controller, eval_fn, ratios=ratios)
        # scan row
        self.ratios_text = widgets.Text(value=", ".join(f"{r:g}" for r in ratios), description="ratios",
                                        layout=widgets.Layout(flex="1 1 200px", min_width="0"))
        self.ratios_text.add_class("pe-sens-ratios")
        self.scan_btn = action_button("Run scan", "play", "Prune every group still to decide alone at each ratio, "
                                      "evaluate eval_fn, restore (on a copy of the model)", "pe-sens-scan",
                                      self.run_scan, button_style="primary")
        self.note = widgets.HTML()
        self.note.add_class("pe-sens-note")
        self.note.layout = widgets.Layout(min_width="0")
        # heatmap
        self.heatmap = PlotlyChart()
        self.heatmap.add_class("pe-sens-heatmap")
        self.heatmap.layout.display = "none"
        # budget row
        self.kind = widgets.Dropdown(options=list(KIND_LABELS), value="MACs", description="keep",
                                     layout=widgets.Layout(width="230px"))
        self.target = widgets.BoundedFloatText(value=0.5, min=0.01, max=0.99, step=0.05,
                                               description="× original", layout=widgets.Layout(width="170px"),
                                               style={"description_width": "initial"})
        self.target.add_class("pe-sens-target")
        self.solve_btn = action_button("Solve", "bullseye", "Per-group counts that meet the target with the least "
                                       "metric lost according to the scan; the walk then pre-selects them",
                                       "pe-sens-solve", self.solve)
        self.apply_btn = action_button("Apply plan", "check-double", "Accept every remaining group with the plan's "
                                       "count", "pe-sens-apply",
                                       lambda: self.app.run(lambda c: self.controller.apply_plan(),
                                                            busy="applying the plan"))
        self.undo_btn = action_button("Undo plan", "undo", "Undo the applied plan: the model as it was before it",
                                      "pe-sens-undo-plan",
                                      lambda: self.app.run(lambda c: self.controller.undo_plan(),
                                                           busy="undoing the plan"))
        self.stop_btn = action_button("Stop review", "times", "Go back to the pruner's proposals",
                                      "pe-sens-stop-review",
                                      lambda: self.app.run(lambda c: self.controller.stop_review()))
        self.plan_info = widgets.HTML()
        self.plan_info.add_class("pe-sens-plan")
        self.plan_info.layout = widgets.Layout(min_width="0")
        self.budget_row = widgets.HBox([self.kind, self.target, self.solve_btn, self.apply_btn, self.undo_btn,
                                        self.stop_btn],
                                       layout=widgets.Layout(flex_flow="row wrap", align_items="center",
                                                             min_width="0", grid_gap="4px"))
        row = widgets.HBox([self.ratios_text, self.scan_btn],
                           layout=widgets.Layout(flex_flow="row wrap", align_items="center", min_width="0"))
        super().__init__([row, self.note, self.heatmap, self.budget_row, self.plan_info],
                         layout=widgets.Layout(min_width="0", width="auto"))
        self.add_class("pe-sensitivity-view")
        # the group's curve, on the group card
        self.curve = PlotlyChart()
        self.curve.add_class("pe-sens-curve")
        self.curve_title = widgets.HTML()
        self.curve_box = widgets.VBox([self.curve_title, self.curve], layout=widgets.Layout(min_width="0",
                                                                                          width="100%"))
        self.curve_box.add_class("pe-sens-curve-box")
        self.curve_box.layout.display = "none"
        card = getattr(app, "card", None)
        if card is not None:
            card.children = tuple(card.children) + (self.curve_box,)
        self.controller.subscribe(self.refresh)
        self.refresh()

    # ---- actions -------------------------------------------------------------------------------------------------
    def run_scan(self) -> bool:
        """What Run scan does: scan with the typed ratios (an interrupt is reported, not raised)."""
        def scan(c):
            try:
                self.controller.scan(ratios=parse_ratios(self.ratios_text.value))
            except KeyboardInterrupt:
                c.notify("sensitivity scan interrupted: the model and the walk are unchanged; the points evaluated "
                         "so far are cached, so Run scan resumes from there.", error=True)

        return self.app.run(scan, busy="scanning")

    def solve(self) -> bool:
        """What Solve does: a plan for the chosen target, reviewed in the walk."""
        return self.app.run(lambda c: self.controller.solve(float(self.target.value), kind=KIND_LABELS[self.kind.value]),
                            busy="solving the budget")

    # ---- drawing ---------------------------------------------------------------------------------------------------
    def refresh(self, event: str = "") -> None:
        s = self.controller
        c = s.controller
        has_metric = s.eval_fn is not None
        self.scan_btn.disabled = not has_metric or c.current is None
        if not has_metric:
            self.note.value = ("<span class='pe-muted'>To scan, give the explorer a metric: "
                               "<code>pe.Explorer(model, x, eval_fn=fn)</code> or "
                               "<code>ex.sensitivity.set_eval_fn(fn)</code>, where <code>fn(model) -> float</code> "
                               "is higher when better (e.g. accuracy on a held-out batch).</span>")
        elif s.table is None:
            self.note.value = f"<span class='pe-muted'>No scan yet. {esc(INTERRUPT_HELP)}</span>"
        else:
            t = s.table
            st = t.stats
            self.note.value = (f"<span class='pe-muted'>{len(t.groups)} groups × {len(t.ratios)} ratios, baseline "
                               f"metric {t.baseline:.4g}; scanned after {s.scanned_at} decisions, "
                               f"{st['evaluated']} points evaluated, {st['from_cache']} from the cache. "
                               f"{esc(INTERRUPT_HELP)}</span>")
        has_table = s.table is not None
        for w in (self.solve_btn, self.kind, self.target):
            w.disabled = not has_table
        self.apply_btn.disabled = s.plan is None or c.current is None
        self.undo_btn.disabled = not s.applied
        self.stop_btn.disabled = s.plan is None
        self.plan_info.value = self._plan_html()
        if has_table:
            self.heatmap.show(self._heatmap_figure())
            self.heatmap.layout.display = ""
        else:
            self.heatmap.layout.display = "none"
        self._refresh_curve()

    def _heatmap_figure(self):
        s = self.controller
        fig = s.heatmap_figure()
        data = s.heatmap()
        fig.update_layout(title=dict(text=f"Metric drop per group and ratio (baseline {data['baseline']:.4g})",
                                     font=dict(size=13)), height=min(max(220, 90 + 18 * len(data["groups"])), 720))
        if data["current"] is not None:
            k = data["groups"].index(data["current"])
            fig.add_shape(type="rect", xref="paper", yref="y", x0=0, x1=1, y0=k - 0.5,
                          y1=k + 0.5, line=dict(color="#212529", width=2), fillcolor="rgba(0,0,0,0)")
        return fig

    def _refresh_curve(self) -> None:
        s = self.controller
        if not s.has_curve():
            self.curve_box.layout.display = "none"
            return
        fig = s.curve_figure()
        fig.update_layout(title=None, height=230, margin=dict(l=45, r=10, t=10, b=40))
        data = s.curve()
        planned = s.planned_count()
        extra = f" · the plan removes {planned}" if planned is not None else ""
        self.curve_title.value = (f"<b>Sensitivity of {esc(data['key'])}</b> <span class='pe-muted'>(metric vs "
                                  f"fraction of its {data['channels']} channels removed; ◆ the selection"
                                  f"{esc(extra)})</span>")
        self.curve.show(fig)
        self.curve_box.layout.display = ""

    def _plan_html(self) -> str:
        s = self.controller
        p = s.plan
        if p is None:
            return ("<span class='pe-muted'>Solve a budget to get a plan: per-group counts meeting the target with "
                    "the least metric lost according to the scan.</span>") if s.table is not None else ""
        base, pred = p.base, p.predicted
        metric = ""
        if "metric" in pred:
            metric = f" · predicted metric {pred['metric']:.4g} (baseline {base.get('metric', float('nan')):.4g})"
        n = sum(1 for d in p if (d.remove or 0) > 0)
        orig = s.controller
        what = (f"{n} of {len(p)} scanned groups pruned · parameters {pred['params'] / max(orig.params0, 1):.1%} "
                f"and MACs {pred['macs'] / max(orig.macs0, 1):.1%} of the original{esc(metric)}")
        if s.applied:
            return (f"<div>Applied <b>{esc(p.name)}</b>: {what}. Undo plan restores the model; Finish exports "
                    "it.</div>")
        return (f"<div>Reviewing <b>{esc(p.name)}</b>: {what}. Each group is pre-selected with the plan's count: "
                "accept, adjust or skip it, or Apply plan.</div>")
