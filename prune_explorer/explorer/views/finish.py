"""The finish view: what the exploration did, layer by layer, and the buttons that take the pruned model away.

A per-layer table (channels, parameters, MACs: original -> pruned; only the changed layers unless asked), a bar
chart of the MACs of the costliest layers, original and pruned (:func:`..charts.macs_bars_figure`), the
totals (counted afresh on the model, exactly ``pe.utils.count_ops_and_params``), the groups left alone with the
reason, and Save (``pe.save_pruned`` format), Download script (``ex.code()``) and Export ONNX (checked shapes).
The report costs one forward pass, so it is made when the walk ends or when asked, not on every click.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

import ipywidgets as widgets

from ..charts import macs_bars_figure
from ..finish import FinishReport
from ..plotly_chart import PlotlyChart
from ..text import fmt_count
from .common import esc, esc_name, fmt_share
from .controls import action_button, path_box

_MAX_ROWS = 400


def _pair(a, b, fmt=lambda v: f"{v:,}") -> str:
    if a == b:
        return f"<span class='pe-pair'>{fmt(a)}</span>"
    return f"<span class='pe-pair'>{fmt(a)} → <b>{fmt(b)}</b></span>"


def report_html(r: FinishReport, only_changed: bool = True) -> str:
    """The report as HTML: totals, the per-layer table and the groups left alone (a pure function, for tests)."""
    pr, mr = r.removed_fraction("params"), r.removed_fraction("macs")
    macs_cell = ("<td>MACs</td><td>n/a</td><td>n/a</td><td></td>" if r.macs is None else
                 f"<td>MACs</td><td>{fmt_count(r.macs[0])}</td><td class='pe-total-macs' data-value='{r.macs[1]}'>"
                 f"{fmt_count(r.macs[1])}</td><td class='pe-removed'>&minus;{fmt_share(mr)}</td>")
    totals = (
        "<table class='pe-totals'><tr><th></th><th>original</th><th>pruned</th><th>removed</th></tr>"
        f"<tr><td>parameters</td><td>{r.params[0]:,}</td><td class='pe-total-params' data-value='{r.params[1]}'>"
        f"{r.params[1]:,}</td><td class='pe-removed'>&minus;{fmt_share(pr)}</td></tr><tr>{macs_cell}</tr></table>"
    )
    rows = r.changed_layers if only_changed else r.layers
    body = []
    for row in rows[:_MAX_ROWS]:
        ch = " · ".join(f"{side} {_pair(a, b, str)}" for side, (a, b) in row.channels.items())
        macs = "n/a" if row.macs is None else _pair(row.macs[0], row.macs[1], fmt_count)
        cls = " class='pe-changed'" if row.changed else ""
        body.append(f"<tr{cls}><td>{esc_name(row.name)}</td><td>{esc(row.type)}</td><td>{ch}</td>"
                    f"<td>{_pair(*row.params)}</td><td>{macs}</td></tr>")
    more = (f"<tr><td colspan='5' class='pe-muted'>... {len(rows) - _MAX_ROWS} more layers</td></tr>"
            if len(rows) > _MAX_ROWS else "")
    what = (f"{len(r.changed_layers)} of {len(r.layers)} layers changed" if only_changed
            else f"all {len(r.layers)} layers ({len(r.changed_layers)} changed)")
    table = ("<div class='pe-card-table pe-scroll pe-finish-table'><table><tr><th>layer</th><th>type</th>"
             f"<th>channels</th><th>parameters</th><th>MACs</th></tr>{''.join(body)}{more}</table></div>")
    left = ""
    if r.left_alone:
        items = "".join(f"<li><b>{esc(d['root'])}</b>: {esc(d['reason'])}</li>" for d in r.left_alone[:30])
        extra = f"<li class='pe-muted'>... {len(r.left_alone) - 30} more</li>" if len(r.left_alone) > 30 else ""
        left = (f"<div class='pe-left-alone'><b>Groups left alone ({len(r.left_alone)})</b>"
                f"<ul style='margin:2px 0'>{items}{extra}</ul></div>")
    pending = (f"<div class='pe-muted'>{r.groups_left} group(s) not decided yet stay as they are.</div>"
               if r.groups_left else "")
    return (f"<div class='pe-finish-report'>{totals}<div class='pe-muted'>{what}; {r.accepted} group(s) accepted"
            f"</div>{pending}{table}{left}</div>")


def macs_bars(r: FinishReport, top: int = 12):
    """The report's MACs per layer as a bar chart (``None`` when MACs could not be counted or no layer has any)."""
    rows = [row for row in r.layers if row.macs is not None and row.macs[0] > 0]
    if r.macs is None or not rows:
        return None
    return macs_bars_figure([row.name for row in rows], [row.macs[0] for row in rows],
                            [row.macs[1] for row in rows], top=top)


def _default_name(model_name: str, suffix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", model_name).strip("_").lower() or "model"
    return f"pruned_{stem}{suffix}"


class FinishView(widgets.VBox):
    """Summary, per-layer table, left-alone groups; Save / Save plan / Download script / Export ONNX."""

    def __init__(self, app):
        self.app = app
        c = app.controller
        name = type(c.model).__name__
        self.report: Optional[FinishReport] = None
        self._report_params: Optional[int] = None  # parameters when the report was made (stale after a change)
        self.summary = widgets.HTML()
        self.summary.add_class("pe-finish-summary")
        self.refresh_btn = action_button("Show the summary", "table",
                                         "Count the model as it is now and compare every layer with the original "
                                         "(one forward pass)", "pe-finish-refresh", self.make_report)
        self.all_layers = widgets.Checkbox(value=False, description="every layer (not only the changed ones)",
                                           indent=False, layout=widgets.Layout(width="auto"))
        self.all_layers.observe(lambda _: self._draw(), names="value")
        self.table = widgets.HTML()
        self.table.add_class("pe-finish-table-box")
        self.table.layout = widgets.Layout(min_width="0")
        self.macs_chart = PlotlyChart()
        self.macs_chart.add_class("pe-finish-macs")
        self.macs_chart.layout.display = "none"
        self.save_path = path_box(_default_name(name, ".pth"), "pe-save-path")
        self.save_btn = action_button("Save", "save", "pe.save_pruned: the pruning history (JSON) and the weights; "
                                      "reload with pe.load_pruned(fresh_model, path)", "pe-save", self.save)
        self.onnx_path = path_box(_default_name(name, ".onnx"), "pe-onnx-path")
        self.onnx_btn = action_button("Export ONNX", "share-square-o",
                                      "torch.onnx.export, then the file's input and output shapes are checked "
                                      "against the model (needs the onnx extra)", "pe-export-onnx", self.export_onnx)
        self.plan_path = path_box(_default_name(name, "_plan.json"), "pe-plan-path")
        self.plan_btn = action_button("Save plan", "list",
                                      "The decisions as a pruning plan (JSON: how many channels per group, not "
                                      "which); pe.apply_plan(model, pe.PruningPlan.load(path), ...) applies it to "
                                      "another copy, e.g. the real weights behind a meta-device model",
                                      "pe-save-plan", self.save_plan)
        self.script_btn = action_button("Download script", "download",
                                        "A Python script that applies the same pruning to a fresh model "
                                        "(ex.code()), no widgets needed", "pe-download-script", self.download_script)
        self.verify_btn = action_button("Verify script", "check-circle",
                                        "Run the downloaded script in a separate Python process and compare its "
                                        "pruned model with this one (parameters and outputs)", "pe-verify-script",
                                        self.verify_script)
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center", width="100%")
        super().__init__([
            widgets.HTML("<b>Finish &amp; export</b>"),
            self.summary,
            widgets.HBox([self.refresh_btn, self.all_layers], layout=wrap),
            self.table,
            self.macs_chart,
            widgets.HBox([self.save_path, self.save_btn], layout=wrap),
            widgets.HBox([self.plan_path, self.plan_btn], layout=wrap),
            widgets.HBox([self.onnx_path, self.onnx_btn], layout=wrap),
            widgets.HBox([self.script_btn, self.verify_btn], layout=wrap),
        ])
        self.add_class("pe-finish-view")
        self.refresh()

    # ---- the report -----------------------------------------------------------------------------------------------
    def make_report(self) -> bool:
        """Count the model now and draw the report (shown in the status line if it fails)."""
        def work(c):
            self.report = c.report()
            self._report_params = c.figures()["params_now"]

        ok = self.app.run(work, busy="counting the pruned model")
        self._draw()
        return ok

    def _draw(self) -> None:
        if self.report is None:
            self.table.value = ""
            self.macs_chart.layout.display = "none"
            return
        stale = self._report_params != self.app.controller.figures()["params_now"]
        note = ("<div class='pe-status-error'>The model changed since this summary: press Refresh.</div>"
                if stale else "")
        self.table.value = note + report_html(self.report, only_changed=not self.all_layers.value)
        fig = macs_bars(self.report)
        if fig is not None:
            self.macs_chart.show(fig)
        self.macs_chart.layout.display = "" if fig is not None else "none"
        self.refresh_btn.description = "Refresh the summary"

    def refresh(self, event: str = "") -> None:
        if event in ("output", "status"):
            return  # the summary and the report are as they were
        c = self.app.controller
        f = c.figures()
        if c.current is None:
            self.summary.value = (
                f"<div class='pe-done'><span class='pe-big'>All groups decided.</span> {f['groups_accepted']} "
                f"accepted, {f['groups_skipped']} skipped, {f['groups_guard_skipped']} skipped by guards: "
                f"parameters <span class='pe-removed'>&minus;{fmt_share(f['params_removed'])}</span>, MACs "
                f"<span class='pe-removed'>&minus;{fmt_share(f['macs_removed'])}</span> of the original. "
                "Undo to go back.</div>")
            if event in ("accept", "skip", "accept_all", "ignore", "ratio", "options"):
                self.make_report()  # the walk just ended: the summary is what the user wants to see
                return
        else:
            self.summary.value = (f"<span class='pe-muted'>{f['groups_left']} group(s) left to decide; you can "
                                  "save or export at any point (undecided groups stay as they are).</span>")
        if event and event != "status":
            self._draw()

    # ---- taking the model away ------------------------------------------------------------------------------------
    def _write(self, box: widgets.Text, busy: str, write: Callable[[object, str], str]) -> bool:
        """Run ``write(controller, path)`` for the path in ``box`` through the app (busy state, clear errors) and
        put the message it returns on the status line. Returns whether it worked."""
        path = box.value.strip()
        return self.app.run(lambda c: c.notify(write(c, path)), busy=f"{busy} {path}")

    def save(self) -> bool:
        """Save the pruned model (``pe.save_pruned`` format) to the path in the box."""
        def write(c, path):
            written = c.save(path)
            return (f"saved the pruned model to {written} ({Path(written).stat().st_size / 1e6:.1f} MB); reload it "
                    "with pe.load_pruned(model, path) on a freshly built model")
        return self._write(self.save_path, "saving to", write)

    def save_plan(self) -> bool:
        """Write the accepted decisions as a pruning plan (``controller.export_plan``) to the path in the box."""
        def write(c, path):
            plan = c.export_plan(path)
            return (f"saved the plan ({len(plan)} groups, {plan.predicted['params']:,} parameters predicted) to "
                    f"{path}; apply it with pe.apply_plan(model, pe.PruningPlan.load(path), example_inputs=..., "
                    "importance=...)")
        return self._write(self.plan_path, "saving the plan to", write)

    def export_onnx(self) -> bool:
        """Export ONNX to the path in the box; the file's input and output shapes are checked."""
        def write(c, path):
            res = c.export_onnx(path)
            ins = ", ".join(f"{n} {list(s)}" for n, s in res.inputs)
            outs = ", ".join(f"{n} {list(s)}" for n, s in res.outputs)
            return (f"exported {res.path} ({res.size_bytes / 1e6:.1f} MB, opset {res.opset}); checked: inputs "
                    f"{ins}, outputs {outs}")
        return self._write(self.onnx_path, "exporting ONNX (this can take a while) to", write)

    def download_script(self) -> dict:
        """Send the reproducing script to the browser as a file download; returns what was sent."""
        payload = {"event": "download", "filename": "reproduce_pruning.py", "text": self.app.controller.code()}
        self.app.bridge.send(payload)
        c = self.app.controller
        self.app.notify("downloading reproduce_pruning.py: it applies the same pruning to a fresh model"
                        + (" (Verify script runs it and compares)" if c.exporter.runs_as_downloaded() else
                           "; fill in the line that builds the model, or create the explorer with model_fn=... so "
                           "the script builds it by itself"))
        return payload

    def verify_script(self) -> None:
        """Run the script in a subprocess and compare (the result goes to the status line)."""
        self.app.run(lambda c: c.verify_script(), busy="running the downloaded script in a separate process")
