"""The explorer's one status line: what the last action did, or why it was refused (plain Python, no widgets).

The controller owns it (``controller.status``). Every change of the walk replaces it with a sentence that
describes the new state (:func:`describe`), followed by the notices the action produced (``"added 2 channels to
complete whole units"``...); a refused action replaces it with the error (:meth:`Status.error`). So an old error
never stays beside a later success, and a summary never contradicts the walk.

>>> Status("accepted conv1").level, Status.error(ValueError("bad")).text
('info', 'bad')
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, List, Optional

__all__ = ["Status", "StatusLine", "describe", "clean_text"]


#: terminal colour / cursor codes, with their escape character or as they look once it was lost ("[96m...[0m")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\[[0-9;]{1,12}m")


def clean_text(text: str) -> str:
    """``text`` as the app shows it: terminal escape codes removed, and characters that fonts draw as boxes
    (control characters, emoji and other pictographs) dropped; whitespace runs become one space.

    >>> clean_text("\x1b[96mtorch.onnx\x1b[0m failed \u274c [1mhere[0m")
    'torch.onnx failed here'
    """
    text = _ANSI.sub("", str(text))
    keep = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\t":
            keep.append(" ")
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn", "So", "Sk") and ch not in "^`":
            continue
        else:
            keep.append(ch)
    return re.sub(r"\s+", " ", "".join(keep)).strip()


@dataclass(frozen=True)
class Status:
    """One status line: ``text``; ``level`` is ``"info"`` or ``"error"``; ``details`` (a traceback) is optional."""

    text: str
    level: str = "info"
    details: str = ""

    def __post_init__(self):
        object.__setattr__(self, "text", clean_text(self.text))
        object.__setattr__(self, "details", _ANSI.sub("", self.details))

    @classmethod
    def error(cls, exc, details: str = "") -> "Status":
        return cls(str(exc), "error", details)

    @property
    def is_error(self) -> bool:
        return self.level == "error"


class StatusLine:
    """The status line, the notices of the running action, the change listeners and the progress callback (a part of
    :class:`~.controller.ExplorerController`; ``controller.events``).

    ``describe(event)`` words the status sentence after a change (:func:`describe` on the controller).
    """

    def __init__(self, describe_fn: Callable[[str], str], progress=None):
        self._describe = describe_fn
        self.progress = progress
        self.status = Status("")
        self.message = ""  # the notices of the last action ("" when it had none), also shown in the status line
        self._notices: List[str] = []
        self._listeners: List[Callable[[str], None]] = []

    def report(self, stage: str, done: int, total: int) -> None:
        """Progress of long work: ``progress(stage, done, total)``; a broken progress display breaks nothing."""
        if self.progress is not None:
            try:
                self.progress(stage, done, total)
            except Exception:  # noqa: BLE001 - a broken progress display must not break the work
                pass

    def subscribe(self, fn: Callable[[str], None]) -> None:
        self._listeners.append(fn)

    def notice(self, text: str) -> None:
        """A notice of the running action (shown after the status sentence, and in :attr:`message`)."""
        self._notices.append(text)

    def drop_notices(self) -> None:
        self._notices = []

    def emit(self, event: str) -> None:
        for fn in list(self._listeners):
            fn(event)

    def changed(self, event: str) -> None:
        """After a change: the status line describes the new state plus the action's notices; listeners run."""
        notices, self._notices = self._notices, []
        self.message = clean_text("; ".join(notices))
        self.status = Status(self._describe(event) + (f" ({self.message})" if self.message else ""))
        self.emit(event)

    def fail(self, exc, details: str = "") -> None:
        self._notices = []
        self.status = Status.error(exc, details)
        self.emit("status")

    def notify(self, text: str, error: bool = False) -> None:
        self.message = clean_text(text)
        self.status = Status(self.message, "error" if error else "info")
        self.emit("status")


def _walk_state(c) -> str:
    if getattr(c, "blocked", ""):
        return "The walk cannot start: " + c.blocked
    f = c.figures()
    if c.current is None:
        return (f"all groups decided: {f['groups_accepted']} accepted, {f['groups_skipped']} skipped, "
                f"{f['groups_guard_skipped']} skipped by guards.")
    return f"now at {c.current.root_name}."


def _pct(x: Optional[float]) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.1f}%"


def describe(c, event: str) -> str:
    """The status sentence after ``event`` (``"build"``, ``"accept"``, ``"skip"``, ``"adjust"``, ``"undo"``,
    ``"accept_all"``, ``"ignore"``, ``"ratio"``, ``"options"``, ``"sweep"``, ``"speed"``) on controller ``c``."""
    last = c.decisions[-1] if c.decisions else None
    if event == "build":
        f = c.figures()
        if getattr(c, "blocked", ""):
            return _walk_state(c)
        if c.current is None:
            return "Ready: no group to decide (every channel is fixed or ignored)."
        return (f"Ready: {f['groups_total']} groups to decide, starting with {c.current.root_name}; ignoring "
                f"{', '.join(c.ignored_names) or 'no layer'}.")
    if event == "accept" and last is not None:
        k = next((i for i in range(len(c.decisions) - 1, -1, -1) if c.decisions[i].action in ("accept", "skip")), 0)
        acc = c.decisions[k]
        guards = len(c.decisions) - 1 - k
        then = f"{guards} group(s) after it skipped by guards; " if guards else ""
        if acc.key.endswith(":depth") and acc.action == "accept":
            return (f"removed the block {acc.root} (−{acc.params_before - acc.params_after:,} parameters); " + then
                    + _walk_state(c))
        return (f"accepted {acc.root} (−{acc.n_removed} of {acc.channels} channels, "
                f"−{acc.params_before - acc.params_after:,} parameters); " + then + _walk_state(c))
    if event == "skip" and last is not None:
        sk = next((d for d in reversed(c.decisions) if d.action == "skip"), last)
        return f"skipped {sk.root}; " + _walk_state(c)
    if event == "adjust" and c.current is not None:
        n = len(c.current_idxs)
        return (f"{c.current.root_name}: {n} of {c.current.root_space.current_size} channels selected for removal "
                f"({'the pruner' + chr(39) + 's proposal' if c.card()['follows_proposal'] else 'adjusted'}).")
    if event == "undo":
        return f"undid {c.last_undone}: the model is as it was before it was accepted; " + _walk_state(c)
    if event == "recover" and getattr(c.recovery, "last", None) is not None:
        r = c.recovery.last
        stopped = f"stopped after {r.steps} of {r.steps_asked} steps" if r.interrupted else f"{r.steps} steps"
        return (f"recovered ({stopped}): {r.metric_name} {r.before:.4g} → {r.after:.4g}. Undo puts the weights "
                "back.")
    if event == "undo_recover":
        return "undid the recovery: the weights are as they were before it; " + _walk_state(c)
    if event == "accept_all":
        return "accepted every remaining group; " + _walk_state(c)
    if event == "rollback":
        return "undid those decisions: the model is as it was before them; " + _walk_state(c)
    if event == "rewalk":
        return ("walking the decided groups again: every decision undone, each group shows its earlier choice "
                "pre-selected; " + _walk_state(c) + " Accept it again, adjust or skip.")
    if event == "restart":
        return ("started over: every decision undone, the model is as built; " + _walk_state(c)
                + " Accept, adjust or skip each group again.")
    if event in ("ignore", "ratio", "options"):
        what = {"ignore": f"ignoring {', '.join(c.ignored_names) or 'no layer'}",
                "ratio": f"channel ratio {c.pruning_ratio:.2f}", "options": "new pruner options"}[event]
        return f"{what}: " + _walk_state(c)
    if event == "sweep" and c.sweep_result is not None:
        sw = c.sweep_result
        k = min(range(len(sw.ratios)), key=lambda i: abs(sw.ratios[i] - c.pruning_ratio))
        return (f"uniform pruning at p = {sw.ratios[k]:.1f} would remove {_pct(sw.params_removed[k])} of the "
                f"parameters and {_pct(sw.macs_removed[k])} of the MACs of the original model.")
    if event == "speed" and c.latency is not None:
        lat = c.latency
        return (f"latency on {lat.device}: {lat.original_ms:.2f} ms originally, {lat.current_ms:.2f} ms now "
                f"({lat.speedup:.2f}x; median of {lat.repeat} runs after a warm-up).")
    return _walk_state(c).capitalize()
