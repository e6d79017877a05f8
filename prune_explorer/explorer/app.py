"""``pe.Explorer``: the JupyterLab app that walks the pruner's groups one by one.

Example::

    import prune_explorer as pe
    ex = pe.Explorer(model, example_inputs, importance=pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5)
    ex            # displays the app
    ...           # accept / adjust / skip / undo groups in the app
    ex.model      # the pruned model
    ex.save("pruned.pth"); print(ex.code())

Everything the app does goes through :class:`~prune_explorer.explorer.controller.ExplorerController`
(``ex.controller``), which can also be driven from code. Errors are shown in the app's status line and change
nothing.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable, Optional

import ipywidgets as widgets

from ..errors import PruneExplorerError
from .controller import ExplorerController, ExplorerError
from .views import GraphView, GroupCardView, HeaderView, IgnoredLayersView, ProgressView, RatioCurvesView
from .views.common import CSS, esc

__all__ = ["Explorer"]


class Explorer:
    """Interactive group-by-group pruning (see the module docstring).

    Args:
        model, example_inputs: the model to prune (in place) and what it is called with.
        importance: importance criterion (default ``pe.importance.MagnitudeImportance(p=2)``).
        pruning_ratio: channel ratio each group is proposed to lose, in ``[0, 1)``.
        ignored_layers: modules or qualified names never pruned; ``None`` pre-selects the final classifier.
        max_graph_items: the graph view expands blocks while it draws at most this many boxes.
        **pruner_kwargs: any other ``pe.pruner.BasePruner`` option (``round_to``, ``max_pruning_ratio``,
            ``global_pruning``, ``iterative_steps``...).

    A model that cannot be traced, or bad options, give an app that shows the error (``ex.error``) instead of
    raising, so a notebook cell never ends with a half-built app.
    """

    def __init__(self, model, example_inputs, importance=None, pruning_ratio: float = 0.5, ignored_layers=None,
                 max_graph_items: int = 48, **pruner_kwargs):
        self.progress = ProgressView()
        self.status = widgets.HTML()
        self.status.add_class("pe-status")
        self.status.layout = widgets.Layout(width="70%")
        self.error: Optional[BaseException] = None
        self.controller: Optional[ExplorerController] = None
        handle = _transient_display(self.progress)
        try:
            self.controller = ExplorerController(model, example_inputs, importance=importance,
                                                 pruning_ratio=pruning_ratio, ignored_layers=ignored_layers,
                                                 progress=self.progress.update, **pruner_kwargs)
        except PruneExplorerError as exc:
            self.error = exc
        finally:
            self.progress.hide()
            if handle is not None:
                handle.update(widgets.HTML(""))
        title = widgets.HTML(CSS + "<div class='pe-app-title'><b>prune_explorer</b> · Explorer"
                             + (f" — {esc(type(model).__name__)}" if model is not None else "") + "</div>")
        if self.controller is None:
            self._set_status(f"Cannot start: {self.error}", error=True)
            self.views = []
            self.root = widgets.VBox([title, self.status])
            self.root.add_class("pe-app")
            return
        c = self.controller
        self.header = HeaderView(self)
        self.card = GroupCardView(self)
        self.graph = GraphView(self, max_items=max_graph_items)
        self.curves = RatioCurvesView(self)
        self.ignored = IgnoredLayersView(self)
        self.views = [self.header, self.card, self.graph, self.curves, self.ignored]
        c.subscribe(self._on_change)
        self.card.layout = widgets.Layout(width="54%", padding="0 12px 0 0")
        self.graph.layout = widgets.Layout(width="46%")
        self.curves.layout = widgets.Layout(width="62%")
        self.ignored.layout = widgets.Layout(width="38%")
        self.root = widgets.VBox([
            title,
            self.header,
            widgets.HBox([self.status, self.progress]),
            widgets.HBox([self.card, self.graph]),
            widgets.HBox([self.curves, self.ignored]),
        ])
        self.root.add_class("pe-app")
        self._set_status(f"Ready: {c.figures()['groups_total']} groups to decide; ignoring "
                         f"{', '.join(c.ignored_names) or 'no layer'}.")

    # ---- running actions ------------------------------------------------------------------------------------------
    def run(self, fn: Callable[[ExplorerController], Any], busy: Optional[str] = None, quiet: bool = False) -> bool:
        """Run ``fn(controller)``; show any error in the status line (nothing changes). Returns True on success."""
        if self.controller is None:
            return False
        if busy:
            self._set_status(busy + " ...")
        try:
            fn(self.controller)
        except PruneExplorerError as exc:
            self._set_status(str(exc), error=True)
            return False
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is shown, not lost in a callback
            self._set_status(f"unexpected error: {type(exc).__name__}: {exc}", error=True,
                             details=traceback.format_exc())
            return False
        finally:
            self.progress.hide()
        msg = self.controller.message
        self.controller.message = ""
        if msg or not quiet:
            self._set_status(msg or self._summary())
        return True

    def _summary(self) -> str:
        c = self.controller
        last = c.decisions[-1] if c.decisions else None
        cur = c.current.root_name if c.current is not None else None
        if last is None:
            return f"Ready; current group: {cur}."
        verb = {"accept": f"accepted {last.root} (−{last.n_removed} channels)", "skip": f"skipped {last.root}",
                "guard": f"{last.root} skipped by a guard"}[last.action]
        return f"{verb}; " + (f"now at {cur}." if cur else "all groups decided.")

    def _set_status(self, text: str, error: bool = False, details: str = "") -> None:
        cls = "pe-status-error" if error else "pe-status-ok"
        extra = f"<details><summary>details</summary><pre>{esc(details)}</pre></details>" if details else ""
        self.status.value = f"<div class='{cls}'>{esc(text)}</div>{extra}"

    def _on_change(self, event: str) -> None:
        for v in self.views:
            try:
                v.refresh(event)
            except Exception as exc:  # noqa: BLE001
                self._set_status(f"a view failed to update ({type(v).__name__}: {exc})", error=True,
                                 details=traceback.format_exc())

    # ---- results ----------------------------------------------------------------------------------------------------
    @property
    def model(self):
        """The (pruned) model."""
        return self.controller.model if self.controller is not None else None

    @property
    def history(self):
        """The decisions so far: ``[{"action": "accept" | "skip" | "guard", "root", "idxs", ...}, ...]``."""
        return self.controller.history if self.controller is not None else []

    def save(self, path) -> None:
        """Write the pruned model safely (``pe.save_pruned``: JSON history + weights, no pickled code)."""
        self._require()
        self.controller.save(path)

    def code(self, model_expr: Optional[str] = None) -> str:
        """A short standalone script that reproduces the same pruning without widgets (see the controller)."""
        self._require()
        return self.controller.code(model_expr)

    def _require(self) -> None:
        if self.controller is None:
            raise ExplorerError(f"the explorer did not start: {self.error}")

    # ---- display -----------------------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.root._repr_mimebundle_(include=include, exclude=exclude)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.root)

    def __repr__(self) -> str:
        if self.controller is None:
            return f"Explorer(not started: {self.error})"
        return "Explorer(" + repr(self.controller)[len("ExplorerController("):]


def _transient_display(widget):
    """Show ``widget`` now when running inside a Jupyter kernel (for progress during the build)."""
    try:
        from IPython import get_ipython

        ip = get_ipython()
        if ip is None or not hasattr(ip, "kernel"):
            return None
        from IPython.display import display

        return display(widget, display_id=True)
    except Exception:  # noqa: BLE001
        return None
