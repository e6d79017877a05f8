"""A progress bar for long work (building the graph, the sweep, accept-all, rebuilding the pruner)."""

from __future__ import annotations

import ipywidgets as widgets

class ProgressView(widgets.HBox):
    """``IntProgress`` + a label naming the stage (``"tracing — step 2 of 4"``, ``"sweeping: 3/10"``); :meth:`update`
    is the controller's ``progress(stage, done, total)`` callback. The bar disappears (takes no room) when the work
    is done or :meth:`hide` is called."""

    def __init__(self):
        self.bar = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="200px", min_width="80px"))
        self.bar.add_class("pe-progress")
        self.label = widgets.Label("")
        super().__init__([self.bar, self.label])
        self.add_class("pe-progress-view")
        self.layout = widgets.Layout(display="none", max_width="100%", flex="0 1 auto", align_items="center")

    def update(self, stage: str, done: int, total: int) -> None:
        total = max(int(total), 1)
        done = min(int(done), total)
        if done >= total:
            self.hide()
            return
        self.layout.display = ""
        self.bar.max = total
        self.bar.value = done
        self.label.value = f"{stage} — step {done + 1} of {total}" if total <= 6 else f"{stage}: {done}/{total}"

    def hide(self) -> None:
        self.layout.display = "none"

    @property
    def visible(self) -> bool:
        return self.layout.display != "none"
