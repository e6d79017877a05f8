"""The ignored layers: a filterable list of every prunable layer, the final classifier pre-selected.

Edits are applied by rebuilding the pruner (decisions taken so far are replayed). Before applying, the view shows
what the edit does to the reachable parameter reduction (uniform pruning at the current ratio).
"""

from __future__ import annotations

from typing import List, Set

import ipywidgets as widgets

from .common import esc, fmt_pct


class IgnoredLayersView(widgets.VBox):
    """Filter box + multi-select of prunable layers + effect on the reachable reduction + Apply."""

    def __init__(self, app):
        self.app = app
        self.filter = widgets.Text(placeholder="filter layers (e.g. layer4, fc, Linear)",
                                   layout=widgets.Layout(width="auto", align_self="stretch"))
        self.filter.add_class("pe-ignored-filter")
        self.filter.observe(lambda _: self._fill(), names="value")
        self.select = widgets.SelectMultiple(options=[], rows=10, layout=widgets.Layout(width="auto", align_self="stretch"))
        self.select.add_class("pe-ignored-select")
        self.select.observe(self._on_select, names="value")
        self.effect = widgets.HTML()
        self.effect.add_class("pe-ignored-effect")
        self.apply = widgets.Button(description="Apply ignored layers", icon="check", layout=widgets.Layout(width="auto"),
                                    tooltip="Rebuild the pruner with these ignored layers")
        self.apply.add_class("pe-ignored-apply")
        self.apply.on_click(self._on_apply)
        self.reset = widgets.Button(description="Reset", tooltip="Back to the ignored layers in use",
                                    layout=widgets.Layout(width="auto"))
        self.reset.on_click(lambda _: self._reset())
        super().__init__([
            widgets.HTML("<b>Ignored layers</b> <span class='pe-muted'>(their output channels are never pruned; "
                         "ctrl/shift-click to select several)</span>"),
            self.filter, self.select, self.effect, widgets.HBox([self.apply, self.reset]),
        ])
        self.add_class("pe-ignored-view")
        self._filling = False
        self._reset()

    def _reset(self) -> None:
        self.selection: Set[str] = set(self.app.controller.ignored_names)
        self._fill()

    def _layers(self) -> List[dict]:
        return self.app.controller.measures.prunable_layers(details=False)  # names, types and channels suffice

    def _fill(self) -> None:
        q = self.filter.value.strip().lower()
        opts = []
        for d in self._layers():
            label = f"{d['name']}  ({d['type']}, {d['channels']} ch)"
            if q and q not in label.lower():
                continue
            opts.append((label, d["name"]))
        chosen = tuple(v for _, v in opts if v in self.selection)
        if tuple(opts) == tuple(self.select.options) and chosen == tuple(self.select.value):
            self._show_effect()
            return  # the list is as shown: nothing to send
        self._filling = True
        try:
            # options and selection travel to the browser in one message: sent apart, the front end briefly
            # holds a selection index past the end of the new options (a JavaScript error on every filter edit)
            with self.select.hold_sync():
                self.select.value = ()
                self.select.options = opts
                self.select.value = chosen
        finally:
            self._filling = False
        self._show_effect()

    def _on_select(self, change) -> None:
        if self._filling:
            return
        visible = {v for _, v in self.select.options}
        self.selection = (self.selection - visible) | set(change["new"])
        self._show_effect()

    def _show_effect(self) -> None:
        c = self.app.controller
        now = c.reachable_reduction()
        pending = sorted(self.selection) != sorted(c.ignored_names)
        txt = (f"Ignoring {len(c.ignored_names)} layer(s): uniform pruning at ratio {c.pruning_ratio:.2f} can "
               f"remove <b>{fmt_pct(now['params_removed'])}</b> of parameters")
        if pending:
            try:
                new = c.reachable_reduction(ignored_layers=sorted(self.selection))
                delta = new["params_removed"] - now["params_removed"]
                txt += (f"; with your edits ({len(self.selection)} layer(s)): <b>{fmt_pct(new['params_removed'])}</b> "
                        f"(<span class='pe-removed'>{'+' if delta >= 0 else ''}{100 * delta:.1f} points</span>) "
                        "— press Apply")
            except Exception as exc:  # noqa: BLE001 - shown, not raised
                txt += f"; <span class='pe-status-error'>{esc(exc)}</span>"
        self.effect.value = f"<div>{txt}</div>"

    def _on_apply(self, _=None) -> None:
        names = sorted(self.selection)
        self.app.run(lambda c: c.set_ignored(names), busy="rebuilding the pruner with the new ignored layers")

    def refresh(self, event: str = "") -> None:
        if event in ("ignore", "ratio", "options", "speed", ""):
            self._reset()
        elif event in ("accept", "undo", "accept_all"):
            self._fill()  # channel counts changed
