"""The group card: the group on show, what accepting it would change, and the controls.

A table of every coupled layer (qualified name, type, side, channels before/after, parameters removed), an
importance histogram (plotly, :func:`..charts.histogram_spec`) with the channels proposed for removal coloured and the threshold marked, the
predicted change in parameters and MACs, and the buttons Accept, Skip, Adjust (slider, or channels picked by
hand), Undo and Accept all remaining. Groups a guard of the pruner passed over are listed with their reason.
"""

from __future__ import annotations

from typing import List, Optional

import ipywidgets as widgets
import numpy as np

from ..charts import histogram_spec
from ..plotly_chart import PlotlyChart
from .common import esc, esc_name, fmt_count, fmt_share

_MAX_ROWS = 60


def members_table_html(card: dict, max_rows: int = _MAX_ROWS) -> str:
    """The coupled layers of a group card as an HTML table (a pure function, for tests)."""
    rows = card["prediction"]["rows"]
    head = ("<tr><th>layer</th><th>type</th><th>side</th><th>channels</th><th>params removed</th></tr>")
    body = []
    for r in rows[:max_rows]:
        cls = " class='pe-root'" if r["is_root"] else ""
        ch = (f"{r['channels_before']} → {r['channels_after']}" if r["channels_after"] != r["channels_before"]
              else f"{r['channels_before']}")
        body.append(
            f"<tr{cls}><td>{esc_name(r['name'])}</td><td>{esc(r['type'])}</td><td>{esc(r['side'])}</td>"
            f"<td>{ch}</td><td>{r['params_removed']:,}</td></tr>"
        )
    more = (f"<tr><td colspan='5' class='pe-muted'>... {len(rows) - max_rows} more members</td></tr>"
            if len(rows) > max_rows else "")
    return f"<div class='pe-card-table pe-scroll'><table>{head}{''.join(body)}{more}</table></div>"


def depth_title_html(card: dict, total: int) -> str:
    """The title of a depth group's card: the block, its class, score, parameters and MACs (pure, for tests)."""
    d = card["depth"]
    score = "" if d["score"] is None else f"{d['score_name']} {d['score']:.4g} (lowest goes first) · "
    macs = "" if d["macs"] is None else f", {fmt_count(d['macs'])} MACs"
    what = "proposed for removal" if d["remove_proposed"] else "the pruner keeps it"
    return (
        f"<div><span class='pe-muted'>Group {card['position']} of ~{total} · depth (a whole block)</span><br>"
        f"<span class='pe-big pe-card-root'>{esc(d['block'])}</span> "
        f"<span class='pe-muted pe-depth-info'>({esc(d['type'])}, {score}{d['params']:,} parameters{macs}; "
        f"{what})</span></div>"
    )


def title_html(card: dict, total: int) -> str:
    if card.get("depth"):
        return depth_title_html(card, total)
    scope = f" · scope {esc(card['scope'])}" if card.get("scope") else ""
    sel = len(card["selected"]) / card["channels"] if card["channels"] else 0.0
    ratio = f" · selected {sel:.2f}"  # the same figure as the header's "current group"
    if card.get("pruning_ratio") is not None and abs(card["pruning_ratio"] - sel) > 5e-3:
        ratio += f" (the pruner's ratio {card['pruning_ratio']:.2f})"
    units = f" in {card['n_units']} units" if card["n_units"] != card["channels"] else ""
    return (
        f"<div><span class='pe-muted'>Group {card['position']} of ~{total}</span><br>"
        f"<span class='pe-big pe-card-root'>{esc(card['root'])}</span> "
        f"<span class='pe-muted'>({esc(card['root_type'])}, {card['channels']} channels{units}, "
        f"{len(card['prediction']['rows'])} members{scope}{ratio})</span></div>"
    )


def prediction_html(card: dict) -> str:
    p = card["prediction"]
    if card.get("depth"):
        macs = ("" if p["macs_removed"] is None else
                f" · MACs <span class='pe-removed'>&minus;{fmt_count(p['macs_removed'])}</span> "
                f"(&minus;{fmt_share(p['macs_removed_pct'])}) → {fmt_count(p['macs_after'])}")
        what = "removes the whole block" if p["n_removed"] else "keeps the block (set remove to 1 to remove it)"
        return (f"<div class='pe-prediction'>Accepting {what}: parameters <span class='pe-removed pe-pred-params'>"
                f"&minus;{p['params_removed']:,}</span> (&minus;{fmt_share(p['params_removed_pct'])}) → "
                f"{p['params_after']:,}{macs} <span class='pe-muted'>(% of the model as it is now)</span></div>")
    prop = "" if card["follows_proposal"] else " <span class='pe-muted'>(adjusted; the pruner proposed " \
                                                f"{len(card['proposed'])})</span>"
    macs = ("" if p["macs_removed"] is None else
            f" · MACs <span class='pe-removed'>&minus;{fmt_count(p['macs_removed'])}</span> "
            f"(&minus;{fmt_share(p['macs_removed_pct'])}) → {fmt_count(p['macs_after'])}")
    return (
        f"<div class='pe-prediction'>Accepting removes <b>{p['n_removed']}</b> of {card['channels']} channels{prop}: "
        f"parameters <span class='pe-removed pe-pred-params'>&minus;{p['params_removed']:,}</span> "
        f"(&minus;{fmt_share(p['params_removed_pct'])}) → {p['params_after']:,}{macs} "
        "<span class='pe-muted'>(% of the model as it is now)</span></div>"
    )


def recover_html(run) -> str:
    """The last Recover's metric before and after (``run``: a ``RecoveryRun`` or None; pure, for tests)."""
    if run is None:
        return ""
    better = run.after > run.before if run.higher_is_better else run.after < run.before
    stopped = f", stopped after {run.steps} of {run.steps_asked} steps" if run.interrupted else f", {run.steps} steps"
    return (f"<span class='pe-muted'>{esc(run.metric_name)}:</span> {run.before:.4g} → "
            f"<b class='{'pe-better' if better else 'pe-worse'}'>{run.after:.4g}</b>"
            f"<span class='pe-muted'>{stopped}</span>")


def guard_html(items: List[dict]) -> str:
    if not items:
        return ""
    lis = "".join(f"<li><b>{esc(d['root'])}</b>: {esc(d['reason'])}</li>" for d in items[-8:])
    more = f"<li class='pe-muted'>... and {len(items) - 8} earlier</li>" if len(items) > 8 else ""
    return (f"<div class='pe-guard'><span class='pe-muted'>Skipped by the pruner's guards ({len(items)}):</span>"
            f"<ul style='margin:2px 0'>{more}{lis}</ul></div>")


def head_bars_figure(heads: List[dict], height: int = 250):
    """One bar per attention head (a head group goes whole): its score, coloured removed or kept (pure, for tests;
    trace 0: removed heads, trace 1: kept heads). Under grouped-query attention (``query_heads`` > 1) a bar is one
    key/value head with its query heads, which go together, and the labels say so. (:func:`head_bars_spec` as a
    figure.)"""
    import plotly.graph_objects as go

    return go.Figure(head_bars_spec(heads, height), _validate=False)


def head_bars_spec(heads: List[dict], height: int = 250) -> dict:
    """:func:`head_bars_figure` as plain JSON (``{"data", "layout"}``, for :meth:`PlotlyChart.show_spec`)."""
    from ..charts import json_number
    from ..colors import KEEP_COLOR, REMOVE_COLOR

    q = max((int(h.get("query_heads", 1)) for h in heads), default=1)
    label = (lambda h: f"kv head {h['head']}") if q > 1 else (lambda h: f"head {h['head']}")
    axis = (f"key/value head with its {q} query heads (they go together)" if q > 1 else
            "attention head (whole heads go)")
    data = []
    for removed, name, color in ((True, "proposed for removal", REMOVE_COLOR), (False, "kept", KEEP_COLOR)):
        hs = [h for h in heads if h["removed"] == removed]
        n = len(hs)
        count = (f"{n} kv head{'s' * (n != 1)}, {n * q} query heads" if q > 1 else f"{n} head{'s' * (n != 1)}")
        data.append(dict(type="bar", x=[label(h) for h in hs], y=[json_number(h["score"]) for h in hs],
                         name=f"{name} ({count})", marker=dict(color=color),
                         hovertemplate="%{x}: score %{y:.4g} " + name + "<extra></extra>"))
    layout = dict(height=height, barmode="overlay", margin=dict(l=48, r=12, t=30, b=40), template="plotly_white",
                  legend=dict(orientation="h", x=0, y=1.02, xanchor="left", yanchor="bottom"),
                  xaxis=dict(title=dict(text=axis, standoff=6),
                             categoryorder="array", categoryarray=[label(h) for h in heads]),
                  yaxis=dict(title=dict(text="head score (mean importance)", standoff=4), rangemode="tozero"))
    return dict(data=data, layout=layout)


def histogram_data(card: dict):
    """(kept importances, removed importances, threshold) of a card, finite values only (numpy arrays, in candidate
    order)."""
    imp = np.array(card["importance"], dtype=float).reshape(-1)  # (None becomes NaN)
    removed = np.isin(np.asarray(card["candidates"], dtype=np.int64), np.asarray(card["selected"], dtype=np.int64))
    ok = np.isfinite(imp)
    return imp[ok & ~removed], imp[ok & removed], card["threshold"]


class GroupCardView(widgets.VBox):
    """The current group and the decision buttons."""

    def __init__(self, app):
        self.app = app
        self.title = widgets.HTML()
        self.title.add_class("pe-card-title")
        self.table = widgets.HTML()
        self.table.add_class("pe-card-members")
        self.prediction = widgets.HTML()
        self.prediction.add_class("pe-card-prediction")
        self.guards = widgets.HTML()
        self.guards.add_class("pe-card-guards")
        self.hist = PlotlyChart()
        self.hist_box = widgets.Box([self.hist], layout=widgets.Layout(width="100%", min_width="0"))
        self.hist_box.add_class("pe-hist")
        b = widgets.Layout(width="auto")
        self.accept_btn = widgets.Button(description="Accept", button_style="success", icon="check", layout=b,
                                         tooltip="Prune the selected channels from every coupled layer")
        self.skip_btn = widgets.Button(description="Skip", icon="forward", layout=b, tooltip="Leave this group as it is")
        self.undo_btn = widgets.Button(description="Undo", icon="undo", button_style="warning", layout=b,
                                       tooltip="Restore the model as it was before the last accepted group")
        self.restart_btn = widgets.Button(description="Restart walk", icon="refresh", layout=b,
                                          tooltip="Undo every decision and start again from the first group")
        self.rewalk_btn = widgets.Button(description="Re-walk decided", icon="repeat", layout=b,
                                         tooltip="Undo every decision and walk the decided groups again, each with "
                                                 "its earlier choice pre-selected")
        self.restart_btn.add_class("pe-restart")
        self.rewalk_btn.add_class("pe-rewalk")
        self.restart_btn.on_click(lambda _: self.app.run(lambda c: c.restart_walk(), busy="restoring the model"))
        self.rewalk_btn.on_click(lambda _: self.app.run(lambda c: c.rewalk(), busy="restoring the model"))
        self.recover_btn = widgets.Button(description="Recover", icon="graduation-cap", layout=b,
                                          tooltip="Distil the unpruned model into the pruned one on the calibration "
                                                  "data (Interrupt stops it; Undo puts the weights back)")
        self.recover_btn.add_class("pe-recover")
        self.recover_steps = widgets.BoundedIntText(value=100, min=1, max=100000, description="steps",
                                                    layout=widgets.Layout(width="150px"),
                                                    style={"description_width": "40px"})
        self.recover_steps.add_class("pe-recover-steps")
        self.recover_result = widgets.HTML()
        self.recover_result.add_class("pe-recover-result")
        self.recover_btn.on_click(lambda _: self.app.run(lambda c: c.recover(steps=int(self.recover_steps.value)),
                                                         busy="recovering"))
        self.all_btn = widgets.Button(description="Accept all remaining", icon="fast-forward", layout=b,
                                      tooltip="Accept every remaining group as the pruner proposes it")
        for w, cls in ((self.accept_btn, "pe-accept"), (self.skip_btn, "pe-skip"), (self.undo_btn, "pe-undo"),
                       (self.all_btn, "pe-accept-all")):
            w.add_class(cls)
        self.accept_btn.on_click(lambda _: self.app.run(lambda c: c.accept(), busy="pruning the group"))
        self.skip_btn.on_click(lambda _: self.app.run(lambda c: c.skip()))
        self.undo_btn.on_click(lambda _: self.app.run(lambda c: c.undo(), busy="restoring the model"))
        self.all_btn.on_click(lambda _: self.app.run(lambda c: c.accept_all_remaining(),
                                                     busy="accepting every remaining group"))
        self.slider = widgets.IntSlider(description="remove", min=0, max=1, step=1, continuous_update=False,
                                        layout=widgets.Layout(flex="1 1 220px", min_width="160px", max_width="420px"),
                                        style={"description_width": "55px"})
        self.slider.add_class("pe-adjust-slider")
        self.slider.observe(self._on_slider, names="value")
        self.pick = widgets.Text(placeholder="pick channels by hand, e.g. 0, 5, 7 (Enter)", continuous_update=False,
                                 layout=widgets.Layout(flex="1 1 200px", min_width="140px", max_width="320px"))
        self.pick.add_class("pe-pick")
        self.pick.observe(self._on_pick_enter, names="value")  # Enter (or leaving the box) applies it
        self.pick_btn = widgets.Button(description="Use these", layout=widgets.Layout(width="90px"))
        self.pick_btn.on_click(self._on_pick)
        self.reset_btn = widgets.Button(description="Proposal", layout=widgets.Layout(width="85px"),
                                        tooltip="Back to the pruner's proposal")
        self.reset_btn.on_click(self._on_reset)
        self.done = widgets.HTML()
        self.done.add_class("pe-card-done")
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center", width="100%")
        self.buttons = widgets.HBox([self.accept_btn, self.skip_btn, self.undo_btn, self.all_btn, self.restart_btn,
                                     self.rewalk_btn], layout=wrap)
        self.recover_row = widgets.HBox([self.recover_btn, self.recover_steps, self.recover_result], layout=wrap)
        self.details = widgets.VBox([
            widgets.HBox([self.slider, self.reset_btn], layout=wrap),
            widgets.HBox([self.pick, self.pick_btn], layout=wrap),
            self.prediction,
            self.hist_box,
            self.table,
        ])
        super().__init__([self.guards, self.title, self.done, self.buttons, self.recover_row, self.details])
        self.add_class("pe-group-card")
        self._syncing = False
        self.refresh()

    # ---- events -----------------------------------------------------------------------------------------------------
    def _on_slider(self, change) -> None:
        if self._syncing:
            return
        n = int(change["new"])
        allowed = self.app.controller.allowed_counts() if self.app.controller.current is not None else [n]
        if n not in allowed:  # snap to the nearest reachable count (units, round_to)
            n = min(allowed, key=lambda a: abs(a - n))
        self.app.run(lambda c: c.adjust(n=n))

    def _on_pick_enter(self, change) -> None:
        if not self._syncing and (change["new"] or "").strip():
            self._on_pick()

    def _on_pick(self, _=None) -> None:
        text = self.pick.value
        if not text.strip():
            self.app.notify("type the channels to remove first, e.g. 0, 5, 7", error=True)
            return
        self.app.run(lambda c: c.adjust(idxs=text))

    def _on_reset(self, _=None) -> None:
        self.app.run(lambda c: c.use_proposal())

    # ---- drawing ----------------------------------------------------------------------------------------------------
    def refresh(self, event: str = "") -> None:
        if event in ("output", "sweep", "speed", "status"):
            return  # the group on show and its figures are as they were
        c = self.app.controller
        card = c.card()
        self.guards.value = guard_html(c.guard_skipped())
        rec = getattr(c, "recovery", None)
        self.undo_btn.disabled = not (any(d.action == "accept" for d in c.decisions) or (rec and rec.on_top()))
        if rec is not None:
            self.recover_btn.disabled = not rec.available
            self.recover_btn.tooltip = rec.reason or self.recover_btn.tooltip
            self.recover_result.value = recover_html(rec.last)
        self.rewalk_btn.disabled = not any(d.action in ("accept", "skip") for d in c.decisions)
        finished = card is None
        for w in (self.accept_btn, self.skip_btn, self.all_btn):
            w.disabled = finished
        self.details.layout.display = "none" if finished else ""
        self.title.layout.display = "none" if finished else ""
        self.done.layout.display = "" if finished else "none"
        f = c.figures()
        if finished and getattr(c, "blocked", ""):
            self.done.value = f"<div class='pe-done pe-blocked'>{esc(c.blocked)}</div>"
            return
        if finished:
            self.done.value = (
                "<div class='pe-done'><span class='pe-big'>All groups decided.</span> "
                f"{f['groups_accepted']} accepted, {f['groups_skipped']} skipped, {f['groups_guard_skipped']} "
                "skipped by guards.<br><span class='pe-muted'>Undo to go back, Restart walk to start over, or Re-walk "
                "decided to go through the groups again with your choices pre-selected. The summary, Save, Download script "
                "and Export ONNX are under Finish &amp; export below; in code, ex.model is the pruned model.</span>"
                "</div>")
            return
        self.title.value = title_html(card, f["groups_total"])
        self.prediction.value = prediction_html(card)
        self.table.value = members_table_html(card)
        allowed = card["allowed_counts"]
        self._syncing = True
        try:
            with self.slider.hold_sync():  # one message, one redraw of the slider
                self.slider.max = max(card["max_removable"], 1)
                self.slider.step = _step(allowed)
                self.slider.value = len(card["selected"])
                self.slider.disabled = card["max_removable"] == 0
        finally:
            self._syncing = False
        if event in ("accept", "skip", "undo", "accept_all", "ignore", "ratio", "options", "restart", "rewalk",
                     "rollback"):
            self._syncing = True
            try:
                self.pick.value = ""  # another group on show: old channel numbers would mean something else
            finally:
                self._syncing = False
        self.hist_box.layout.display = "none" if card.get("depth") else ""
        self.pick.layout.display = self.pick_btn.layout.display = "none" if card.get("depth") else ""
        if card.get("depth"):
            return  # one block: its score is in the title, no histogram
        if card.get("heads"):
            self.hist.show_spec(head_bars_spec(card["heads"]))
        else:
            kept, removed, thr = histogram_data(card)
            self.hist.show_spec(histogram_spec(kept, removed, thr))


def _step(allowed: List[int]) -> int:
    if len(allowed) < 2:
        return 1
    diffs = {b - a for a, b in zip(allowed, allowed[1:])}
    return min(diffs) if len(diffs) == 1 else 1
