"""The explorer's session: the model and its example inputs, the pruner built from the user's options, and what is
measured once at the start (MACs per layer, the final classifier).

Changing an option the pruner was built with rebuilds the pruner on the unpruned model (:meth:`Session.unprune`,
:meth:`Session.make_pruner`, :meth:`Session.install`) and the walk replays the decisions taken so far
(:meth:`~.walk.Walk.replay`). Layers are named by their qualified names (``model.named_modules()``) or given as
the modules themselves.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import torch.nn as nn

from ..errors import PruneExplorerError, TracingError
from ..graph import DEFAULT_ROOT_TYPES
from ..inputs import CALL_CONVENTION, tensors_in, to_meta
from ..measure import ParamCounter, count_ops_and_params, count_params, params_per_module
from ..measure.structure import ModelStructure, meta_clone
from ..measure.sweep import GroupLayout
from ..validation import check_ratio, resolve_layer

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
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise ExplorerError(f"the model does not run on these example inputs: its forward pass failed with "
                            f"{type(cause).__name__}: {cause}. Check that example_inputs match the model's forward "
                            f"({CALL_CONVENTION}), or pass forward_fn=lambda model, inputs: ... to the explorer."
                            ) from exc
    except Exception:  # noqa: BLE001 - MACs are a nice-to-have: the walk works without them
        return None, None, _last_linear(model) if find_classifier else []


def clean_reason(exc) -> str:
    """An exception as a reason in a sentence, without the names of internal functions (``f() got ...``)."""
    import re

    return re.sub(r"\b[\w.]*\(\) ", "", str(exc)).strip()


def build_pruner(pruner_class, model: nn.Module, example_inputs, importance, options: dict):
    """``pruner_class(model, example_inputs, importance=importance, **options)``, its errors worded for the
    explorer (:class:`ExplorerError`)."""
    try:
        return pruner_class(model, example_inputs, importance=importance, **options)
    except PruneExplorerError as exc:
        if isinstance(exc, TracingError):
            raise ExplorerError(f"the model could not be traced: {exc}") from exc
        raise ExplorerError(f"the pruner could not be built: {exc}") from exc
    except TypeError as exc:
        import re

        bad = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        what = f"there is no option {bad.group(1)!r}" if bad else clean_reason(exc)
        raise ExplorerError(f"the pruner could not be built with these options: {what}. Check the spelling: the "
                            "explorer accepts every option of pe.pruner.BasePruner (round_to, max_pruning_ratio, "
                            "global_pruning, ...)") from exc
    except Exception as exc:
        raise ExplorerError(
            f"the model could not be traced: the forward pass failed with "
            f"{type(exc).__name__}: {exc}. Check example_inputs ({CALL_CONVENTION}) or pass forward_fn=..."
        ) from exc


class Session:
    """The model, the pruner built with the user's options, and what was measured once (a part of
    :class:`~.controller.ExplorerController`; ``controller.session``).

    Attributes: ``model``, ``example_inputs``, ``importance``, ``pruner_class``, ``pruner_kwargs``,
    ``pruning_ratio``, ``ignored_names``, ``pruner`` / ``DG``, ``structure`` (parameter and MAC laws), ``layout``
    (the groups of the walk on original channel ids), ``params0`` / ``macs0`` (the model as built, parameters and
    MACs), ``layer_macs`` / ``layer_params0`` (per module name, as built; MACs None when they could not be counted).

    Args:
        report: ``report(stage, done, total)``, the progress callback (never raises).
    """

    def __init__(self, model: nn.Module, example_inputs, importance, pruning_ratio: float, ignored_layers,
                 pruner_class, pruner_kwargs: dict, report: ProgressFn):
        self.model = model
        self.example_inputs = example_inputs
        self.importance = importance
        self.pruning_ratio = pruning_ratio
        self.pruner_class = pruner_class
        self.pruner_kwargs = dict(pruner_kwargs)
        self.pruner_kwargs.pop("pruning_ratio", None)
        self.report = report
        self.modules: Dict[str, nn.Module] = dict(model.named_modules())
        self._names = {id(m): n for n, m in self.modules.items()}
        self._now: Dict[tuple, Any] = {}  # parameters / MACs of the model now, by graph version
        #: the recovered weights while the model is unpruned and rebuilt (:meth:`unprune`), else None
        self.stashed_weights: Optional[Dict[str, Any]] = None
        self._params = ParamCounter(model)  # exact, reading only the parameter slots (the module tree is fixed)
        explicit = ignored_layers is not None
        ignored_names = self.resolve_layers(ignored_layers or ()) if explicit else []
        # 1. one forward pass: MACs per layer (and, unless given, which layer is the final classifier)
        report("measuring MACs", 0, 4)
        macs, layer_macs, classifier = measure_model(model, example_inputs, self.pruner_kwargs.get("forward_fn"),
                                                     find_classifier=not explicit)
        if not explicit:
            ignored_names = classifier
        # 2. the pruner traces the model
        report("tracing", 1, 4)
        self.ignored_names: List[str] = list(ignored_names)
        self.pruner = self.make_pruner(self.ignored_names)
        self.DG = self.pruner.DG
        self.pruner.driver.keep_every_record()  # every accepted group stays undoable
        # 3. parameter / MAC laws and the group layout (for predictions and the sweep)
        report("grouping", 2, 4)
        self.layer_macs: Optional[Dict[str, float]] = layer_macs
        self.layer_params0 = params_per_module(model)  # as built, per module name (the finish report)
        self.structure = ModelStructure(self.DG, layer_macs, macs)
        self.params0 = self.structure.total_params0
        self.macs0 = macs
        self.layout = self.make_layout(self.ignored_names)

    # ---- the model now ---------------------------------------------------------------------------------------------
    def params_now(self) -> int:
        """Parameters of the model as it is now (exact)."""
        key = ("params", self.DG.version)
        if key not in self._now:
            self._now = {k: v for k, v in self._now.items() if k[1] == self.DG.version}
            # a removed block leaves the module tree: counted afresh then (the counter's slots still hold its layers)
            self._now[key] = count_params(self.model) if self.blocks_removed() else self._params.count()
        return self._now[key]

    def macs_now(self) -> Optional[float]:
        """MACs of the model as it is now (from the structure's laws), or None when they could not be counted."""
        if self.macs0 is None:
            return None
        key = ("macs", self.DG.version)
        if key not in self._now:
            self._now = {k: v for k, v in self._now.items() if k[1] == self.DG.version}
            if self.blocks_removed():  # the structure's laws still count the removed blocks' layers: count them
                from ..measure import count_macs

                self._now[key] = float(count_macs(self.model, self.example_inputs,
                                                  forward_fn=self.pruner_kwargs.get("forward_fn")))
            else:
                self._now[key] = float(self.structure.macs_at(self.structure.kept_now()))
        return self._now[key]

    def blocks_removed(self) -> bool:
        """Whether a depth group (a whole block) is removed now (``prune_depth=True``)."""
        depth = getattr(self.pruner, "depth", None)
        return depth is not None and depth.n_removed() > 0

    def set_pruner_options(self, options: dict) -> dict:
        """Use ``options`` for the next :meth:`make_pruner` (the caller rebuilds); returns the previous ones."""
        old, self.pruner_kwargs = self.pruner_kwargs, dict(options)
        return old

    @property
    def round_to(self) -> Optional[int]:
        r = self.pruner_kwargs.get("round_to")
        return int(r) if r else None

    @property
    def max_ratio(self) -> float:
        return float(self.pruner_kwargs.get("max_pruning_ratio", 1.0) or 1.0)

    # ---- the pruner -----------------------------------------------------------------------------------------------
    def make_pruner(self, ignored_names: Sequence[str], ratio: Optional[float] = None):
        """A new pruner on the model as it is, with these ignored layers and ratio (the other options as set)."""
        options = dict(self.pruner_kwargs)
        options["ignored_layers"] = [self.modules[n] for n in ignored_names]
        options["pruning_ratio"] = self.pruning_ratio if ratio is None else ratio
        return build_pruner(self.pruner_class, self.model, self.example_inputs, self.importance, options)

    @property
    def root_module_types(self):
        return getattr(self.pruner, "root_module_types", None) or DEFAULT_ROOT_TYPES

    def make_layout(self, ignored_names: Sequence[str]) -> GroupLayout:
        """The group layout with these ignored layers (expanded to submodules, plus what the pruner handles itself)."""
        extra = [m for m in self.pruner.group_ignored_layers if not any(m is x for x in self.pruner.ignored_layers)]
        mods = []
        for n in ignored_names:
            mods.extend(self.modules[n].modules())
        return GroupLayout(self.DG, mods + extra, self.root_module_types)

    def unprune(self) -> None:
        """Undo every pruning of the graph (the model is as built again). When a recovery (``controller.recover``)
        stands, the weights are kept first in :attr:`stashed_weights`, for the rebuild that follows to put back."""
        if self.stashed_weights is None and any(getattr(getattr(r, "edit", None), "kind", None) == "recovery"
                                                for r in self.DG.history):
            self.stashed_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        while self.DG.history:
            self.DG.undo()

    def install(self, pruner, ignored_names: List[str], ratio: float) -> None:
        """Use ``pruner`` (built by :meth:`make_pruner` on the unpruned model) from now on."""
        self.pruner, self.DG = pruner, pruner.DG
        self.pruner.driver.keep_every_record()
        self.pruning_ratio = ratio
        self.ignored_names = list(ignored_names)
        if self.structure.DG is not self.DG:  # the model is unpruned here, as when the laws were first measured
            self.structure = ModelStructure(self.DG, self.layer_macs, self.macs0)
        self.layout = self.make_layout(self.ignored_names)

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

    # ---- layer names ----------------------------------------------------------------------------------------------
    @property
    def ignored_modules(self) -> List[nn.Module]:
        return [self.modules[n] for n in self.ignored_names]

    def name_of(self, module: nn.Module, default: str = "") -> str:
        """The qualified name of ``module`` in the model (``default`` when it is not one of its modules)."""
        return self._names.get(id(module), default)

    def resolve_layers(self, layers) -> List[str]:
        """Qualified names of ``layers`` (names or modules, one or many), or :class:`ExplorerError`."""
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        return list(dict.fromkeys(self.resolve_layer(layer) for layer in layers))

    def resolve_layer(self, layer) -> str:
        """The qualified name of ``layer`` (a name or a module), or :class:`ExplorerError` saying what to pass."""
        if isinstance(layer, nn.Module):
            name = self._names.get(id(layer))
            if name is None:
                raise ExplorerError(f"{type(layer).__name__} is not a submodule of the model; pass one of its own "
                                    "layers (or its qualified name, e.g. 'fc')")
            return name
        if isinstance(layer, str):
            return self._names[id(resolve_layer(self.model, layer, "ignored_layers", ExplorerError,
                                                names={n: m for n, m in self.modules.items() if n}))]
        raise ExplorerError(f"a layer is given by its qualified name (str) or the module itself, got {layer!r}")
