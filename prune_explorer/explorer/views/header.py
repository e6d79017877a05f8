"""The header: parameters and MACs (original, now, % removed), groups done / skipped / left, channel ratio."""

from __future__ import annotations

import ipywidgets as widgets

from .common import esc, fmt_count, fmt_pct


def header_html(f: dict) -> str:
    """The header's HTML for the figures of :meth:`ExplorerController.figures` (a pure function, for tests).

    Percentages here are of the *original* model (the card's are of the model as it is now); both say so.
    """
    macs_now = f.get("macs_now")
    macs_cell = (
        f"<div><div class='pe-muted'>MACs</div><div class='pe-big'><span class='pe-macs-now'>{fmt_count(macs_now)}</span>"
        f" <span class='pe-muted'>/ {fmt_count(f.get('macs_original'))}</span></div>"
        f"<div><span class='pe-removed'>&minus;{fmt_pct(f.get('macs_removed'))}</span>"
        " <span class='pe-muted'>of original</span></div></div>"
    )
    cur = f.get("current_ratio")
    cur_txt = "finished" if f.get("finished") else ("n/a" if cur is None else f"{cur:.2f}")
    return (
        "<div class='pe-header'><div class='pe-header-cells'>"
        f"<div><div class='pe-muted'>Parameters</div><div class='pe-big'>"
        f"<span class='pe-params-now' data-value='{int(f['params_now'])}'>{f['params_now']:,}</span>"
        f" <span class='pe-muted'>/ {f['params_original']:,}</span></div>"
        f"<div><span class='pe-removed pe-params-removed'>&minus;{fmt_pct(f['params_removed'])}</span>"
        f" <span class='pe-muted'>of original ({fmt_count(f['params_now'])} left)</span></div></div>"
        + macs_cell
        + f"<div><div class='pe-muted'>Groups</div><div class='pe-big pe-groups'>{f['groups_accepted']} accepted · "
        f"{f['groups_skipped']} skipped · {f['groups_left']} left</div>"
        f"<div class='pe-muted'>{f['groups_guard_skipped']} skipped by guards · "
        f"{fmt_pct(f['channels_removed'])} of prunable channels removed</div></div>"
        f"<div><div class='pe-muted'>Channel ratio</div><div class='pe-big'>{f['pruning_ratio']:.2f}</div>"
        f"<div class='pe-muted'>current group: {esc(cur_txt)}</div></div>"
        "</div></div>"
    )


class HeaderView(widgets.VBox):
    """Figures of the pruning so far, plus the pruning-ratio box (applied by rebuilding the pruner)."""

    def __init__(self, app):
        self.app = app
        self.html = widgets.HTML()
        self.html.add_class("pe-header-html")
        self.ratio = widgets.FloatText(value=app.controller.pruning_ratio, step=0.05, description="ratio",
                                       layout=widgets.Layout(width="160px"))
        self.ratio.add_class("pe-ratio")
        self.apply_ratio = widgets.Button(description="Apply ratio", layout=widgets.Layout(width="110px"),
                                          tooltip="Rebuild the pruner with this channel ratio (decisions are kept)")
        self.apply_ratio.on_click(self._on_apply_ratio)
        super().__init__([self.html, widgets.HBox([self.ratio, self.apply_ratio],
                                                  layout=widgets.Layout(flex_flow="row wrap"))])
        self.add_class("pe-header-view")
        self.refresh()

    def _on_apply_ratio(self, _=None):
        self.app.run(lambda c: c.set_ratio(self.ratio.value), busy=f"rebuilding the pruner at ratio {self.ratio.value}")

    def refresh(self, event: str = "") -> None:
        c = self.app.controller
        self.html.value = header_html(c.figures())
        if self.ratio.value != c.pruning_ratio and event in ("ratio", "", "ignore"):
            self.ratio.value = c.pruning_ratio
