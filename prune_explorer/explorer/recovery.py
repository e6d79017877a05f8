"""Recover: a short distillation of the pruned model from the unpruned one (:func:`prune_explorer.recover`), as an
action of the explorer (a part of :class:`~.controller.ExplorerController`, ``controller.recovery``).

The unpruned teacher is a copy of the model taken when the explorer is built with calibration data (the data it
trains on); without calibration data the action is refused with a message saying how to give it. A run is an edit
of the pruner's graph (``DG.apply_edit``): **Undo** first puts the weights back as they were before it (then undoes
decisions as usual), so the model is always exactly what the decisions and recoveries on the stack say. Its
progress goes to the status line's progress bar; the notebook's Interrupt stops it after the step in progress and
keeps the steps done (still undoable). The metric before and after: the explorer's ``eval_fn`` when given (higher
is better), else the distillation loss on the first calibration batches (KL to the teacher, lower is better).
The downloaded script replays the pruning only: recovered weights are saved with **Save** (``pe.save_pruned``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
import torch.nn as nn

from .session import ExplorerError

__all__ = ["Recovery", "RecoveryRun", "RecoveryEdit"]

#: calibration batches the distillation metric is averaged over (before and after a run)
METRIC_BATCHES = 4


@dataclass
class RecoveryRun:
    """One Recover: ``steps`` run (of ``steps_asked``), ``interrupted``, the loss of the first and last steps, and
    the ``metric`` (``metric_name``; ``higher_is_better``) ``before`` and ``after``."""

    steps: int
    steps_asked: int
    interrupted: bool
    first_loss: float
    last_loss: float
    metric_name: str
    higher_is_better: bool
    before: float
    after: float

    def as_dict(self) -> dict:
        return dict(vars(self))


class RecoveryEdit:
    """A recovery as an edit of the graph's history: ``apply`` trains (the parameters and buffers before are kept),
    ``revert`` puts them back exactly. It adds nothing to the model's stored pruning history (``entries()`` is empty)."""

    kind = "recovery"

    def __init__(self, model: nn.Module, train: Callable[[], None]):
        self.model = model
        self.train = train
        self._saved: Optional[List[tuple]] = None

    def apply(self) -> None:
        # parameters, and buffers (a BatchNorm's running statistics move in train mode)
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        self._saved = [(t, t.detach().clone()) for t in tensors]
        try:
            self.train()
        except BaseException:
            self.revert()
            raise

    def revert(self) -> None:
        if self._saved is None:
            return
        with torch.no_grad():
            for p, old in self._saved:
                p.copy_(old)

    def entries(self) -> List[dict]:
        return []


class Recovery:
    """The Recover action (module docstring).

    Args:
        session: the :class:`~.session.Session`; events: the :class:`~.status.StatusLine` (progress).
        calibration: the explorer's calibration data (None: the action is refused).
        eval_fn: the explorer's ``eval_fn`` (higher is better), or None.
    """

    def __init__(self, session, events, calibration=None, eval_fn: Optional[Callable] = None):
        self.s = session
        self.events = events
        self.calibration = None
        self.teacher: Optional[nn.Module] = None
        self.eval_fn = eval_fn
        self.last: Optional[RecoveryRun] = None
        if calibration is not None:
            from ..calibration import as_calibration

            self.calibration = as_calibration(calibration)
            self.teacher = copy.deepcopy(session.model).eval()  # unpruned: taken before any decision
            for p in self.teacher.parameters():
                p.requires_grad_(False)

    @property
    def available(self) -> bool:
        return self.calibration is not None

    @property
    def reason(self) -> str:
        """Why Recover cannot run ('' when it can)."""
        if self.available:
            return ""
        return ("Recover needs calibration data to distil the unpruned model on: create the explorer with "
                "pe.Explorer(model, x, calibration=batches) (an iterable of example inputs or a DataLoader)")

    def metric(self) -> float:
        if self.eval_fn is not None:
            return float(self.eval_fn(self.s.model))
        from ..recovery import mean_distillation_loss

        return mean_distillation_loss(self.s.model, self.teacher, self.calibration, METRIC_BATCHES,
                                      forward_fn=self.s.pruner_kwargs.get("forward_fn"))

    def run(self, steps: int = 100, lr: float = 1e-3) -> RecoveryRun:
        """Distil for ``steps`` AdamW steps at ``lr`` (see the module docstring); returns the :class:`RecoveryRun`."""
        if not self.available:
            raise ExplorerError(self.reason)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ExplorerError(f"Recover: steps={steps!r} must be a positive whole number")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1:
            raise ExplorerError(f"Recover: lr={lr!r} must be a number in (0, 1), e.g. 1e-3")
        from ..recovery import recover

        stage = "recovering"
        before = self.metric()
        self.events.report(stage, 0, steps)
        box = {}

        def train() -> None:
            box["result"] = recover(self.s.model, self.teacher, self.calibration, steps=steps, lr=lr, progress=False,
                                    forward_fn=self.s.pruner_kwargs.get("forward_fn"),
                                    callback=lambda done, total, loss: self.events.report(stage, done, total))

        try:
            self.s.DG.apply_edit(RecoveryEdit(self.s.model, train))
        finally:
            self.events.report(stage, steps, steps)
        res = box["result"]
        after = self.metric()
        self.last = RecoveryRun(
            steps=res.steps, steps_asked=steps, interrupted=res.interrupted, first_loss=res.first_loss,
            last_loss=res.last_loss, before=before, after=after, higher_is_better=self.eval_fn is not None,
            metric_name="eval_fn" if self.eval_fn is not None else "distillation loss (KL to the unpruned model)")
        return self.last

    def put_back(self) -> None:
        """After the model was unpruned and its decisions replayed (a rebuild, Verify script, Measure speed): the
        recovered weights the session kept are put back, as one recovery (Undo removes it). If the replayed model
        no longer has their shapes (decisions were dropped), they are dropped with a notice."""
        saved, self.s.stashed_weights = self.s.stashed_weights, None
        if saved is None:
            return
        model = self.s.model
        own = model.state_dict()
        if set(own) != set(saved) or any(own[k].shape != saved[k].shape for k in own):
            self.last = None
            self.events.notice("the recovered weights no longer fit the rebuilt model (decisions were dropped): "
                               "Recover again")
            return
        self.s.DG.apply_edit(RecoveryEdit(model, lambda: model.load_state_dict(saved)))

    def applied(self) -> bool:
        """Whether a recovery is among the edits standing now (the weights differ from the pruning alone)."""
        return any(isinstance(getattr(r, "edit", None), RecoveryEdit) for r in self.s.DG.history)

    def on_top(self) -> bool:
        """Whether the graph's last edit is a recovery (Undo then undoes it first)."""
        hist = self.s.DG.history
        return bool(hist) and isinstance(getattr(hist[-1], "edit", None), RecoveryEdit)

    def undo(self) -> None:
        """Put the weights back as they were before the last recovery (it must be the graph's last edit)."""
        if not self.on_top():
            raise ExplorerError("nothing to undo: the last change is not a recovery")
        self.s.DG.undo()
        self.last = None
