"""The explorer's session: the model and its example inputs, the pruner built from the user's options, and what is
measured once at the start (MACs per layer, the final classifier).

Changing an option the pruner was built with (:meth:`Session.ignore`, :meth:`Session.set_ignored`,
:meth:`Session.set_ratio`) rebuilds the pruner on the unpruned model and replays the decisions taken so far
(:meth:`~.walk.Walk._replay`). Layers are named by their qualified names (``model.named_modules()``) or given as
the modules themselves.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch.nn as nn

from ..errors import PruneExplorerError, TracingError
from ..graph import DEFAULT_ROOT_TYPES
from ..inputs import CALL_CONVENTION, tensors_in, to_meta
from ..measure import count_ops_and_params
from ..measure.structure import ModelStructure, meta_clone
from ..measure.sweep import GroupLayout
from ..validation import check_ratio
from .status import Status, describe

__all__ = ["ExplorerError", "Session", "check_explorer_ratio", "measure_model", "build_pruner"]

ProgressFn = Callable[[str, int, int], None]


class ExplorerError(PruneExplorerError, ValueError):
    """A request the explorer refuses (bad option, unknown layer, bad indices, nothing left to accept...).

    Raised before anything changes: the model, the pruner and the walk are exactly as they were.
    """


def check_explorer_ratio(ratio, name: str = "pruning_ratio") -> float:
    """``ratio`` as a float in [0, 1), or :class:`ExplorerError`."""
    return check_ratio(name, ratio, error=ExplorerError, meaning="the fraction of each group's channels to remove")


def fmt_names(names: Sequence[str], limit: int = 5) -> str:
    names = list(names)
    s = ", ".join(names[:limit])
    return s + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# ----------------------------------------------------------------------------------------------------------------------
# measured once
# ----------------------------------------------------------------------------------------------------------------------
def _last_linear(model: nn.Module) -> List[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1:]


def _count(model: nn.Module, inputs, forward_fn, find_classifier: bool):
    """``(MACs, {module name: MACs}, classifier names)`` from one counting pass over ``model``."""
    produced: Dict[int, str] = {}
    outputs: List[Any] = []
    hooks = []
    if find_classifier:
        for name, m in model.named_modules():
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                hooks.append(m.register_forward_hook(
                    lambda mod, inp, out, name=name: produced.__setitem__(id(out), name)))
        hooks.append(model.register_forward_hook(lambda mod, inp, out: outputs.append(out)))
    try:
        macs, _, layer_macs, _ = count_ops_and_params(model, inputs, layer_wise=True, forward_fn=forward_fn,
                                                      layer_keys="name")
    finally:
        for h in hooks:
            h.remove()
    classifier: List[str] = []
    if find_classifier:
        for t in tensors_in(outputs[-1] if outputs else None):
            name = produced.get(id(t))
            if name is not None and name not in classifier:
                classifier.append(name)
        classifier = classifier or _last_linear(model)  # the output is post-processed
    return macs, layer_macs, classifier


def measure_model(model: nn.Module, example_inputs, forward_fn=None, find_classifier: bool = True):
    """MACs (total and per module name) in one forward pass, and the layers whose outputs are the model's outputs
    (the final classifier; ``[]`` unless ``find_classifier``). Returns ``(macs, layer_macs, classifier)``; MACs
    are None when the model runs but cannot be counted (the walk works without them).

    The pass runs on a ``meta``-device copy of the model (shapes only, no arithmetic), or on the model itself
    when its forward cannot run on meta tensors (data-dependent control flow, ...).
    """
    try:
        meta_model, meta_inputs = meta_clone(model), to_meta(example_inputs)
    except Exception:  # noqa: BLE001 - a model that cannot be copied is measured as it is
        meta_model = None
    if meta_model is not None:
        try:
            return _count(meta_model, meta_inputs, forward_fn, find_classifier)
        except Exception:  # noqa: BLE001 - fall back to the real forward pass
            pass
    try:
        return _count(model, example_inputs, forward_fn, find_classifier)
    except TracingError as exc:
        raise ExplorerError(f"the model does not run on these example inputs, so the explorer cannot start: {exc}") from exc
    except Exception:  # noqa: BLE001 - MACs are a nice-to-have: the walk works without them
        return None, None, _last_linear(model) if find_classifier else []


def build_pruner(pruner_class, model: nn.Module, example_inputs, importance, options: dict):
    """``pruner_class(model, example_inputs, importance=importance, **options)``, its errors worded for the
    explorer (:class:`ExplorerError`)."""
    try:
        return pruner_class(model, example_inputs, importance=importance, **options)
    except PruneExplorerError as exc:
        if isinstance(exc, TracingError):
            raise ExplorerError(f"the model could not be traced, so the explorer cannot start: {exc}") from exc
        raise ExplorerError(f"the pruner could not be built: {exc}") from exc
    except TypeError as exc:
        raise ExplorerError(f"the pruner could not be built with these options ({exc}); the explorer accepts "
                            "every BasePruner option, spelled as in pe.pruner.BasePruner") from exc
    except Exception as exc:
        raise ExplorerError(
            f"the model could not be traced, so the explorer cannot start: the forward pass failed with "
            f"{type(exc).__name__}: {exc}. Check example_inputs ({CALL_CONVENTION}) or pass forward_fn=..."
        ) from exc


class Session:
    """Mixin of :class:`~.controller.ExplorerController`: the pruner, its options, layer names, listeners.

    State: ``model``, ``example_inputs``, ``importance``, ``pruner_class``, ``pruner_kwargs``, ``pruning_ratio``,
    ``ignored_names``, ``pruner`` / ``DG``, ``structure`` (parameter and MAC laws), ``_layout`` (the groups of the
    walk on original channel ids), ``progress`` and the listeners.
    """

    # ---- progress and listeners -------------------------------------------------------------------------------------
    def _report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            try:
                self.progress(stage, done, total)
            except Exception:  # noqa: BLE001 - a broken progress display must not break the work
                pass

    def subscribe(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(event)`` after every change (event: accept, skip, adjust, undo, accept_all, ignore, ratio,
        options, sweep, or ``"status"`` when only the status line changed)."""
        self._listeners.append(fn)

    def _notify_listeners(self, event: str) -> None:
        for fn in list(self._listeners):
            fn(event)

    def _changed(self, event: str) -> None:
        """After every change: the status line describes the new state plus this action's notices; listeners run."""
        self._cache.clear()
        notices, self._notices = self._notices, []
        self.message = "; ".join(notices)
        self.status = Status(describe(self, event) + (f" ({self.message})" if self.message else ""))
        self._notify_listeners(event)

    # ---- the status line ----------------------------------------------------------------------------------------------
    def _notice(self, text: str) -> None:
        """A notice of the running action (shown after the status sentence, and in :attr:`message`)."""
        self._notices.append(text)

    def fail(self, exc, details: str = "") -> None:
        """Show why an action was refused (``exc``: an exception or a sentence); nothing else changes."""
        self._notices = []
        self.status = Status.error(exc, details)
        self._notify_listeners("status")

    def notify(self, text: str, error: bool = False) -> None:
        """Put ``text`` in the status line and in :attr:`message` (a notice outside any action: what a search found,
        that the model is on the meta device...)."""
        self.message = text
        self.status = Status(text, "error" if error else "info")
        self._notify_listeners("status")

    # ---- the pruner -----------------------------------------------------------------------------------------------
    def _make_pruner(self, ignored_names: Sequence[str], ratio: Optional[float] = None):
        options = dict(self.pruner_kwargs)
        options["ignored_layers"] = [self._modules[n] for n in ignored_names]
        options["pruning_ratio"] = self.pruning_ratio if ratio is None else ratio
        return build_pruner(self.pruner_class, self.model, self.example_inputs, self.importance, options)

    @property
    def root_module_types(self):
        return getattr(self.pruner, "root_module_types", None) or DEFAULT_ROOT_TYPES

    def _make_layout(self, ignored_names: Sequence[str]) -> GroupLayout:
        """The group layout with these ignored layers (expanded to submodules, plus what the pruner handles itself)."""
        extra = [m for m in self.pruner.group_ignored_layers if not any(m is x for x in self.pruner.ignored_layers)]
        mods = []
        for n in ignored_names:
            mods.extend(self._modules[n].modules())
        return GroupLayout(self.DG, mods + extra, self.root_module_types)

    # ---- layer names ----------------------------------------------------------------------------------------------
    @property
    def ignored_modules(self) -> List[nn.Module]:
        return [self._modules[n] for n in self.ignored_names]

    def _resolve_layers(self, layers) -> List[str]:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        return list(dict.fromkeys(self._resolve_layer(layer) for layer in layers))

    def _resolve_layer(self, layer) -> str:
        if isinstance(layer, nn.Module):
            name = self._names.get(id(layer))
            if name is None:
                raise ExplorerError(f"{type(layer).__name__} is not a submodule of the model; pass one of its own "
                                    "layers (or its qualified name, e.g. 'fc')")
            return name
        if isinstance(layer, str):
            if layer in self._modules and layer != "":
                return layer
            close = difflib.get_close_matches(layer, [n for n in self._modules if n], n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ExplorerError(f"there is no layer named {layer!r} in the model.{hint} Use the qualified names "
                                "of model.named_modules(), e.g. 'layer1.0.conv1'.")
        raise ExplorerError(f"a layer is given by its qualified name (str) or the module itself, got {layer!r}")

    # ---- options that rebuild the pruner --------------------------------------------------------------------------
    def ignore(self, layer, ignored: bool = True) -> None:
        """Add ``layer`` (a qualified name or module) to the ignored layers, or remove it (``ignored=False``)."""
        name = self._resolve_layer(layer)
        names = [n for n in self.ignored_names if n != name]
        if ignored:
            names.append(name)
        if names == self.ignored_names:
            return
        self._rebuild(ignored_names=names)
        self._changed("ignore")

    def set_ignored(self, layers) -> None:
        """Replace the ignored layers with ``layers`` (names or modules)."""
        names = self._resolve_layers(layers)
        if names != self.ignored_names:
            self._rebuild(ignored_names=names)
            self._changed("ignore")

    def set_ratio(self, ratio: float) -> None:
        """Change the pruning ratio (proposals of the groups still to decide follow it)."""
        r = check_explorer_ratio(ratio)
        if r == self.pruning_ratio:
            return
        self._rebuild(ratio=r)
        self._changed("ratio")

    def set_options(self, **options) -> None:
        """Change other pruner options (e.g. ``prune_num_heads=True, head_pruning_ratio=0.25``) and rebuild the
        pruner; decisions are kept where they still apply. A bad option raises and changes nothing."""
        for key in ("ignored_layers", "pruning_ratio", "importance"):
            if key in options:
                raise ExplorerError(f"{key} has its own control: use "
                                    + {"ignored_layers": "ignore() / set_ignored()", "pruning_ratio": "set_ratio()",
                                       "importance": "a new Explorer"}[key])
        new = {**self.pruner_kwargs, **options}
        if new == self.pruner_kwargs:
            return
        old = self.pruner_kwargs
        self.pruner_kwargs = new
        try:
            self._rebuild()
        except ExplorerError:
            self.pruner_kwargs = old
            self._rebuild()  # the pruner with the old options, the decisions replayed
            self._notices = []
            raise
        self._changed("options")

    @property
    def head_options(self) -> Optional[dict]:
        """The attention-head options in use, or None when the pruner handles no attention block (declare the q / k /
        v layers in ``num_heads`` to prune heads)."""
        blocks = getattr(self.pruner, "attention_blocks", None)
        if not blocks:
            return None
        return {"blocks": len(blocks), "prune_num_heads": bool(getattr(self.pruner, "prune_num_heads", False)),
                "prune_head_dims": bool(getattr(self.pruner, "prune_head_dims", True)),
                "head_pruning_ratio": float(getattr(self.pruner, "head_pruning_ratio", 0.0) or 0.0)}

    def _rebuild(self, ignored_names: Optional[List[str]] = None, ratio: Optional[float] = None) -> None:
        ignored_names = list(self.ignored_names if ignored_names is None else ignored_names)
        ratio = self.pruning_ratio if ratio is None else ratio
        old = [d for d in self.decisions if d.action in ("accept", "skip")]
        self._report("tracing", 0, 3)
        # 1. back to the unpruned model
        while self.DG.history:
            self.DG.undo()
        self.decisions = []
        # 2. a new pruner with the new options (it traces the unpruned model again)
        try:
            pruner = self._make_pruner(ignored_names, ratio)
        except ExplorerError:
            self._replay(old)  # put the model back as it was
            raise
        self.pruner, self.DG = pruner, pruner.DG
        self.DG.undo_depth = 1 << 30
        self.pruning_ratio = ratio
        self.ignored_names = ignored_names
        if self.structure.DG is not self.DG:  # the model is unpruned here, as when the laws were first measured
            self.structure = ModelStructure(self.DG, self._layer_macs, self.macs0)
        self._layout = self._make_layout(self.ignored_names)
        self._sweep = None
        self._report("replaying the decisions", 2, 3)
        dropped = self._replay(old)
        ignored_now = set(self.ignored_names)
        on_ignored = [d for d in dropped if d in ignored_now]
        others = [d for d in dropped if d not in ignored_now]
        msg = f"pruner rebuilt; {len(old) - len(dropped)} earlier decisions kept"
        if on_ignored:
            msg += f", dropped {len(on_ignored)} on now-ignored layers ({fmt_names(on_ignored)})"
        if others:
            where = f" after {self.replay_stopped_at}, which the walk now visits first" if self.replay_stopped_at else ""
            msg += f", dropped {len(others)} that came{where} ({fmt_names(others)})"
        self._notice(msg)
        self._report("replaying the decisions", 3, 3)
