"""The explorer's state machine: walk the pruner's groups one by one and accept, adjust, skip or undo each.

Plain Python, no widgets: :class:`ExplorerController` is what the views call and what the tests drive.

The walk
    The pruner (``pe.pruner.BasePruner`` with the user's options) traces the model once. Its groups are visited
    in the dependency graph's deterministic order, each *planned* by the pruner right before it is shown (its
    importance, the channels it proposes to remove, the scope and ratio that led to them), so every plan sees
    the model as the earlier decisions left it. A group the pruner's guards refuse is recorded with its reason
    and passed over. For every group the user can

    * :meth:`~ExplorerController.accept` it (remove the proposed channels, or the ones set by :meth:`adjust`),
    * :meth:`~ExplorerController.skip` it (leave it as it is),
    * :meth:`~ExplorerController.adjust` how many channels to remove, or which ones,
    * :meth:`~ExplorerController.undo` the last accepted group: the model is restored exactly (the dependency
      graph's own undo puts the old parameter objects and module attributes back) and the walk returns to
      that group,
    * :meth:`~ExplorerController.accept_all_remaining`.

    :meth:`~ExplorerController.ignore` and :meth:`~ExplorerController.set_ratio` change the pruner's options:
    the pruner is rebuilt on the unpruned model and the decisions taken so far are replayed (by original
    channel ids, so they stay valid), except those on layers that are now ignored.

Figures
    :meth:`figures` (header), :meth:`card` (the current group), :meth:`curves` (the ratio curves) and
    :meth:`sweep` (uniform pruning at p = 0 .. 0.9, computed from the group structure without tracing again;
    see :mod:`.structure`) return plain dicts and lists.

Errors
    Bad input raises :class:`ExplorerError` (a :class:`~prune_explorer.PruneExplorerError`) with a message that
    says what to do, and changes nothing.
"""

from __future__ import annotations

import difflib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import PruneExplorerError, PruningError, TracingError
from ..graph import DEFAULT_ROOT_TYPES
from .structure import GroupLayout, ModelStructure, SweepResult, kept_channels, meta_clone, uniform_sweep

__all__ = ["ExplorerController", "ExplorerError", "Decision", "DEFAULT_SWEEP_RATIOS", "AUTO_SKIP_KINDS"]

#: skip kinds of a plan (``pe.pruner.guards``) that the walk passes over by itself, recording the reason; for the
#: other kinds (target reached, no removal fits the constraints) the group is shown with an empty proposal and the
#: user may still choose channels.
AUTO_SKIP_KINDS = ("guard", "importance", "heads")

DEFAULT_SWEEP_RATIOS = tuple(round(0.1 * i, 1) for i in range(10))  # 0.0 .. 0.9

ProgressFn = Callable[[str, int, int], None]


class ExplorerError(PruneExplorerError, ValueError):
    """A request the explorer refuses (bad option, unknown layer, bad indices, nothing left to accept...).

    Raised before anything changes: the model, the pruner and the walk are exactly as they were.
    """


@dataclass
class Decision:
    """One step of the walk: a group accepted, skipped by the user, or skipped by a guard of the pruner."""

    action: str  # "accept" | "skip" | "guard"
    root: str  # qualified name of the group's root layer
    root_label: str  # root channel space, e.g. "layer1.0.conv1.out"
    root_fn: str = ""
    channels: int = 0  # root channels in the group when it was shown
    idxs: List[int] = field(default_factory=list)  # root channels removed (current indices at that time)
    orig_idxs: List[int] = field(default_factory=list)  # the same channels, as original channel ids
    proposed: Optional[List[int]] = None  # what the pruner proposed
    reason: str = ""  # why a guard skipped it
    params_before: int = 0
    params_after: int = 0
    macs_before: float = 0.0
    macs_after: float = 0.0
    channels_removed: float = 0.0  # fraction of prunable channels removed after this step
    record: Any = field(default=None, repr=False)  # the graph's PruneRecord (accepts)
    explicit: bool = False  # an attention-head group of the pruner (not one of the graph's channel groups)

    @property
    def n_removed(self) -> int:
        return len(self.idxs)

    def as_dict(self) -> dict:
        d = {"action": self.action, "root": self.root, "root_fn": self.root_fn, "channels": self.channels}
        if self.action == "accept":
            d.update(
                idxs=list(self.idxs), n_removed=len(self.idxs),
                followed_proposal=self.proposed is not None and sorted(self.proposed) == sorted(self.idxs),
                params_removed=self.params_before - self.params_after,
                macs_removed=int(round(self.macs_before - self.macs_after)),
            )
        if self.action == "guard":
            d["reason"] = self.reason
        return d


def _fmt_names(names: Sequence[str], limit: int = 5) -> str:
    names = list(names)
    s = ", ".join(names[:limit])
    return s + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _as_int_list(idxs, what: str) -> List[int]:
    if isinstance(idxs, str):
        idxs = [t for t in idxs.replace(",", " ").split() if t]
        try:
            return [int(t) for t in idxs]
        except ValueError:
            raise ExplorerError(f"{what}: could not read {idxs!r} as channel indices; type integers separated by "
                                "commas or spaces, e.g. '0, 5, 7'") from None
    if isinstance(idxs, torch.Tensor):
        idxs = idxs.reshape(-1).tolist()
    out = []
    for i in idxs:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ExplorerError(f"{what}: channel indices must be integers, got {i!r}")
        out.append(int(i))
    return out


class ExplorerController:
    """State and decisions of one exploration (see the module docstring).

    Args:
        model: the ``nn.Module`` to prune (in place, as the pruner does).
        example_inputs: what the model is called with for tracing (tensor, tuple/list or dict).
        importance: an importance criterion (default ``pe.importance.MagnitudeImportance(p=2)``).
        pruning_ratio: channel ratio each group is proposed to lose, in ``[0, 1)``.
        ignored_layers: modules or qualified names never pruned (their output channels). ``None`` pre-selects
            the final classifier (the last linear/conv layer whose outputs are the model's outputs).
        progress: ``progress(stage, done, total)`` called during long work (build, sweep, accept-all).
        pruner_class: the pruner to build (default ``pe.pruner.BasePruner``).
        **pruner_kwargs: any other ``BasePruner`` option (``round_to``, ``max_pruning_ratio``, ``global_pruning``...).
    """

    def __init__(self, model: nn.Module, example_inputs, importance=None, pruning_ratio: float = 0.5,
                 ignored_layers=None, progress: Optional[ProgressFn] = None, pruner_class=None, **pruner_kwargs):
        if not isinstance(model, nn.Module):
            raise ExplorerError(f"Explorer needs a torch.nn.Module, got {type(model).__name__}")
        self.pruning_ratio = self._check_ratio(pruning_ratio)
        self.model = model
        self.example_inputs = example_inputs
        self.progress = progress
        self._listeners: List[Callable[[str], None]] = []
        if importance is None:
            from .. import importance as _imp

            importance = _imp.MagnitudeImportance(p=2)
        self.importance = importance
        if pruner_class is None:
            from ..pruner import BasePruner as pruner_class
        self.pruner_class = pruner_class
        self.pruner_kwargs = dict(pruner_kwargs)
        self.pruner_kwargs.pop("pruning_ratio", None)
        self.decisions: List[Decision] = []
        self.current = None  # the group on show, whole (None when the walk is over)
        self._planned = None  # the pruner's plan for it (importance, proposal, scope, ratio, max_removable...)
        self.current_idxs: List[int] = []
        self.message = ""  # the last notice for the status area (not an error)
        self._sweep: Optional[SweepResult] = None
        self._cache: Dict[tuple, Any] = {}  # figures of the current state, cleared on every change
        self._modules = dict(model.named_modules())
        self._names = {id(m): n for n, m in self._modules.items()}
        explicit = ignored_layers is not None
        ignored_names = self._resolve_layers(ignored_layers or ()) if explicit else []
        # 1. one forward pass: MACs per layer (and, unless given, which layer is the final classifier)
        self._report("build", 0, 3)
        macs, layer_macs, classifier = self._measure(find_classifier=not explicit)
        if not explicit:
            ignored_names = classifier
        # 2. the pruner traces the model
        self._report("build", 1, 3)
        self.ignored_names: List[str] = list(ignored_names)
        self.pruner = self._make_pruner(self.ignored_names)
        self.DG = self.pruner.DG
        self.DG.undo_depth = 1 << 30  # every accepted group stays undoable
        # 3. parameter / MAC laws and the group layout (for predictions and the sweep)
        self._report("build", 2, 3)
        self._layer_macs = layer_macs
        self.structure = ModelStructure(self.DG, layer_macs, macs)
        self.params0 = self.structure.total_params0
        self.macs0 = macs
        self._layout = self._make_layout(self.ignored_names)
        self._restart_walk()
        self._report("build", 3, 3)

    # ------------------------------------------------------------------------------------------------------------
    # building
    # ------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _check_ratio(ratio) -> float:
        try:
            r = float(ratio)
        except (TypeError, ValueError):
            raise ExplorerError(f"pruning_ratio must be a number in [0, 1), got {ratio!r}") from None
        if not (0.0 <= r < 1.0) or math.isnan(r):
            raise ExplorerError(
                f"pruning_ratio must be in [0, 1) (the fraction of each group's channels to remove), got {ratio!r}; "
                "e.g. 0.5 removes half of the channels"
            )
        return r

    def _report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            try:
                self.progress(stage, done, total)
            except Exception:  # a broken progress display must not break the work
                pass

    def _make_pruner(self, ignored_names: Sequence[str], ratio: Optional[float] = None):
        kwargs = dict(self.pruner_kwargs)
        kwargs["ignored_layers"] = [self._modules[n] for n in ignored_names]
        kwargs["pruning_ratio"] = self.pruning_ratio if ratio is None else ratio
        try:
            return self.pruner_class(self.model, self.example_inputs, importance=self.importance, **kwargs)
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
                f"{type(exc).__name__}: {exc}. Check example_inputs (a tensor is passed as model(x), a tuple as "
                "model(*x), a dict as model(**x)) or pass forward_fn=..."
            ) from exc

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

    @property
    def ignored_modules(self) -> List[nn.Module]:
        return [self._modules[n] for n in self.ignored_names]

    def _resolve_layers(self, layers) -> List[str]:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        names = []
        for layer in layers:
            names.append(self._resolve_layer(layer))
        return list(dict.fromkeys(names))

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

    def _measure(self, find_classifier: bool):
        """MACs (total and per module) in one forward pass; also the layers whose outputs are the model's outputs.

        The pass runs on a ``meta``-device copy of the model (shapes only, no arithmetic), or on the model itself
        when its forward cannot run on meta tensors (data-dependent control flow, ...).
        """
        from ..measure import count_ops_and_params

        fwd = self.pruner_kwargs.get("forward_fn")
        try:
            meta_model = meta_clone(self.model)
            meta_inputs = _to_meta(self.example_inputs)
        except Exception:  # noqa: BLE001 - a model that cannot be copied is measured as it is
            meta_model = None
        if meta_model is not None:
            try:
                return self._count(count_ops_and_params, meta_model, meta_inputs, fwd, find_classifier)
            except Exception:  # noqa: BLE001 - fall back to the real forward pass
                pass
        try:
            return self._count(count_ops_and_params, self.model, self.example_inputs, fwd, find_classifier)
        except TracingError as exc:
            raise ExplorerError(f"the model does not run on these example inputs, so the explorer cannot start: {exc}") from exc
        except Exception:  # noqa: BLE001 - MACs are a nice-to-have: the walk works without them
            return None, None, self._last_linear() if find_classifier else []

    def _count(self, count_ops_and_params, model, inputs, fwd, find_classifier):
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
            macs, _, layer_macs, _ = count_ops_and_params(model, inputs, layer_wise=True, forward_fn=fwd,
                                                     layer_keys="name")
        finally:
            for h in hooks:
                h.remove()
        classifier: List[str] = []
        if find_classifier:
            for t in _tensors_in(outputs[-1] if outputs else None):
                name = produced.get(id(t))
                if name is not None and name not in classifier:
                    classifier.append(name)
            classifier = classifier or self._last_linear()  # the output is post-processed
        return macs, layer_macs, classifier

    def _last_linear(self) -> List[str]:
        lin = [n for n, m in self._modules.items() if isinstance(m, nn.Linear)]
        return lin[-1:]

    # ------------------------------------------------------------------------------------------------------------
    # listeners
    # ------------------------------------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(event)`` after every change (event: accept, skip, adjust, undo, ignore, ratio, sweep, ...)."""
        self._listeners.append(fn)

    def _changed(self, event: str) -> None:
        self._cache.clear()
        for fn in list(self._listeners):
            fn(event)

    # ------------------------------------------------------------------------------------------------------------
    # the walk
    # ------------------------------------------------------------------------------------------------------------
    def _groups(self):
        return self.pruner.get_all_groups()

    def _restart_walk(self) -> None:
        """Enumerate the groups again and move past the decisions already taken (after undo / rebuild)."""
        self._iter = iter(self._groups())
        k = 0
        while k < len(self.decisions):
            try:
                g = next(self._iter)
            except StopIteration:
                del self.decisions[k:]
                break
            if g.root_name != self.decisions[k].root:
                # the walk changed shape (should not happen): forget the rest of the log, show this group
                del self.decisions[k:]
                self._show(g, self.pruner.plan(g))
                return
            k += 1
        self._advance()

    def _advance(self) -> None:
        """Plan the next group and show it, unless a guard refuses it (then record why and go on)."""
        for g in self._iter:
            planned = self.pruner.plan(g)
            kind = getattr(planned, "skip_kind", None)
            if kind in AUTO_SKIP_KINDS:
                self.decisions.append(self._decision(g, planned, "guard", reason=planned.skip_reason or kind))
                continue
            self._show(g, planned)
            return
        self.current = None
        self._planned = None
        self.current_idxs = []

    def _show(self, group, planned) -> None:
        self.current = group
        self._planned = planned
        group.importance = planned.importance  # so pruner.propose(group, n) reuses it
        self.current_idxs = sorted(int(i) for i in planned.proposed_idxs)

    def _decision(self, group, planned, action: str, idxs: Sequence[int] = (), reason: str = "") -> Decision:
        from ..graph.group import fn_name

        root = group.root_space
        prop = getattr(planned, "proposed_idxs", None)
        return Decision(
            action=action, root=group.root_name, root_label=root.label, root_fn=fn_name(group.pruning_fn),
            channels=root.current_size, idxs=list(idxs),
            orig_idxs=[int(i) for i in root.alive_idx[list(idxs)]] if len(idxs) else [],
            proposed=None if prop is None else sorted(int(i) for i in prop),
            reason=reason, explicit=type(group).__name__.endswith("ExplicitGroup"),
        )

    def _require_current(self, what: str) -> None:
        if self.current is None:
            raise ExplorerError(f"cannot {what}: every group has been decided (the walk is over). Undo to go back, "
                                "or change the ratio / ignored layers to start a new walk.")

    # ---- actions ---------------------------------------------------------------------------------------------------
    def accept(self, idxs: Optional[Sequence[int]] = None) -> Decision:
        """Prune the current group (its proposed channels, those set by :meth:`adjust`, or ``idxs``) and move on."""
        self._require_current("accept")
        if idxs is not None:
            idxs = self._validate_idxs(idxs)
        else:
            idxs = list(self.current_idxs)
        d = self._apply(idxs)
        self._advance()
        self._changed("accept")
        return d

    def _apply(self, idxs: List[int], proposed=None) -> Decision:
        """Prune the current group's root channels ``idxs`` (nothing when empty: a skip) and log the decision."""
        group, planned = self.current, self._planned
        d = self._decision(group, planned, "accept" if idxs else "skip", idxs)
        if proposed is not None:
            d.proposed = proposed
        d.params_before, d.macs_before = self._params_now(), self._macs_now()
        if idxs:
            try:
                rec = planned.prune(idxs=list(idxs))
            except PruneExplorerError as exc:
                raise ExplorerError(f"the group rooted at {group.root_name} could not be pruned: {exc}") from exc
            d.record = rec
            self._cache.clear()
        d.params_after, d.macs_after = self._params_now(), self._macs_now()
        d.channels_removed = self._layout.channels_removed_fraction()
        self.decisions.append(d)
        return d

    def skip(self) -> Decision:
        """Leave the current group as it is and move on."""
        self._require_current("skip")
        d = self._decision(self.current, self._planned, "skip")
        d.params_before = d.params_after = self._params_now()
        d.macs_before = d.macs_after = self._macs_now()
        d.channels_removed = self._layout.channels_removed_fraction()
        self.decisions.append(d)
        self._advance()
        self._changed("skip")
        return d

    def adjust(self, n: Optional[int] = None, idxs=None) -> List[int]:
        """Choose what accepting the current group removes: the ``n`` least important channels, or ``idxs``.

        ``n`` must be reachable (see :meth:`allowed_counts`: units, ``round_to``, guards); ``idxs`` are root channel
        indices (a list or a string such as ``"0, 5, 7"``), completed to whole units. Returns the new selection.
        """
        self._require_current("adjust")
        if (n is None) == (idxs is None):
            raise ExplorerError("adjust takes either n (how many channels to remove) or idxs (which ones), not both")
        if idxs is not None:
            sel = self._validate_idxs(idxs)
        else:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
                raise ExplorerError(f"n must be a whole number of channels, got {n!r}")
            n = int(n)
            allowed = self.allowed_counts()
            if n not in allowed:
                lo, hi = allowed[0], allowed[-1]
                near = sorted(allowed, key=lambda a: abs(a - n))[:2]
                raise ExplorerError(
                    f"cannot remove {n} channels from {self.current.root_name}: allowed counts are {lo}..{hi}"
                    + (f" in steps that keep whole units / multiples of round_to={self.round_to}" if len(allowed) < hi - lo + 1 else "")
                    + f"; nearest valid: {', '.join(map(str, sorted(near)))}"
                )
            sel = self._propose(n)
        self.current_idxs = sel
        self._changed("adjust")
        return list(sel)

    def use_proposal(self) -> List[int]:
        """Go back to the pruner's proposal for the current group (undoing :meth:`adjust`)."""
        self._require_current("use the proposal")
        self.current_idxs = sorted(int(i) for i in self._planned.proposed_idxs)
        self._changed("adjust")
        return list(self.current_idxs)

    @property
    def round_to(self) -> Optional[int]:
        r = self.pruner_kwargs.get("round_to")
        return int(r) if r else None

    def max_removable(self) -> int:
        """The most root channels of the current group that the guards allow to remove."""
        self._require_current("ask for the maximum")
        return int(self._planned.max_removable)

    def allowed_counts(self) -> List[int]:
        """Every number of channels the current group can lose (whole units, ``round_to``, guards)."""
        self._require_current("list the allowed counts")
        key = ("allowed", id(self.current), self.DG.version)
        if key in self._cache:
            return self._cache[key]
        g = self.current
        sizes = sorted(len(u) for u in g.units)
        total = g.root_space.current_size
        hi = self.max_removable()
        if all(s == sizes[0] for s in sizes):
            counts = list(range(0, hi + 1, sizes[0] if sizes else 1))
        else:  # subset sums of unit sizes
            reach = {0}
            for s in sizes:
                reach |= {r + s for r in reach if r + s <= hi}
            counts = sorted(reach)
        rt = self.round_to
        if rt and rt > 1:  # the pruner keeps a multiple of round_to channels (or removes nothing)
            counts = [c for c in counts if (total - c) % rt == 0 or c == 0]
        self._cache[key] = counts
        return counts

    def _propose(self, n: int) -> List[int]:
        if n == 0:
            return []
        idxs = sorted(int(i) for i in self.pruner.propose(self.current, n))
        if len(idxs) != n:
            self.message = (f"{n} channels cannot be removed from {self.current.root_name} while keeping the "
                            f"constraints (units, round_to, member multiples, guards); selected {len(idxs)} instead")
        return idxs

    def _candidates(self) -> List[int]:
        return [int(i) for i in self._planned.candidate_idxs]

    def _validate_idxs(self, idxs) -> List[int]:
        g = self.current
        vals = _as_int_list(idxs, f"channels of {g.root_name}")
        n = g.root_space.current_size
        bad = [i for i in vals if i < 0 or i >= n]
        if bad:
            raise ExplorerError(f"channel indices {bad[:5]} are out of range for {g.root_name}, which has {n} "
                                f"channels (valid: 0..{n - 1}); nothing was changed")
        if len(set(vals)) != len(vals):
            dup = sorted({i for i in vals if vals.count(i) > 1})
            raise ExplorerError(f"channel indices {dup[:5]} are listed twice; list each channel once")
        cand = set(self._candidates())
        outside = [i for i in vals if i not in cand]
        if outside:
            raise ExplorerError(f"channels {outside[:5]} of {g.root_name} are not part of this group (they are fixed, "
                                "e.g. they reach the model output, or belong to an ignored layer's outputs)")
        # complete whole units
        unit_of = {}
        for u in g.units:
            for i in u:
                unit_of[i] = u
        full = set()
        for i in vals:
            full.update(unit_of.get(i, [i]))
        hi = self.max_removable()
        if len(full) > hi:
            raise ExplorerError(f"removing {len(full)} channels from {g.root_name} goes past the guards: at most {hi} "
                                f"of its {n} channels may be removed (max_pruning_ratio, and at least one channel stays)")
        if len(full) > len(vals):
            self.message = (f"added {len(full) - len(vals)} channels to complete whole units (channels tied by the "
                            "layer's arithmetic are removed together)")
        return sorted(full)

    def undo(self) -> Decision:
        """Restore the model exactly as it was before the last accepted group, and show that group again."""
        k = next((i for i in range(len(self.decisions) - 1, -1, -1) if self.decisions[i].action == "accept"), None)
        if k is None:
            raise ExplorerError("nothing to undo: no group has been accepted yet")
        d = self.decisions[k]
        try:
            self.DG.undo(d.record) if d.record is not None else self.DG.undo()
        except PruneExplorerError as exc:
            raise ExplorerError(f"undo failed: {exc}") from exc
        del self.decisions[k:]
        self._cache.clear()
        self._restart_walk()
        self.message = f"undid {d.root}: the model is as it was before it was accepted"
        self._changed("undo")
        return d

    def accept_all_remaining(self) -> List[Decision]:
        """Accept every remaining group as the pruner proposes it (the current one with its adjusted selection)."""
        self._require_current("accept all")
        done = []
        n_total = self.n_groups_left
        self._report("accept all", 0, n_total)
        while self.current is not None:
            done.append(self._apply(list(self.current_idxs)))
            self._advance()
            self._report("accept all", len(done), max(n_total, len(done) + self.n_groups_left))
        self._changed("accept_all")
        return done

    # ---- options that rebuild the pruner ----------------------------------------------------------------------------
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
        r = self._check_ratio(ratio)
        if r == self.pruning_ratio:
            return
        self._rebuild(ratio=r)
        self._changed("ratio")

    def _rebuild(self, ignored_names: Optional[List[str]] = None, ratio: Optional[float] = None) -> None:
        ignored_names = list(self.ignored_names if ignored_names is None else ignored_names)
        ratio = self.pruning_ratio if ratio is None else ratio
        old = [d for d in self.decisions if d.action in ("accept", "skip")]
        self._report("rebuild", 0, 3)
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
        self._report("rebuild", 2, 3)
        dropped = self._replay(old)
        ignored_now = set(self.ignored_names)
        on_ignored = [d for d in dropped if d in ignored_now]
        others = [d for d in dropped if d not in ignored_now]
        msg = f"pruner rebuilt; {len(old) - len(dropped)} earlier decisions kept"
        if on_ignored:
            msg += f", dropped {len(on_ignored)} on now-ignored layers ({_fmt_names(on_ignored)})"
        if others:
            where = f" after {self.replay_stopped_at}, which the walk now visits first" if self.replay_stopped_at else ""
            msg += f", dropped {len(others)} that came{where} ({_fmt_names(others)})"
        self.message = msg
        self._report("rebuild", 3, 3)

    def _replay(self, old: List[Decision]) -> List[str]:
        """Walk the groups again, re-taking the decisions of ``old`` (by original channel ids) where they apply."""
        pending = {d.root: d for d in old}
        self.decisions = []
        self._iter = iter(self._groups())
        dropped = []
        self.replay_stopped_at = None
        while True:
            self._advance()
            g = self.current
            if g is None:
                break
            if g.root_name not in pending:
                # decisions are a prefix of the walk: a group that was not walked before (e.g. a layer no longer
                # ignored) comes first now, so the decisions after it cannot be kept
                self.replay_stopped_at = g.root_name
                break
            d = pending.pop(g.root_name)
            if d.action == "skip":
                self.decisions.append(self._decision(g, self._planned, "skip"))
                self.decisions[-1].params_before = self.decisions[-1].params_after = self._params_now()
                self.decisions[-1].macs_before = self.decisions[-1].macs_after = self._macs_now()
                self.decisions[-1].channels_removed = self._layout.channels_removed_fraction()
                continue
            root = g.root_space
            alive = root.alive
            orig = np.asarray(d.orig_idxs, dtype=np.int64)
            cand = set(self._candidates())
            cur = [int(root.rank[o]) for o in orig if alive[o]]
            if len(cur) != len(orig) or not set(cur) <= cand:
                dropped.append(d.root)
                continue
            try:
                self._apply(cur, proposed=d.proposed)
            except ExplorerError:
                dropped.append(d.root)
        dropped.extend(pending)
        return dropped

    # ------------------------------------------------------------------------------------------------------------
    # figures
    # ------------------------------------------------------------------------------------------------------------
    def _params_now(self) -> int:
        key = ("params", self.DG.version)
        if key not in self._cache:
            from ..measure import count_params

            self._cache[key] = count_params(self.model)
        return self._cache[key]

    def _macs_now(self) -> Optional[float]:
        if self.macs0 is None:
            return None
        key = ("macs", self.DG.version)
        if key not in self._cache:
            self._cache[key] = float(self.structure.macs_at(self.structure.kept_now()))
        return self._cache[key]

    @property
    def n_groups_left(self) -> int:
        """Groups not decided yet, the current one included (an estimate from the group layout)."""
        if self.current is None:
            return 0
        return max(1, self._layout.n_groups - len(self.decisions))

    def figures(self) -> dict:
        """Header figures: parameters and MACs (original, now, % removed), groups done / skipped / left, ratio."""
        p_now, m_now = self._params_now(), self._macs_now()
        acc = sum(d.action == "accept" for d in self.decisions)
        skipped = sum(d.action == "skip" for d in self.decisions)
        guard = sum(d.action == "guard" for d in self.decisions)
        return {
            "params_original": self.params0,
            "params_now": p_now,
            "params_removed": 1.0 - p_now / self.params0 if self.params0 else 0.0,
            "macs_original": self.macs0,
            "macs_now": None if m_now is None else int(round(m_now)),
            "macs_removed": (1.0 - m_now / self.macs0) if (self.macs0 and m_now is not None) else None,
            "groups_accepted": acc,
            "groups_skipped": skipped,
            "groups_guard_skipped": guard,
            "groups_done": acc + skipped + guard,
            "groups_left": self.n_groups_left,
            "groups_total": acc + skipped + guard + self.n_groups_left,
            "pruning_ratio": self.pruning_ratio,
            "channels_removed": self._layout.channels_removed_fraction(),
            "current_ratio": self.current_ratio(),
            "finished": self.current is None,
        }

    def current_ratio(self) -> Optional[float]:
        """Channel ratio of the current selection: channels to remove / root channels of the current group."""
        if self.current is None:
            return None
        n = self.current.root_space.current_size
        return len(self.current_idxs) / n if n else 0.0

    def predict(self, idxs: Optional[Sequence[int]] = None) -> dict:
        """Predicted change if the current group is accepted with ``idxs`` (default: the current selection).

        Parameters are exact (from the members' weight shapes); MACs follow :mod:`.structure` (exact for
        convolutions, linear layers and norms). Nothing is pruned.
        """
        self._require_current("predict")
        idxs = list(self.current_idxs if idxs is None else idxs)
        key = ("predict", id(self.current), self.DG.version, tuple(idxs))
        if key in self._cache:
            return self._cache[key]
        g = self.current
        rows = []
        removed: Dict[int, int] = {}
        items = g.select(idxs).items if idxs else []
        by_space = {it.dep.space.index: it for it in items}
        for it in g.items:
            s = it.dep.space
            removed_here = len(by_space[s.index].idxs) if s.index in by_space else 0
            if removed_here:
                removed[s.index] = removed.get(s.index, 0) + removed_here
        p_removed, m_removed, per_space = self.structure.group_effect(removed) if removed else (0, 0.0, {})
        for it in g.items:
            s = it.dep.space
            node = it.dep.target
            r = removed.get(s.index, 0)
            rows.append({
                "name": node.name,
                "type": node.op,
                "side": "in=out" if s.passthrough else s.side,
                "channels_before": s.current_size,
                "channels_after": s.current_size - r,
                "params_removed": int(per_space.get(s.index, 0)),
                "is_root": s is g.root_space,
            })
        p_now, m_now = self._params_now(), self._macs_now()
        out = {
            "rows": rows,
            "n_removed": len(idxs),
            "params_removed": int(p_removed),
            "params_after": p_now - int(p_removed),
            "params_removed_pct": p_removed / p_now if p_now else 0.0,
            "macs_removed": None if m_now is None else int(round(m_removed)),
            "macs_after": None if m_now is None else int(round(m_now - m_removed)),
            "macs_removed_pct": (m_removed / m_now) if m_now else None,
        }
        self._cache[key] = out
        return out

    def card(self) -> Optional[dict]:
        """Everything the group card shows about the current group (None when the walk is over)."""
        if self.current is None:
            return None
        g = self.current
        planned = self._planned
        cand = self._candidates()
        imp = planned.importance
        if imp is None:
            imp_list = [float("nan")] * len(cand)
        else:
            arr = imp.detach().float().reshape(-1).cpu().numpy() if isinstance(imp, torch.Tensor) else np.asarray(imp, dtype=np.float64)
            imp_list = [float(v) for v in arr]
        sel = set(self.current_idxs)
        removed_imp = [v for c, v in zip(cand, imp_list) if c in sel and math.isfinite(v)]
        kept_imp = [v for c, v in zip(cand, imp_list) if c not in sel and math.isfinite(v)]
        threshold = None
        if removed_imp and kept_imp:
            threshold = (max(removed_imp) + min(kept_imp)) / 2.0
        elif removed_imp:
            threshold = max(removed_imp)
        prop = sorted(int(i) for i in planned.proposed_idxs)
        scope = planned.scope
        ratio = planned.pruning_ratio
        guard_notes = []
        for d in reversed(self.decisions):
            if d.action != "guard":
                break
            guard_notes.append({"root": d.root, "reason": d.reason})
        return {
            "root": g.root_name,
            "root_label": g.root_space.label,
            "root_type": g.root.op,
            "position": len(self.decisions) + 1,
            "channels": g.root_space.current_size,
            "candidates": cand,
            "importance": imp_list,
            "selected": sorted(sel),
            "proposed": prop,
            "follows_proposal": sorted(sel) == prop,
            "threshold": threshold,
            "scope": None if scope is None else str(scope),
            "pruning_ratio": None if ratio is None else float(ratio),
            "n_units": len(g.units),
            "max_removable": self.max_removable(),
            "allowed_counts": self.allowed_counts(),
            "prediction": self.predict(),
            "guard_skipped": list(reversed(guard_notes)),
            "note": planned.skip_reason,  # why the pruner proposes nothing (the user may still choose channels)
            "step": planned.step,
        }

    def guard_skipped(self) -> List[dict]:
        """Every group a guard of the pruner passed over, with its reason."""
        return [{"root": d.root, "reason": d.reason} for d in self.decisions if d.action == "guard"]

    def curves(self) -> dict:
        """Ratio-curve data: one point per accepted group plus the references and the sweep (when computed)."""
        xs = [0.0]
        yp = [0.0]
        ym = [0.0] if self.macs0 else []
        names = ["(start)"]
        for d in self.decisions:
            if d.action != "accept":
                continue
            xs.append(d.channels_removed)
            yp.append(1.0 - d.params_after / self.params0)
            if self.macs0:
                ym.append(1.0 - d.macs_after / self.macs0)
            names.append(d.root)
        ref_x = [i / 50 for i in range(51)]
        return {
            "points": {"channels_removed": xs, "params_removed": yp, "macs_removed": ym, "roots": names},
            "reference": {"p": ref_x, "quadratic": [1 - (1 - p) ** 2 for p in ref_x], "linear": list(ref_x)},
            "sweep": None if self._sweep is None else self._sweep.as_dict(),
        }

    def sweep(self, ratios: Sequence[float] = DEFAULT_SWEEP_RATIOS) -> SweepResult:
        """Uniform pruning at each ratio (every group loses ``p`` of its channels, ``round_to`` and guards applied):
        the fractions of parameters and MACs removed, computed from the group structure without tracing again."""
        ratios = [float(r) for r in ratios]
        for r in ratios:
            if not (0.0 <= r < 1.0):
                raise ExplorerError(f"sweep ratios must be in [0, 1), got {r}")
        self._report("sweep", 0, len(ratios))
        self._sweep = uniform_sweep(
            self.structure, self._layout, ratios, round_to=self.round_to,
            max_ratio=float(self.pruner_kwargs.get("max_pruning_ratio", 1.0) or 1.0),
            progress=lambda i, n: self._report("sweep", i, n),
        )
        self._changed("sweep")
        return self._sweep

    @property
    def sweep_result(self) -> Optional[SweepResult]:
        return self._sweep

    def reachable_reduction(self, ignored_layers=None, ratio: Optional[float] = None) -> dict:
        """Fraction of parameters (and MACs) uniform pruning at ``ratio`` would remove with these ignored layers."""
        names = self.ignored_names if ignored_layers is None else self._resolve_layers(ignored_layers)
        ratio = self.pruning_ratio if ratio is None else self._check_ratio(ratio)
        key = ("reach", tuple(sorted(names)), ratio)
        if key in self._cache:
            return self._cache[key]
        layout = self._layout if names == self.ignored_names else self._make_layout(names)
        res = uniform_sweep(self.structure, layout, [ratio], round_to=self.round_to,
                            max_ratio=float(self.pruner_kwargs.get("max_pruning_ratio", 1.0) or 1.0))
        out = {"ratio": ratio, "params_removed": res.params_removed[0], "macs_removed": res.macs_removed[0],
               "params": res.params[0], "ignored": list(names)}
        self._cache[key] = out
        return out

    def prunable_layers(self) -> List[dict]:
        """Every layer that can root a group (conv, linear, ...), with its channels and whether it is ignored."""
        from ..graph.channel_space import SIDE_OUT

        root_types = tuple(self.root_module_types or DEFAULT_ROOT_TYPES)
        out, seen = [], set()
        for s in self.DG.spaces:
            if s.side != SIDE_OUT or not isinstance(s.owner, root_types) or id(s.owner) in seen:
                continue
            seen.add(id(s.owner))
            name = self._names.get(id(s.owner), s.name)
            out.append({
                "name": name, "type": type(s.owner).__name__, "channels": s.current_size,
                "original_channels": s.size, "ignored": name in self.ignored_names,
                "prunable_fraction": self.DG.prunable_fraction(s.owner),
                "fixed_reason": self.DG.fixed_reason(s.owner),
            })
        return out

    def groups_of(self, layer) -> List[dict]:
        """The groups (of the walk) that touch ``layer``: their root, the members' side and channel count."""
        name = self._resolve_layer(layer)
        module = self._modules[name]
        res = []
        for g in self._groups():
            hit = [it for it in g.items if it.dep.layer is module]
            if hit:
                res.append({
                    "root": g.root_name, "members": len(g.items), "channels": g.root_space.current_size,
                    "sides": sorted({"in=out" if it.dep.space.passthrough else it.dep.space.side for it in hit}),
                    "is_current": self.current is not None and g.root_name == self.current.root_name,
                    "decision": next((d.action for d in self.decisions if d.root == g.root_name), None),
                })
        return res

    # ------------------------------------------------------------------------------------------------------------
    # results
    # ------------------------------------------------------------------------------------------------------------
    @property
    def history(self) -> List[dict]:
        """The decisions so far, JSON-able: ``[{"action", "root", "idxs", ...}, ...]`` in walk order."""
        return [d.as_dict() for d in self.decisions]

    @property
    def pruning_history(self) -> List[dict]:
        """The graph's record of what was pruned (what ``pe.save_pruned`` stores)."""
        from ..graph import model_history

        return [dict(h) for h in model_history(self.model)]

    def code(self, model_expr: Optional[str] = None) -> str:
        """A short standalone script that applies the same pruning to a fresh copy of the model (no widgets).

        ``model_expr`` is the Python expression that builds the model (e.g. ``"torchvision.models.resnet18()"``);
        without it the script has a placeholder line to fill in.
        """
        accepted = [d for d in self.decisions if d.action == "accept"]
        ex = self.example_inputs
        if isinstance(ex, torch.Tensor):
            inputs = _tensor_expr(ex)
        elif isinstance(ex, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in ex):
            inputs = "(" + ", ".join(_tensor_expr(t) for t in ex) + ("," if len(ex) == 1 else "") + ")"
        elif isinstance(ex, dict) and all(isinstance(t, torch.Tensor) for t in ex.values()):
            inputs = "{" + ", ".join(f"{k!r}: {_tensor_expr(t)}" for k, t in ex.items()) + "}"
        else:
            inputs = "...  # the example inputs you gave the explorer"
        needs_tv = model_expr is not None and "torchvision" in model_expr
        head = [
            '"""Reproduce the pruning chosen in the prune_explorer Explorer (no widgets needed)."""',
            "import torch",
            *(["import torchvision"] if needs_tv else []),
            "import prune_explorer as pe",
            "",
            f"model = {model_expr}" if model_expr else
            "model = ...  # build the model and load its weights exactly as before the explorer pruned it",
        ]
        if any(d.explicit for d in accepted):
            # attention-head groups are not graph groups: replay every member, as pe.load_pruned does
            body = [
                "",
                "# every pruned member (layer, pruning function, channel indices at that time), group by group",
                "HISTORY = " + _pretty_history(self.pruning_history),
                "",
                "pe.history.apply_history(model, HISTORY)",
            ]
        else:
            steps = [(d.root, d.root_fn, list(d.idxs)) for d in accepted]
            body = [
                f"example_inputs = {inputs}",
                "",
                "# (root layer, pruning function, root channel indices) of every accepted group, in order",
                "STEPS = " + _pretty_steps(steps),
                "",
                "DG = pe.DependencyGraph().build_dependency(model, example_inputs)",
                "layers = dict(model.named_modules())",
                "for name, fn, idxs in STEPS:",
                "    DG.get_pruning_group(layers[name], getattr(pe, fn), idxs).prune()",
            ]
        tail = ["", 'print(f"{sum(p.numel() for p in model.parameters()):,} parameters")']
        return "\n".join(head + body + tail) + "\n"

    def save(self, path) -> None:
        """Write the pruned model safely: the JSON pruning history plus the weights (``pe.save_pruned``)."""
        try:
            from ..history import save_pruned
        except ImportError:
            save_pruned = None
        if save_pruned is not None:
            save_pruned(self.model, path)
            return
        # fallback until prune_explorer.history is available: same idea, tensors and JSON only
        torch.save({"format": "prune_explorer.pruned/1", "history": json.dumps(self.pruning_history),
                    "state_dict": self.model.state_dict()}, path)

    def __repr__(self) -> str:
        f = self.figures()
        cur = self.current.root_name if self.current is not None else "(finished)"
        return (f"ExplorerController({type(self.model).__name__}: params {f['params_now']:,}/{f['params_original']:,}, "
                f"{f['groups_done']} groups decided, current: {cur})")


def _to_meta(obj):
    """``obj`` (example inputs) with every tensor replaced by an empty one on the ``meta`` device."""
    if isinstance(obj, torch.Tensor):
        return torch.empty(obj.shape, dtype=obj.dtype, device="meta")
    if isinstance(obj, dict):
        return {k: _to_meta(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_to_meta(v) for v in obj)
    if isinstance(obj, (int, float, bool, str, type(None))):
        return obj
    raise TypeError(f"cannot move {type(obj).__name__} to the meta device")


def _tensors_in(obj, depth: int = 0):
    """The tensors in a model output (a tensor, or nested tuples / lists / dicts / dataclass-like objects)."""
    if depth > 4 or obj is None:
        return []
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        vals = obj.values()
    elif isinstance(obj, (list, tuple)):
        vals = obj
    elif hasattr(obj, "__dict__"):
        vals = vars(obj).values()
    else:
        return []
    return [t for v in vals for t in _tensors_in(v, depth + 1)]


def _tensor_expr(t: torch.Tensor) -> str:
    shape = tuple(t.shape)
    if t.is_floating_point():
        return f"torch.randn{shape}" if len(shape) != 1 else f"torch.randn({shape[0]})"
    return f"torch.zeros({shape}, dtype=torch.{str(t.dtype).split('.')[-1]})"


def _pretty_history(history) -> str:
    if not history:
        return "[]"
    rows = []
    for h in history:
        members = ",\n".join(f"        {json.dumps(m)}" for m in h["members"])
        rows.append(f'    {{"root": {h["root"]!r}, "members": [\n{members},\n    ]}}')
    return "[\n" + ",\n".join(rows) + ",\n]"


def _pretty_steps(steps) -> str:
    if not steps:
        return "[]"
    body = ",\n".join(f"    ({n!r}, {fn!r}, {idxs!r})" for n, fn, idxs in steps)
    return "[\n" + body + ",\n]"
