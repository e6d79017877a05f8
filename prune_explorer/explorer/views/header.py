"""The header: parameters and MACs (original, now, % removed), groups done / skipped / left, channel ratio."""

from __future__ import annotations

import ipywidgets as widgets

from .common import esc, fmt_count, fmt_share


def _removed(x, extra: str = "") -> str:
    """The removed share as a red "−12.3%", or a muted "none removed yet" (never "−0.0%")."""
    if x is not None and x <= 0:
        return f"<span class='pe-muted{extra}'>none removed yet</span>"
    return f"<span class='pe-removed{extra}'>" + ("" if x is None else "&minus;") + f"{fmt_share(x)}</span>"


def output_html(change, reason: str, curve: dict, pending: bool = False) -> str:
    """The output-change line of the header and a small curve over the decisions (pure, for tests). ``pending``:
    the model changed and the new figure is being measured (the last one is shown, marked as such)."""
    from ..output_change import output_change_text

    if pending:
        last = f"<span class='pe-output-now'>{esc(output_change_text(change))}</span> " if change else ""
        return (f"<div class='pe-output-line pe-output-pending'><b>Output change</b>: <span class='pe-muted'>"
                f"{last}(measuring the model as it is now...)</span></div>")
    if change is None:
        return f"<div class='pe-output-line pe-muted'>{esc(reason)}</div>"
    if change.get("kind") == "error":
        return (f"<div class='pe-output-line pe-output-error'>The output change could not be measured: "
                f"{esc(change['error'])}. Check the model still runs (Undo the last decision).</div>")
    return (f"<div class='pe-output-line'><b>Output change</b>: <span class='pe-output-now'>"
            f"{esc(output_change_text(change))}</span>{sparkline_svg(curve)}</div>")


def sparkline_svg(curve: dict, width: int = 160, height: int = 28) -> str:
    """A small SVG curve of ``curve["value"]`` over ``curve["step"]`` (one point per measured decision)."""
    xs, ys = curve.get("step") or [], curve.get("value") or []
    if len(xs) < 2:
        return ""
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    sx = (width - 6) / ((x1 - x0) or 1)
    sy = (height - 6) / ((y1 - y0) or 1)
    pts = " ".join(f"{3 + (x - x0) * sx:.1f},{height - 3 - (y - y0) * sy:.1f}" for x, y in zip(xs, ys))
    return (f"<svg class='pe-output-curve' width='{width}' height='{height}' data-points='{len(xs)}'>"
            f"<title>{esc(curve.get('label', ''))} after each decision (from {ys[0]:.3g} to {ys[-1]:.3g})</title>"
            f"<polyline points='{pts}' fill='none' stroke='#e8590c' stroke-width='1.5'/></svg>")


def header_html(f: dict) -> str:
    """The header's HTML for the figures of :meth:`ExplorerController.figures` (a pure function, for tests).

    Percentages here are of the *original* model (the card's are of the model as it is now); both say so.
    """
    macs_now = f.get("macs_now")
    macs_cell = (
        f"<div><div class='pe-muted'>MACs</div><div class='pe-big'><span class='pe-macs-now'>{fmt_count(macs_now)}</span>"
        f" <span class='pe-muted'>/ {fmt_count(f.get('macs_original'))}</span></div>"
        f"<div>{_removed(f.get('macs_removed'))}"
        " <span class='pe-muted'>of original</span></div></div>"
    )
    cur = f.get("current_ratio")
    cur_txt = "finished" if f.get("finished") else ("n/a" if cur is None else f"{cur:.2f} selected")
    return (
        "<div class='pe-header'><div class='pe-header-cells'>"
        f"<div><div class='pe-muted'>Parameters</div><div class='pe-big'>"
        f"<span class='pe-params-now' data-value='{int(f['params_now'])}'>{f['params_now']:,}</span>"
        f" <span class='pe-muted'>/ {f['params_original']:,}</span></div>"
        f"<div>{_removed(f['params_removed'], ' pe-params-removed')}"
        f" <span class='pe-muted'>of original ({fmt_count(f['params_now'])} left)</span></div></div>"
        + macs_cell
        + f"<div><div class='pe-muted'>Groups</div><div class='pe-big pe-groups'>{f['groups_accepted']} accepted · "
        f"{f['groups_skipped']} skipped · {f['groups_left']} left</div>"
        f"<div class='pe-muted'>{f['groups_guard_skipped']} skipped by guards · "
        f"{fmt_share(f['channels_removed'])} of prunable channels removed</div></div>"
        f"<div><div class='pe-muted'>Channel ratio</div><div class='pe-big'>{f['pruning_ratio']:.2f}</div>"
        f"<div class='pe-muted'>current group: {esc(cur_txt)}</div></div>"
        "</div></div>"
    )


def speed_html(latency, params_now: int) -> str:
    """The measured-latency line of the header (a pure function, for tests)."""
    if latency is None:
        return ("<span class='pe-muted'>Latency: not measured yet (timing takes a few seconds, so it runs only when "
                "you ask)</span>")
    stale = (" <span class='pe-muted'>(measured before the last change: measure again)</span>"
             if latency.params != params_now else "")
    return (f"Latency on {esc(latency.device)}: <span class='pe-latency'>{latency.original_ms:.2f} ms</span> "
            f"originally → <b class='pe-latency-now'>{latency.current_ms:.2f} ms</b> now "
            f"(<b>{latency.speedup:.2f}x</b>; median of {latency.repeat} runs after a warm-up){stale}")


#: models whose modules look like attention (the head options are offered for them)
_ATTENTION_HINTS = ("MultiheadAttention", "Attention", "SelfAttention")


def has_attention(model) -> bool:
    return any(any(h in type(m).__name__ for h in _ATTENTION_HINTS) for m in model.modules())


class HeadOptionsView(widgets.HBox):
    """Attention-head options of the pruner (``prune_num_heads``, ``prune_head_dims``, ``head_pruning_ratio``),
    applied by rebuilding the pruner; shown when the model has attention."""

    def __init__(self, app):
        self.app = app
        c = app.controller
        opts = c.head_options or {"prune_num_heads": bool(c.pruner_kwargs.get("prune_num_heads", False)),
                                  "prune_head_dims": bool(c.pruner_kwargs.get("prune_head_dims", True)),
                                  "head_pruning_ratio": float(c.pruner_kwargs.get("head_pruning_ratio", 0.0))}
        self.num_heads = widgets.Checkbox(value=opts["prune_num_heads"], description="prune whole heads",
                                          indent=False, layout=widgets.Layout(width="auto"))
        self.head_dims = widgets.Checkbox(value=opts["prune_head_dims"], description="prune head dims",
                                          indent=False, layout=widgets.Layout(width="auto"))
        self.head_ratio = widgets.BoundedFloatText(value=opts["head_pruning_ratio"], min=0.0, max=0.95, step=0.05,
                                                   description="head ratio", layout=widgets.Layout(width="170px"),
                                                   style={"description_width": "70px"})
        self.apply = widgets.Button(description="Apply head options", layout=widgets.Layout(width="auto"),
                                    tooltip="Rebuild the pruner with these attention-head options (decisions kept)")
        self.apply.add_class("pe-apply-heads")
        self.apply.on_click(lambda _: self._apply())
        self.note = widgets.HTML()
        self.note.layout = widgets.Layout(min_width="0")
        super().__init__([widgets.HTML("<b>Attention heads</b>"), self.num_heads, self.head_dims, self.head_ratio,
                          self.apply, self.note],
                         layout=widgets.Layout(flex_flow="row wrap", align_items="center", width="100%"))
        self.add_class("pe-head-options")
        self.refresh()

    def _apply(self) -> None:
        opts = dict(prune_num_heads=bool(self.num_heads.value), prune_head_dims=bool(self.head_dims.value),
                    head_pruning_ratio=float(self.head_ratio.value))
        self.app.run(lambda c: c.set_options(**opts), busy="rebuilding the pruner with the new head options")

    def refresh(self, event: str = "") -> None:
        c = self.app.controller
        declared = c.head_options is not None
        for w in (self.num_heads, self.head_dims, self.head_ratio, self.apply):
            w.disabled = not declared
        self.note.value = (f"<span class='pe-muted'>{c.head_options['blocks']} attention block(s) pruned by heads"
                           "</span>" if declared else
                           "<span class='pe-muted'>to prune heads, declare the q / k / v layers when you create the "
                           "explorer: <code>pe.Explorer(..., num_heads={model.blocks[0].attn.q: 12, ...})</code>; "
                           "nn.MultiheadAttention keeps its heads (the graph prunes its embedding only where the "
                           "code allows)</span>")


class HeaderView(widgets.VBox):
    """Figures of the pruning so far, measured latency, the pruning-ratio box (applied by rebuilding the pruner) and,
    for models with attention, the head options."""

    def __init__(self, app):
        self.app = app
        c = app.controller
        self.html = widgets.HTML()
        self.html.add_class("pe-header-html")
        self.output = widgets.HTML()
        self.output.add_class("pe-output")
        self.output.layout = widgets.Layout(min_width="0")
        self.track = widgets.Checkbox(value=c.output.enabled, description="track output change", indent=False,
                                      layout=widgets.Layout(width="auto"))
        self.track.add_class("pe-track-output")
        self.track.observe(self._on_track, names="value")
        self.ratio = widgets.FloatText(value=c.pruning_ratio, step=0.05, description="ratio",
                                       layout=widgets.Layout(width="160px"))
        self.ratio.add_class("pe-ratio")
        self.apply_ratio = widgets.Button(description="Apply ratio", layout=widgets.Layout(width="110px"),
                                          tooltip="Rebuild the pruner with this channel ratio (decisions are kept)")
        self.apply_ratio.on_click(self._on_apply_ratio)
        self.speed = widgets.HTML()
        self.speed.add_class("pe-speed")
        self.speed.layout = widgets.Layout(min_width="0")
        self.speed_btn = widgets.Button(description="Measure speed", icon="clock-o", layout=widgets.Layout(width="auto"),
                                        tooltip="Time forward passes of the original and the current model on the "
                                                "model's device (median after a warm-up; a few seconds)")
        self.speed_btn.add_class("pe-measure-speed")
        self.speed_btn.on_click(lambda _: self.app.run(lambda c: c.measure_speed(), busy="timing the model"))
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center", width="100%")
        rows = [self.html, widgets.HBox([self.output, self.track], layout=wrap),
                widgets.HBox([self.ratio, self.apply_ratio], layout=wrap),
                widgets.HBox([self.speed_btn, self.speed], layout=wrap)]
        self.heads = HeadOptionsView(app) if (c.head_options is not None or has_attention(c.model)) else None
        if self.heads is not None:
            rows.append(self.heads)
        super().__init__(rows)
        self.add_class("pe-header-view")
        self.refresh()

    def _on_track(self, change) -> None:
        if bool(change["new"]) != self.app.controller.output.enabled:
            self.app.run(lambda c: c.set_output_tracking(bool(change["new"])), busy="running the original model")

    def _on_apply_ratio(self, _=None):
        self.app.run(lambda c: c.set_ratio(self.ratio.value), busy=f"rebuilding the pruner at ratio {self.ratio.value}")

    def refresh(self, event: str = "") -> None:
        if event == "status":
            return
        c = self.app.controller
        # (the output part's figures as they stand: the controller's accessors would measure a pending change now)
        self.output.value = output_html(c.output.latest, c.output_change_reason, c.output.curve(),
                                        pending=c.output_pending)
        if event == "output" and c.output_pending is False and self.track.value == c.output.enabled:
            return  # only the output change was measured
        f = c.figures()
        self.html.value = header_html(f)
        if self.track.value != c.output.enabled:
            self.track.value = c.output.enabled
        self.speed.value = speed_html(c.latency, f["params_now"])
        if self.ratio.value != c.pruning_ratio and event in ("ratio", "", "ignore", "options"):
            self.ratio.value = c.pruning_ratio
        if self.heads is not None and event in ("", "options", "ignore", "ratio"):
            self.heads.refresh(event)
