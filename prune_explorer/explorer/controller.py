"""The explorer's state machine: walk the pruner's groups one by one and accept, adjust, skip or undo each.

Plain Python, no widgets: :class:`ExplorerController` is what the views call, what the headless demo
(``python -m prune_explorer.demo``) drives and what the tests drive. It is composed of parts, each one object with
its own state and a public interface, held by the controller (which delegates its public methods to them and
announces every change):

``controller.session`` (:class:`~.session.Session`)
    the model, the pruner built with the user's options (``pe.pruner.BasePruner`` by default), layer names, the
    parameter and MAC counts now and as built; :meth:`~ExplorerController.ignore`,
    :meth:`~ExplorerController.set_ratio` and :meth:`~ExplorerController.set_options` rebuild the pruner on the
    unpruned model and the walk replays the decisions taken so far (by original channel ids, so they stay valid),
    except those on layers that are now ignored;
``controller.walk`` (:class:`~.walk.Walk`)
    the walk: for every group the user can :meth:`~ExplorerController.accept` it (the proposed channels, or those
    set by :meth:`~ExplorerController.adjust`), :meth:`~ExplorerController.skip` it,
    :meth:`~ExplorerController.undo` the last accepted group (the model is restored exactly),
    :meth:`~ExplorerController.accept_all_remaining`, :meth:`~ExplorerController.apply_counts` (a plan: every
    remaining group with a given count, all or nothing) or :meth:`~ExplorerController.restart_walk`;
``controller.measures`` (:class:`~.figures.Figures`)
    :meth:`~ExplorerController.figures` (header), :meth:`~ExplorerController.card` (the current group),
    :meth:`~ExplorerController.curves` and :meth:`~ExplorerController.sweep` (uniform pruning at p = 0 .. 0.9,
    computed from the group structure without tracing again), as plain dicts and lists;
``controller.exporter`` (:class:`~.export.Export`)
    the decision log (``history``), the graph's ``pruning_history``, :meth:`~ExplorerController.code` (a script
    that replays the pruning), :meth:`~ExplorerController.save`, :meth:`~ExplorerController.export_onnx` and
    :meth:`~ExplorerController.report` (layer by layer, before and after; :mod:`.finish`);
``controller.speed`` (:class:`~.speed.Speed`)
    :meth:`~ExplorerController.measure_speed`: latency of the original and the current model, on demand;
``controller.output`` (:class:`~.output_change.OutputTrack`)
    :meth:`~ExplorerController.output_change`: how far the output moved from the original's after each decision
    (``eval_fn`` when given; else relative error, top-1 agreement or next-token KL on the example inputs);
``controller.events`` (:class:`~.status.StatusLine`)
    the status line, the notices of the running action, the listeners and the progress callback.

Status
    ``status`` (:mod:`.status`) is the one status line: every change replaces it with a sentence describing the
    new state and the action's notices (also in ``message``); :meth:`~ExplorerController.fail` shows a refusal.

Errors
    Bad input raises :class:`ExplorerError` (a :class:`~prune_explorer.PruneExplorerError`) with a message that
    says what to do, and changes nothing.

    >>> import torch, torchvision
    >>> from prune_explorer.explorer import ExplorerController
    >>> c = ExplorerController(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64), pruning_ratio=0.5)
    >>> c.ignored_names, c.current.root_name, len(c.card()["proposed"])
    (['fc'], 'conv1', 32)
    >>> d = c.accept()
    >>> c.figures()["params_now"] < c.figures()["params_original"]
    True
"""

from __future__ import annotations

import itertools

from typing import Callable, List, Optional, Sequence

import torch.nn as nn

from ..importance import MagnitudeImportance
from ..importance.gradient import ImportanceError
from ..plan.meta import meta_aware
from ..plan.record import walk_plan
from ..pruner import BasePruner
from .export import Export
from .figures import DEFAULT_SWEEP_RATIOS, Figures
from .session import ExplorerError, ProgressFn, Session, check_explorer_ratio, fmt_names
from .status import StatusLine, clean_text, describe
from .speed import Speed
from .output_change import OutputTrack
from .recovery import Recovery
from .walk import AUTO_SKIP_KINDS, Decision, Walk

__all__ = ["ExplorerController", "ExplorerError", "Decision", "DEFAULT_SWEEP_RATIOS", "AUTO_SKIP_KINDS"]


#: events after which the model may differ (the output change is measured again, once)
_MODEL_EVENTS = ("build", "accept", "undo", "accept_all", "rollback", "restart", "rewalk", "ignore", "ratio", "options",
                 "recover", "undo_recover")


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
        eval_fn: ``eval_fn(model) -> float`` (e.g. accuracy); the output change after each decision is its value
            (default: the outputs on the example inputs compared with the original's, :mod:`.output_change`).
        track_output: False skips the output change (no forward pass per decision); see :meth:`set_output_tracking`.
        model_fn: a function building the unpruned model (``lambda: torchvision.models.resnet18()``, a builder
            function): the downloaded script (:meth:`code`) then builds the model by itself and runs as downloaded
            (timm and transformers models are recognised without it; :mod:`.model_source`).
        pruner_class: the pruner to build (default ``pe.pruner.BasePruner``).
        **pruner_kwargs: any other ``BasePruner`` option (``round_to``, ``max_pruning_ratio``, ``global_pruning``...).
            ``calibration=`` (calibration data): the data-driven importance (and a ``compensation=``) is fed by one
            pass when the walk starts, and the output change is measured on its first two batches.
    """

    @meta_aware(ExplorerError)  # a meta-device model: RandomImportance by default, a clear error for weight-based ones
    def __init__(self, model: nn.Module, example_inputs, importance=None, pruning_ratio: float = 0.5,
                 ignored_layers=None, progress: Optional[ProgressFn] = None, pruner_class=None, eval_fn=None,
                 track_output: bool = True, model_fn=None, **pruner_kwargs):
        if not isinstance(model, nn.Module):
            raise ExplorerError(f"Explorer needs a torch.nn.Module, got {type(model).__name__}")
        ratio = check_explorer_ratio(pruning_ratio)
        self.events = StatusLine(lambda event: describe(self, event), progress)
        self.session = Session(model, example_inputs, MagnitudeImportance(p=2) if importance is None else importance,
                               ratio, ignored_layers, BasePruner if pruner_class is None else pruner_class,
                               pruner_kwargs, self.events.report)
        self.walk = Walk(self.session, self.events)
        self.measures = Figures(self.session, self.walk, self.events)
        self.exporter = Export(self.session, self.walk, model_fn, rebuild=self._replay_after_unprune)
        self.speed = Speed(self.session, self.events, self._replay_after_unprune)
        self.output = OutputTrack(self.session, self.walk, eval_fn=eval_fn, enabled=track_output)
        self.recovery = Recovery(self.session, self.events, pruner_kwargs.get("calibration"), eval_fn)
        cal = pruner_kwargs.get("calibration")
        if cal is not None and eval_fn is None and track_output:  # the output change is measured on calibration data
            from ..calibration import as_calibration

            cal = as_calibration(cal)
            self.output.set_data([cal.inputs_of(b) for b in itertools.islice(cal.batches(), 2)])
        # the pruner scores the first group
        self.events.report("scoring", 3, 4)
        self.blocked = ""  # why the walk cannot start (an importance that needs gradients without them)
        self._start_walk()
        self._changed("build")
        self.events.report("scoring", 4, 4)

    def __repr__(self) -> str:
        f = self.figures()
        cur = self.current.root_name if self.current is not None else "(finished)"
        return (f"ExplorerController({type(self.model).__name__}: params {f['params_now']:,}/{f['params_original']:,}, "
                f"{f['groups_done']} groups decided, current: {cur})")

    # ---- what the parts hold (read-only views) ----------------------------------------------------------------------
    model = property(lambda self: self.session.model)
    example_inputs = property(lambda self: self.session.example_inputs)
    importance = property(lambda self: self.session.importance)
    pruner_class = property(lambda self: self.session.pruner_class)
    pruner_kwargs = property(lambda self: self.session.pruner_kwargs)
    pruning_ratio = property(lambda self: self.session.pruning_ratio)
    ignored_names = property(lambda self: self.session.ignored_names)
    ignored_modules = property(lambda self: self.session.ignored_modules)
    pruner = property(lambda self: self.session.pruner)
    DG = property(lambda self: self.session.DG)
    structure = property(lambda self: self.session.structure)
    params0 = property(lambda self: self.session.params0, doc="parameters of the model as built")
    macs0 = property(lambda self: self.session.macs0, doc="MACs of the model as built (None: not countable)")
    round_to = property(lambda self: self.session.round_to)
    root_module_types = property(lambda self: self.session.root_module_types)
    head_options = property(lambda self: self.session.head_options)
    decisions = property(lambda self: self.walk.decisions, doc="the decision log (:class:`~.walk.Decision`)")
    current = property(lambda self: self.walk.current, doc="the group on show (None when the walk is over)")
    proposal = property(lambda self: self.walk.proposal, doc="the pruner's proposal for the group on show")
    current_idxs = property(lambda self: self.walk.current_idxs, doc="root channels accepting removes now")
    last_undone = property(lambda self: self.walk.last_undone)
    n_groups_left = property(lambda self: self.walk.n_groups_left)
    sweep_result = property(lambda self: self.measures.sweep_result)
    latency = property(lambda self: self.speed.latency, doc="the last :meth:`measure_speed` result (or None)")
    status = property(lambda self: self.events.status, doc="the status line (:class:`~.status.Status`)")
    message = property(lambda self: self.events.message, doc="the notices of the last action ('' when none)")

    @property
    def progress(self) -> Optional[ProgressFn]:
        """``progress(stage, done, total)`` called during long work (settable)."""
        return self.events.progress

    @progress.setter
    def progress(self, fn: Optional[ProgressFn]) -> None:
        self.events.progress = fn

    def params_now(self) -> int:
        """Parameters of the model as it is now (exact)."""
        return self.session.params_now()

    def macs_now(self) -> Optional[float]:
        """MACs of the model as it is now (None when the model's MACs could not be counted)."""
        return self.session.macs_now()

    # ---- status line and listeners ----------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(event)`` after every change (event: accept, skip, adjust, undo, accept_all, rollback, restart,
        ignore, ratio, options, sweep, speed, or ``"status"`` when only the status line changed)."""
        self.events.subscribe(fn)

    def fail(self, exc, details: str = "") -> None:
        """Show why an action was refused (``exc``: an exception or a sentence); nothing else changes."""
        self.events.fail(exc, details)

    def notify(self, text: str, error: bool = False) -> None:
        """Put ``text`` in the status line and in :attr:`message` (a notice outside any action)."""
        self.events.notify(text, error)

    def report_progress(self, stage: str, done: int, total: int) -> None:
        """Report progress of long work to the ``progress`` callback (never raises)."""
        self.events.report(stage, done, total)

    #: How the output change is measured after a decision: ``None``, before the listeners hear of it; or
    #: ``defer_output(fn)``, a function that runs ``fn`` later (the app: once the page has been sent the decision,
    #: so what it shows does not wait for that forward pass). Meanwhile ``output_pending`` is True; then the
    #: listeners hear ``"output"``. Reading :meth:`output_change` or :meth:`output_curve` measures it at once.
    defer_output: Optional[Callable[[Callable[[], None]], None]] = None
    output_pending = False

    def _changed(self, event: str) -> None:
        """After every change: figures recomputed, the output change measured (when the model changed; later with
        ``defer_output``), the status line rewritten, listeners called."""
        self.measures.clear()
        defer = self.defer_output if event in _MODEL_EVENTS and self.output.needs_measure() else None
        if event in _MODEL_EVENTS and defer is None:
            self.output.update()
            self.output_pending = False
        elif defer is not None:
            self.output_pending = True
        # else: an event that did not change the model (a skip, a pick) keeps a measurement still pending
        self.events.changed(event)
        if defer is not None:
            defer(self.flush_output)

    def flush_output(self) -> None:
        """Measure the output change now if a decision left it pending (see ``defer_output``); listeners hear
        ``"output"``. Does nothing otherwise."""
        if not self.output_pending:
            return
        try:
            self.output.update()
        finally:
            self.output_pending = False
        self.events.emit("output")

    # ---- the output change ------------------------------------------------------------------------------------------
    def output_change(self) -> Optional[dict]:
        """How far the model's output has moved from the original's now (:mod:`.output_change`), or None when it
        is not tracked (``output_change_reason`` says why)."""
        self.flush_output()
        return self.output.latest

    @property
    def output_change_reason(self) -> str:
        return "" if self.output.latest is not None else self.output.reason

    def output_curve(self) -> dict:
        """The output change over the decisions (``{"step", "value", "label"}``)."""
        self.flush_output()
        return self.output.curve()

    def set_output_tracking(self, on: bool = True, data=None, eval_fn=None) -> None:
        """Turn the output change on or off (off: no forward pass per decision); ``data`` (an iterable of input
        batches, e.g. calibration data) or ``eval_fn`` change what it measures."""
        if data is not None or eval_fn is not None:
            self.output.set_data(data, eval_fn)
        self.output.set_enabled(on)
        self._changed("output")

    # ---- the walk ---------------------------------------------------------------------------------------------------
    def accept(self, idxs: Optional[Sequence[int]] = None) -> Decision:
        """Prune the current group (its proposed channels, those set by :meth:`adjust`, or ``idxs``) and move on."""
        try:
            d = self.walk.accept(idxs)
        except BaseException:
            self.measures.clear()
            raise
        self._changed("accept")
        return d

    def skip(self) -> Decision:
        """Leave the current group as it is and move on."""
        d = self.walk.skip()
        self._changed("skip")
        return d

    def adjust(self, n: Optional[int] = None, idxs=None) -> List[int]:
        """Choose what accepting the current group removes: the ``n`` least important channels, or ``idxs``.

        ``n`` must be reachable (see :meth:`allowed_counts`: units, ``round_to``, guards); ``idxs`` are root channel
        indices (a list or a string such as ``"0, 5, 7"``), completed to whole units. Returns the new selection.
        """
        sel = self.walk.adjust(n, idxs)
        self._changed("adjust")
        return sel

    def use_proposal(self) -> List[int]:
        """Go back to the pruner's proposal for the current group (undoing :meth:`adjust`)."""
        sel = self.walk.use_proposal()
        self._changed("adjust")
        return sel

    def max_removable(self) -> int:
        """The most root channels of the current group that the guards allow to remove."""
        return self.walk.max_removable()

    def allowed_counts(self) -> List[int]:
        """Every number of channels the current group can lose (whole units, ``round_to``, guards)."""
        return self.walk.allowed_counts()

    def undo(self) -> Optional[Decision]:
        """Restore the model exactly as it was before the last accepted group, and show that group again. After a
        :meth:`recover`, the first undo puts the weights back as they were before it (returns None)."""
        if self.recovery.on_top():
            self.recovery.undo()
            self._changed("undo_recover")
            return None
        d = self.walk.undo()
        self._changed("undo")
        return d

    # ---- recovery ---------------------------------------------------------------------------------------------------
    def recover(self, steps: int = 100, lr: float = 1e-3):
        """Recover: distil the unpruned model into the pruned one for ``steps`` steps on the calibration data
        (:mod:`.recovery`; refused with a clear message without ``calibration=``). Progress goes to the progress
        bar; Interrupt stops after the step in progress (the steps done are kept). Undo puts the weights back.
        Returns the :class:`~.recovery.RecoveryRun` (metric before / after)."""
        try:
            run = self.recovery.run(steps, lr)
        except BaseException:
            self.measures.clear()
            raise
        self._changed("recover")
        return run

    def accept_all_remaining(self) -> List[Decision]:
        """Accept every remaining group as the pruner proposes it (the current one with its adjusted selection).
        Interrupted part-way, the groups accepted so far stay accepted and the walk goes on from the next one."""
        try:
            return self.walk.accept_all_remaining()
        finally:
            self._changed("accept_all")

    def apply_counts(self, count_of: Callable[[], int], stage: str = "applying the plan") -> List[Decision]:
        """Decide every remaining group at once: ``count_of()`` is how many root channels the group on show loses
        (the least important ones; 0 skips it). All or nothing (an error or an interrupt undoes what it did).
        Returns the decisions made."""
        try:
            done = self.walk.apply_counts(count_of, stage)
        finally:
            self.measures.clear()
        self._changed("accept_all")
        return done

    def undo_since(self, start: int) -> None:
        """Undo every decision after the first ``start`` ones (the model is restored exactly) and walk back there."""
        self.walk.undo_since(start)
        self._changed("rollback")

    def _start_walk(self) -> None:
        try:
            self.session.pruner.calibrate()  # calibration=: one pass for a data-driven importance / compensation
            self.walk.restart()
            self.blocked = ""
        except ImportanceError as exc:
            self.walk.forget()
            self.blocked = (f"the importance cannot score the groups: {exc} In the explorer: run a batch of "
                            "calibration data through the model and call loss.backward() (e.g. "
                            "loss = model(x).sum(); loss.backward()), then click Restart walk; or create the "
                            "explorer with another importance (e.g. pe.importance.MagnitudeImportance()).")

    def restart_walk(self) -> List[Decision]:
        """Start over: undo every decision (the model is as built again) and propose from the first group (after
        gradients were given to an importance that needs them, this starts the walk). Returns the decisions undone
        (:meth:`rewalk` takes them again one by one, asking each time)."""
        old = self.walk.restart_walk() if not self.blocked else []
        if self.blocked:
            self._start_walk()
        self._changed("restart")
        return old

    def rewalk(self) -> List[Decision]:
        """Walk the decided groups again: every decision is undone, and each group shows its earlier choice
        pre-selected (accept it again, adjust or skip). Returns the earlier decisions."""
        old = self.walk.restart_walk() if not self.blocked else []
        self.walk.suggested = {d.root: d for d in old if d.action in ("accept", "skip")}
        self.walk.restart()  # the group on show gets its earlier choice
        self._changed("rewalk")
        return old

    # ---- figures ----------------------------------------------------------------------------------------------------
    def figures(self) -> dict:
        """Header figures: parameters and MACs (original, now, % removed), groups done / skipped / left, ratio."""
        return self.measures.figures()

    def current_ratio(self) -> Optional[float]:
        """Channel ratio of the current selection: channels to remove / root channels of the current group."""
        return self.measures.current_ratio()

    def predict(self, idxs: Optional[Sequence[int]] = None) -> dict:
        """Predicted change if the current group is accepted with ``idxs`` (see :meth:`.figures.Figures.predict`)."""
        return self.measures.predict(idxs)

    def card(self) -> Optional[dict]:
        """Everything the group card shows about the current group (None when the walk is over)."""
        return self.measures.card()

    def guard_skipped(self) -> List[dict]:
        """Every group a guard of the pruner passed over, with its reason."""
        return self.measures.guard_skipped()

    def curves(self) -> dict:
        """Ratio-curve data: one point per accepted group plus the references and the sweep (when computed)."""
        return self.measures.curves()

    def sweep(self, ratios: Sequence[float] = DEFAULT_SWEEP_RATIOS):
        """Uniform pruning at each ratio (see :meth:`.figures.Figures.sweep`)."""
        res = self.measures.sweep(ratios)
        self._changed("sweep")
        return res

    def reachable_reduction(self, ignored_layers=None, ratio: Optional[float] = None) -> dict:
        """Fraction of parameters (and MACs) uniform pruning at ``ratio`` would remove with these ignored layers."""
        return self.measures.reachable_reduction(ignored_layers, ratio)

    def prunable_layers(self) -> List[dict]:
        """Every layer that can root a group (conv, linear, ...), with its channels and whether it is ignored."""
        return self.measures.prunable_layers()

    def groups_of(self, layer) -> List[dict]:
        """The groups (of the walk) that touch ``layer``: their root, the members' side and channel count."""
        return self.measures.groups_of(layer)

    # ---- results ----------------------------------------------------------------------------------------------------
    @property
    def history(self) -> List[dict]:
        """The decision log so far, JSON-able: ``[{"action", "root", "idxs", ...}, ...]`` in walk order."""
        return self.exporter.history

    @property
    def pruning_history(self) -> List[dict]:
        """The graph's record of what was pruned (what ``pe.save_pruned`` stores)."""
        return self.exporter.pruning_history

    def code(self, model_expr: Optional[str] = None) -> str:
        """A short standalone script that applies the same pruning to a fresh copy of the model (no widgets)."""
        return self.exporter.code(model_expr)

    def verify_script(self, timeout_s: float = 600.0) -> dict:
        """Run the downloaded script (:meth:`code`) in a subprocess and compare its pruned model with this one
        (parameters, outputs on the example inputs); the result is also in the status line."""
        r = self.exporter.verify_script(timeout_s)
        if r["ok"]:
            self.notify(f"the downloaded script reproduces this model: {r['params_script']:,} parameters, outputs "
                        f"equal (largest difference {r['max_abs_diff']:.2g}; ran in {r['seconds']:.1f} s)")
        else:
            why = ("The script replays the pruning, not the recovery: Recover changed the weights (save them with "
                   "Save, or Undo the recovery to compare)" if self.recovery.applied()
                   else "Check that model_fn builds the same model, with the same weights")
            self.notify(f"the downloaded script does not reproduce this model: {r['params_script']:,} parameters "
                        f"against {r['params_explorer']:,}, largest output difference {r['max_abs_diff']:.3g}. "
                        + why, error=True)
        return r

    def save(self, path):
        """Write the pruned model safely (``pe.save_pruned``); returns the path written."""
        return self.exporter.save(path)

    def export_onnx(self, path, opset: Optional[int] = None):
        """Export the pruned model to ONNX at ``path`` and check the file (:func:`.finish.export_onnx`). When the
        exporter fails, the error says whether the unpruned model fails too (then it is the exporter's limit, not
        the pruning's) and what to try."""
        try:
            return self.exporter.export_onnx(path, opset)
        except ExplorerError as exc:
            if "ONNX export failed" not in str(exc):
                raise  # a bad path or a missing package: the message says what to do
            failure = clean_text(exc).rstrip(".")
        original_ok = self._original_exports(opset)
        if original_ok:
            raise ExplorerError(f"{failure}. The unpruned model exports fine, so a pruning decision made the "
                                "model unexportable: undo the last decisions one by one (or Restart walk) to find it, "
                                "and skip that group.") from None
        raise ExplorerError(f"{failure}. The unpruned model fails the same way, so this is a limit of the "
                            "ONNX exporter for this model, not of the pruning: try another opset (e.g. 17 or 18), "
                            "save with Save (pe.save_pruned) instead, or export with another tool.") from None

    def _original_exports(self, opset: Optional[int]) -> bool:
        """Whether the unpruned model exports to ONNX (undone, exported to a temporary file, pruning replayed)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            target = f"{tmp}/original.onnx"
            if not self.DG.history:
                try:
                    self.exporter.export_onnx(target, opset)
                    return True
                except ExplorerError:
                    return False
            self.session.unprune()
            try:
                self.exporter.export_onnx(target, opset)
                return True
            except ExplorerError:
                return False
            finally:
                self._replay_after_unprune()

    def report(self):
        """Layer by layer, the model as built and now, the totals, and the groups left alone (:mod:`.finish`)."""
        return self.exporter.report()

    def plan(self, name: Optional[str] = None):
        """The accepted decisions as a :class:`~prune_explorer.plan.PruningPlan`: counts per group (not indices), the
        pruner options, parameters and attention heads before and after. Apply it to another copy of the model (the
        real one behind a meta-device walk) with ``pe.apply_plan`` (see :func:`~prune_explorer.plan.record.walk_plan`)."""
        options = dict(self.pruner_kwargs, ignored_layers=list(self.ignored_names))
        macs = None if self.macs0 is None else (self.macs0, self.macs_now())
        return walk_plan(self.decisions, self.model, options, self.DG, (self.params0, self.params_now()), macs,
                         importance=self.importance, pruning_ratio=self.pruning_ratio, name=name)

    def export_plan(self, path, name: Optional[str] = None):
        """Write :meth:`plan` as JSON to ``path`` (read it back with ``pe.PruningPlan.load``) and return it."""
        plan = self.plan(name)
        plan.save(path)
        return plan

    # ---- speed ------------------------------------------------------------------------------------------------------
    def measure_speed(self, repeat: int = 30, warmup: int = 5, max_time_s: Optional[float] = 5.0):
        """Time the current model (and the original one, the first time) on the model's device (:mod:`.speed`)."""
        pair = self.speed.measure_speed(repeat, warmup, max_time_s)
        self._changed("speed")
        return pair

    def _replay_after_unprune(self) -> None:
        self._rebuild()
        self.events.drop_notices()  # the rebuild is an implementation detail here, not news

    # ---- options that rebuild the pruner ----------------------------------------------------------------------------
    def ignore(self, layer, ignored: bool = True) -> None:
        """Add ``layer`` (a qualified name or module) to the ignored layers, or remove it (``ignored=False``)."""
        name = self.session.resolve_layer(layer)
        names = [n for n in self.ignored_names if n != name]
        if ignored:
            names.append(name)
        if names == self.ignored_names:
            return
        self._rebuild(ignored_names=names)
        self._changed("ignore")

    def set_ignored(self, layers) -> None:
        """Replace the ignored layers with ``layers`` (names or modules)."""
        names = self.session.resolve_layers(layers)
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
        s = self.session
        new = {**s.pruner_kwargs, **options}
        if new == s.pruner_kwargs:
            return
        old = s.set_pruner_options(new)
        try:
            self._rebuild()
        except ExplorerError:
            s.set_pruner_options(old)
            self._rebuild()  # the pruner with the old options, the decisions replayed
            self.events.drop_notices()
            raise
        self._changed("options")

    def _rebuild(self, ignored_names: Optional[List[str]] = None, ratio: Optional[float] = None) -> None:
        """A new pruner on the unpruned model with these options; the walk replays the decisions taken so far."""
        s, w = self.session, self.walk
        ignored_names = list(s.ignored_names if ignored_names is None else ignored_names)
        ratio = s.pruning_ratio if ratio is None else ratio
        old = [d for d in w.decisions if d.action in ("accept", "skip")]
        self.events.report("tracing", 0, 3)
        s.unprune()  # 1. back to the unpruned model
        w.forget()
        try:  # 2. a new pruner with the new options (it traces the unpruned model again)
            pruner = s.make_pruner(ignored_names, ratio)
        except ExplorerError:
            w.replay(old)  # put the model back as it was
            self.recovery.put_back()
            raise
        s.install(pruner, ignored_names, ratio)
        self.measures.clear(sweep=True)
        self.events.report("replaying the decisions", 2, 3)
        dropped = w.replay(old)
        self.recovery.put_back()  # a recovery's weights, kept while the model was unpruned
        ignored_now = set(s.ignored_names)
        on_ignored = [d for d in dropped if d in ignored_now]
        others = [d for d in dropped if d not in ignored_now]
        msg = f"pruner rebuilt; {len(old) - len(dropped)} earlier decisions kept"
        if on_ignored:
            msg += f", dropped {len(on_ignored)} on now-ignored layers ({fmt_names(on_ignored)})"
        if others:
            where = f" after {w.replay_stopped_at}, which the walk now visits first" if w.replay_stopped_at else ""
            msg += f", dropped {len(others)} that came{where} ({fmt_names(others)})"
        self.events.notice(msg)
        self.events.report("replaying the decisions", 3, 3)
