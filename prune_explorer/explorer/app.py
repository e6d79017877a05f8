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

Layout: the header, the status line, then two grids whose columns wrap to fit the window (group card and
graph; curves, ignored layers and any panel added with :meth:`Explorer.add_panel`). Every panel and chart sizes
to its box, from a 1,000 px window to a wide screen.
"""

from __future__ import annotations

import asyncio
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import anywidget
import ipywidgets as widgets
import traitlets

from ..errors import PruneExplorerError
from .controller import ExplorerController, ExplorerError
from .graph_state import DEFAULT_MAX_ITEMS
from .views import GraphView, GroupCardView, HeaderView, IgnoredLayersView, ProgressView, RatioCurvesView
from .views.finish import FinishView
from .views.common import CSS, esc

__all__ = ["Explorer", "SHORTCUTS"]

#: Keyboard shortcuts (while the focus is inside the app and not in a text box): key -> action.
SHORTCUTS = {"a": "accept", "s": "skip", "u": "undo"}
_SHORTCUT_HELP = "Keyboard (click inside the app first): A accept · S skip · U undo"

_STATIC = Path(__file__).resolve().parent / "static"

#: seconds between a decision and the forward pass that measures its output change, in a running kernel: the page
#: draws the decision meanwhile (the output-change line says it is being measured)
OUTPUT_CHANGE_DELAY_S = 0.3


class AppBridge(anywidget.AnyWidget):
    """Invisible helper in the app: keyboard shortcuts (sent back as ``{"event": "key", "action"}``) and file
    downloads (see ``static/app.js``)."""

    _esm = _STATIC / "app.js"
    shortcuts = traitlets.Dict({}).tag(sync=True)


def _grid(children, min_col: str = "460px") -> widgets.GridBox:
    """A grid whose columns wrap: as many ``min_col``-wide columns as fit, one column on a narrow window."""
    grid = widgets.GridBox(list(children), layout=widgets.Layout(
        grid_template_columns=f"repeat(auto-fit, minmax(min(100%, {min_col}), 1fr))",
        grid_gap="12px 16px", width="100%", align_items="flex-start"))
    for w in children:
        w.layout.min_width = "0"
        w.layout.width = "auto"
    return grid


class Explorer:
    """Interactive group-by-group pruning (see the module docstring).

    Args:
        model, example_inputs: the model to prune (in place) and what it is called with.
        importance: importance criterion (default ``pe.importance.MagnitudeImportance(p=2)``).
        pruning_ratio: channel ratio each group is proposed to lose, in ``[0, 1)``.
        ignored_layers: modules or qualified names never pruned; ``None`` pre-selects the final classifier.
        max_graph_items: the graph opens with blocks expanded while it draws at most this many boxes.
        eval_fn: the metric for sensitivity scans, ``eval_fn(model) -> float`` (higher is better); see the
            Sensitivity panel and ``ex.sensitivity`` (:mod:`.sensitivity_controller`). The header's output change
            after each decision is its value too (without it: the outputs on the example inputs compared with the
            original's); ``track_output=False`` skips that.
        **pruner_kwargs: any other ``pe.pruner.BasePruner`` option (``round_to``, ``max_pruning_ratio``,
            ``global_pruning``, ``iterative_steps``...).

    A model that cannot be traced, or bad options, give an app that shows the error (``ex.error``) instead of
    raising, so a notebook cell never ends with a half-built app.
    """

    def __init__(self, model, example_inputs, importance=None, pruning_ratio: float = 0.5, ignored_layers=None,
                 max_graph_items: int = DEFAULT_MAX_ITEMS, eval_fn=None, **pruner_kwargs):
        self.progress = ProgressView()
        self.status = widgets.HTML()
        self.status.add_class("pe-status")
        self.status.layout = widgets.Layout(flex="1 1 auto", min_width="0")
        self.error: Optional[BaseException] = None
        self.controller: Optional[ExplorerController] = None
        self.sensitivity = None  # the sensitivity panel's controller (scans, budgets, plans)
        self._running = False
        handle = _transient_display(self.progress)
        try:
            self.controller = ExplorerController(model, example_inputs, importance=importance,
                                                 pruning_ratio=pruning_ratio, ignored_layers=ignored_layers,
                                                 progress=self.progress.update, eval_fn=eval_fn, **pruner_kwargs)
        except PruneExplorerError as exc:
            self.error = exc
        finally:
            self.progress.hide()
            _clear_transient(handle)
        self.bridge = AppBridge(shortcuts=dict(SHORTCUTS))
        self.bridge.on_msg(self._on_bridge_msg)
        self.bridge.layout = widgets.Layout(width="0", height="0", overflow="hidden")
        name = f" — {esc(type(model).__name__)}" if model is not None else ""
        title = widgets.HTML(CSS + f"<div class='pe-app-title'><b>prune_explorer</b> · Explorer{name}"
                             f"<span class='pe-keys' title='{_SHORTCUT_HELP}'>⌨ A accept · S skip · U undo</span>"
                             "</div>")
        title.layout = widgets.Layout(width="auto")  # (100% plus the widget margins would make the app scroll sideways)
        if self.controller is None:
            self._render_status(f"Cannot start: {self.error}", error=True)
            self.views = []
            self.root = widgets.VBox([title, self.status])
            self.root.add_class("pe-app")
            return
        c = self.controller
        c.defer_output = self.after_the_page  # a decision shows at once; its output change follows ("output")
        self.header = HeaderView(self)
        self.card = GroupCardView(self)
        self.graph = GraphView(self, max_items=max_graph_items)
        self.curves = RatioCurvesView(self)
        self.ignored = IgnoredLayersView(self)
        self.finish = FinishView(self)
        # refreshed in this order after a change: the cheap views and the charts first (their messages reach the
        # page while the graph view, the costliest, works out its styles), the status line last
        self.views = [self.header, self.card, self.curves, self.graph, self.ignored, self.finish]
        c.subscribe(self._on_change)
        self.main_grid = _grid([self.card, self.graph], "460px")
        self.panels = _grid([self.curves, self.ignored], "420px")
        self.root = widgets.VBox([
            title,
            self.header,
            widgets.HBox([self.status, self.progress], layout=widgets.Layout(width="100%", flex_flow="row wrap")),
            self.main_grid,
            self.panels,
            self.finish,
            self.bridge,
        ], layout=widgets.Layout(width="100%", min_width="0"))
        self.root.add_class("pe-app")
        from .sensitivity_panel import SensitivityPanel

        self.sensitivity_panel = SensitivityPanel(self, eval_fn)
        self.sensitivity = self.sensitivity_panel.controller
        self.add_panel(self.sensitivity_panel, "Sensitivity")
        self._render_status()

    # ---- running actions ------------------------------------------------------------------------------------------
    def run(self, fn: Callable[[ExplorerController], Any], busy: Optional[str] = None) -> bool:
        """Run ``fn(controller)``; the status line then shows what the controller says (or why it refused: nothing
        changes then). ``busy`` is shown while it runs. Returns True on success."""
        if self.controller is None:
            return False
        c = self.controller
        if busy:
            self._render_status(busy + " ...")
        try:
            fn(c)
        except PruneExplorerError as exc:
            c.fail(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is shown, not lost in a callback
            c.fail(f"unexpected error: {type(exc).__name__}: {exc}. Check the inputs of this action and try again; if "
                   "it keeps failing, report it with the details below", details=traceback.format_exc())
            return False
        finally:
            self.progress.hide()
            self._render_status()
        return True

    def notify(self, text: str, error: bool = False) -> None:
        """Show ``text`` in the status line (it belongs to the controller: the next action replaces it)."""
        if self.controller is None:
            self._render_status(text, error)
        else:
            self.controller.notify(text, error=error)

    def _render_status(self, text: Optional[str] = None, error: bool = False) -> None:
        """Draw the controller's status (or ``text``, e.g. while an action runs)."""
        details = ""
        if text is None:
            st = self.controller.status
            text, error, details = st.text, st.is_error, st.details
        cls = "pe-status-error" if error else "pe-status-ok"
        extra = f"<details><summary>details</summary><pre>{esc(details)}</pre></details>" if details else ""
        self.status.value = f"<div class='{cls}'>{esc(text)}</div>{extra}"

    def _on_change(self, event: str) -> None:
        if event != "status":
            for v in self.views:
                try:
                    v.refresh(event)
                except Exception as exc:  # noqa: BLE001
                    self.controller.fail(f"a view failed to update ({type(v).__name__}: {exc})",
                                         details=traceback.format_exc())
                    break
        self._render_status()

    def after_the_page(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (work that can wait: the output change's forward pass, laying out the graph of the next group)
        on the kernel's event loop :data:`OUTPUT_CHANGE_DELAY_S` seconds from now, so the browser draws the decision
        first and the next click is not held up; at once outside a running event loop (plain Python, tests)."""
        def run() -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a loop callback: show it rather than lose it in a log
                self.controller.fail(f"work after a decision failed: {type(exc).__name__}: {exc}",
                                     details=traceback.format_exc())
                self._render_status()

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            run()
            return
        loop.call_later(OUTPUT_CHANGE_DELAY_S, run)

    def _on_bridge_msg(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("event") == "key":
            self.shortcut(str(content.get("action", "")))

    def shortcut(self, action: str) -> bool:
        """Run the action of a keyboard shortcut (``"accept"``, ``"skip"`` or ``"undo"``)."""
        actions = {"accept": (lambda c: c.accept(), "pruning the group"), "skip": (lambda c: c.skip(), None),
                   "undo": (lambda c: c.undo(), "restoring the model")}
        if action not in actions:
            self.notify(f"unknown shortcut action {action!r}: use one of {', '.join(sorted(actions))}", error=True)
            return False
        fn, busy = actions[action]
        return self.run(fn, busy=busy)

    def add_panel(self, widget, title: Optional[str] = None) -> None:
        """Add a panel (any ipywidget) to the lower grid, beside the ratio curves and the ignored layers.

        The panel should refresh itself from ``ex.controller``; give it a ``refresh(event)`` method to be called
        after every change of the walk.
        """
        if self.controller is None:
            raise ExplorerError(f"the explorer did not start: {self.error}")
        box = widgets.VBox(([widgets.HTML(f"<b>{esc(title)}</b>")] if title else []) + [widget],
                           layout=widgets.Layout(min_width="0", width="auto"))
        self.panels.children = tuple(self.panels.children) + (box,)
        if hasattr(widget, "refresh"):
            self.views.append(widget)

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

    def export_plan(self, path, name: Optional[str] = None):
        """Write the accepted decisions as a pruning plan (JSON: counts per group, not indices) and return it; apply
        it to the real model with ``pe.apply_plan`` (see the controller's ``plan()``)."""
        self._require()
        return self.controller.export_plan(path, name)

    def _require(self) -> None:
        if self.controller is None:
            raise ExplorerError(f"the explorer did not start: {self.error}")

    # ---- display -----------------------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.root._repr_mimebundle_(include=include, exclude=exclude)
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle = dict(bundle)
        # what a notebook opened without its widget state shows: a readable line, not the widgets' repr
        bundle["text/plain"] = repr(self) + "  (run the cell to show the app)"
        return bundle

    def _ipython_display_(self):
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)

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


def _clear_transient(handle) -> None:
    """Replace the transient progress output by nothing (no widget, no text left in the saved notebook)."""
    if handle is None:
        return
    try:
        handle.update({"text/plain": ""}, raw=True)
    except Exception:  # noqa: BLE001
        pass
