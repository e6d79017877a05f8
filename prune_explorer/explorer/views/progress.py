"""A progress bar for long work (building the graph, the sweep, accept-all, rebuilding the pruner)."""

from __future__ import annotations

import ipywidgets as widgets


class ProgressView(widgets.HBox):
    """``IntProgress`` + a label; :meth:`update` is the controller's ``progress(stage, done, total)`` callback."""

    def __init__(self):
        self.bar = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="260px"))
        self.bar.add_class("pe-progress")
        self.label = widgets.Label("")
        super().__init__([self.bar, self.label])
        self.add_class("pe-progress-view")
        self.layout.visibility = "hidden"

    def update(self, stage: str, done: int, total: int) -> None:
        total = max(int(total), 1)
        self.layout.visibility = "visible"
        self.bar.max = total
        self.bar.value = min(int(done), total)
        self.bar.bar_style = "success" if done >= total else ""
        self.label.value = f"{stage}: {done}/{total}"

    def hide(self) -> None:
        self.layout.visibility = "hidden"
