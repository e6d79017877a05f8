"""The walk: the pruner's groups one by one, each accepted, adjusted, skipped or undone by the user.

The groups come from ``pruner.get_all_groups()`` in the dependency graph's deterministic order; each is *planned*
by the pruner right before it is shown (``pruner.proposal(group)``: a :class:`~prune_explorer.pruner.Proposal` with
its importance, the channels it proposes to remove, the scope and ratio behind them), so every proposal sees the
model as the earlier decisions left it. A group the pruner refuses (a guard, an importance without opinion, head
constraints: :data:`AUTO_SKIP_KINDS`) is logged with its reason and passed over. Every step of the walk is a
:class:`Decision`; undo restores the model exactly (the graph's own undo) and walks back to that group (showing the
proposal made for it before, when the criterion reads the weights alone and nothing it was planned on changed since:
no second scoring).

Accepting prunes through the pruner's driver (:mod:`prune_explorer.pruner.driver`), the same path as ``step()``:
after an accept (and after accept-all) the post-prune check runs the model on shape-only stand-ins
(:mod:`prune_explorer.pruner.post_check`); a group that breaks it is rolled back exactly and its decision becomes a
skip whose reason is the error. Accept and accept-all are safe to interrupt: a group is pruned and logged whole or
not at all, and the walk resumes at the first undecided group.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from .._gc import gc_paused
from ..errors import PruneExplorerError, PruningError
from ..graph import fn_name
from ..plan.decisions import group_key
from ..pruner.driver import KEEP, Cut
from ..pruner.proposal import Proposal
from ..pruner.guards import CHECK, GUARD, HEADS, IMPORTANCE
from ..graph.model.explicit import ExplicitGroup
from ..importance.magnitude import FPGMImportance, MagnitudeImportance
from ..validation import check_indices
from .session import ExplorerError

__all__ = ["Decision", "Walk", "AUTO_SKIP_KINDS"]

#: criteria whose scores are a function of the weights alone: a proposal made with one of them is reused after an
#: undo brings back the very weights, graph history and pruner it was made on (see :meth:`Walk.undo`)
PURE_WEIGHT_CRITERIA = (MagnitudeImportance, FPGMImportance)

#: skip kinds of a proposal (``pe.pruner.guards``) that the walk passes over by itself, recording the reason; for
#: the other kinds (target reached, no removal fits the constraints) the group is shown with an empty proposal and
#: the user may still choose channels.
AUTO_SKIP_KINDS = (GUARD, IMPORTANCE, HEADS, CHECK)


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
    reason: str = ""  # why a guard skipped it (or why the post-prune check rolled it back)
    params_before: int = 0
    params_after: int = 0
    macs_before: float = 0.0
    macs_after: float = 0.0
    channels_removed: float = 0.0  # fraction of prunable channels removed after this step
    record: Any = field(default=None, repr=False)  # the graph's PruneRecord (accepts)
    explicit: bool = False  # an attention-head group of the pruner (not one of the graph's channel groups)
    key: str = ""  # the group's key in a pruning plan (pe.plan.group_key: root name, ":in" or ":<attention kind>")
    output_change: Optional[dict] = field(default=None, repr=False)  # measured after it (.output_change)

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
        if self.action == "guard" or self.reason:
            d["reason"] = self.reason
        return d


def _same_state(a: tuple, b: tuple) -> bool:
    """Two :meth:`Walk._state` keys are the same state: the same objects (by identity) and version counters."""
    return (a[0] is b[0] and a[1] == b[1] and a[4] == b[4]
            and all(len(x) == len(y) and all(u is v for u, v in zip(x, y)) for x, y in ((a[2], b[2]), (a[3], b[3]),
                                                                                     (a[5], b[5]))))


def _sorted_ints(values) -> List[int]:
    """``sorted(int(i) for i in values)``, vectorised (a group may have tens of thousands of channels).

    >>> _sorted_ints([5, 2, 9])
    [2, 5, 9]
    """
    return np.sort(np.asarray(values, dtype=np.int64)).tolist()


def _read_idx_text(text: str, what: str) -> List[int]:
    """Channel indices typed as text: integers and inclusive ranges separated by commas or spaces.

    >>> _read_idx_text("0, 5 7, 33-36", "channels")
    [0, 5, 7, 33, 34, 35, 36]
    """
    out: List[int] = []
    for token in text.replace(",", " ").split():
        lo, sep, hi = token.partition("-")
        try:
            a, b = (int(lo), int(hi)) if (sep and lo) else (int(token), int(token))  # "33-40": both ends included
        except ValueError:
            raise ExplorerError(f"{what}: could not read {token!r} as a channel index or range; type integers and "
                                "ranges separated by commas or spaces, e.g. '0, 5, 7, 33-40'") from None
        if b < a:
            raise ExplorerError(f"{what}: the range {token!r} goes backwards; write it low-high, e.g. '{b}-{a}'")
        out.extend(range(a, b + 1))
    return out


class Walk:
    """The walk over the pruner's groups (module docstring; a part of :class:`~.controller.ExplorerController`,
    ``controller.walk``). It changes the model only through the pruner's proposals and the graph's undo; it does
    not announce changes (the controller does, after each action).

    State: ``decisions`` (the log), ``current`` (the group on show, whole; None when the walk is over),
    ``proposal`` (the pruner's proposal for it), ``current_idxs`` (what accepting removes now), ``last_undone``.

    Args:
        session: the :class:`~.session.Session` (pruner, graph, layout, parameter and MAC counts).
        events: the :class:`~.status.StatusLine` (notices and progress).
    """

    def __init__(self, session, events):
        self.s = session
        self.events = events
        self.decisions: List[Decision] = []
        self.current = None  # the group on show, whole (None when the walk is over)
        self.proposal = None  # the pruner's proposal for it (importance, proposed channels, scope, ratio, ...)
        self.current_idxs: List[int] = []
        self.last_undone: Optional[str] = None
        self.replay_stopped_at: Optional[str] = None
        self.suggested: dict = {}  # root name -> an earlier Decision, pre-selected when the group is shown (rewalk)
        self._allowed = None  # (group, graph version, counts)
        self._iter = iter(())
        self._shown_state = None  # (proposal on show, the state it was planned on: :meth:`_state`)
        self._planned = {}  # id(record) -> (record, state, proposal): what each accept's group was planned on
        self._reuse = None  # (state, proposal) that undo hands to the next plan

    # ---- moving along ----------------------------------------------------------------------------------------------
    @property
    def n_groups_left(self) -> int:
        """Groups not decided yet, the current one included (an estimate from the group layout)."""
        if self.current is None:
            return 0
        depth = getattr(self.s.pruner, "depth", None)  # depth groups come after the layout's width groups
        n = self.s.layout.n_groups + (len(depth.blocks) if depth is not None else 0)
        return max(1, n - len(self.decisions))

    def forget(self) -> None:
        """Empty the log without touching the model (the caller has undone it; :meth:`replay` follows)."""
        self.decisions = []
        self.current, self.proposal, self.current_idxs = None, None, []

    def groups(self):
        return self.s.pruner.get_all_groups()

    def restart(self) -> None:
        """Enumerate the groups again and move past the decisions already taken (after undo / rebuild)."""
        self._iter = iter(self.groups())
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
                self.show(self._plan(g))
                return
            k += 1
        self.advance()

    def advance(self) -> None:
        """Plan the next group and show it, unless the pruner refuses it (then log why and go on)."""
        for g in self._iter:
            proposal = self._plan(g)
            if proposal.skip_kind in AUTO_SKIP_KINDS:
                self.decisions.append(self._decision(proposal, "guard", reason=proposal.skip_reason or proposal.skip_kind))
                continue
            self.show(proposal)
            return
        self.current = None
        self.proposal = None
        self.current_idxs = []

    def _state(self):
        """What a proposal depends on (None when the criterion is not :data:`PURE_WEIGHT_CRITERIA`): the pruner and
        its step, the graph's history, and every parameter (its identity and version counter, and its gradient's).
        Compared by identity (:func:`_same_state`); costs one pass over ``model.parameters()``."""
        pruner = self.s.pruner
        if not isinstance(self.s.importance, PURE_WEIGHT_CRITERIA) or pruner.importance is not self.s.importance:
            return None
        params = list(self.s.model.parameters())
        return (pruner, pruner.current_step, tuple(self.s.DG.history), tuple(params),
                tuple(p._version for p in params), tuple(p.grad for p in params))

    def _plan(self, group):
        """The pruner's proposal for ``group``; after an undo, the one made before the undone accept when nothing it
        depends on differs (the undo restored the model exactly), with the group as enumerated now."""
        reuse, self._reuse = self._reuse, None
        state = self._state()
        if reuse is not None and state is not None and _same_state(reuse[0], state) and \
                group_key(reuse[1].group) == group_key(group):
            proposal = replace(reuse[1], group=group)
        else:
            proposal = self.s.pruner.proposal(group)
        self._shown_state = (proposal, state)
        return proposal

    def _remember_plan(self, cut: Cut) -> None:
        """Keep what ``cut``'s group was planned on, for :meth:`undo` (entries of records gone from the history go)."""
        shown, state = self._shown_state or (None, None)
        history = self.s.DG.history
        if cut.record is None or state is None or cut.target is not shown or not isinstance(shown, Proposal) or \
                cut.part is not None or not history or history[-1] is not cut.record:
            return  # (an extra source's proposal, e.g. a depth group's, is planned again; so is a group pruned in a
            # batch, or one the graph keeps no undo record of: the entry would hold that step's tensors for nothing)
        self._planned[id(cut.record)] = (cut.record, state, shown)
        if len(self._planned) > 1:
            live = {id(r) for r in self.s.DG.history}
            self._planned = {k: v for k, v in self._planned.items() if k in live}

    def _reuse_plan_of(self, record) -> None:
        entry = self._planned.pop(id(record), None)
        self._reuse = entry[1:] if entry is not None and entry[0] is record else None

    def show(self, proposal) -> None:
        self.current = proposal.group
        self.proposal = proposal
        self.current_idxs = _sorted_ints(proposal.proposed_idxs)
        old = self.suggested.get(proposal.group.root_name)
        if old is not None:  # re-walking: the earlier choice, where its channels are still candidates
            root = proposal.group.root_space
            cur = [int(root.rank[o]) for o in old.orig_idxs if root.alive[o]]
            if len(cur) == len(old.orig_idxs) and set(cur) <= set(self.candidates()):
                self.current_idxs = sorted(cur)

    def _decision(self, proposal, action: str, idxs: Sequence[int] = (), reason: str = "") -> Decision:
        group = proposal.group
        root = group.root_space
        return Decision(
            action=action, root=group.root_name, root_label=root.label, root_fn=fn_name(group.pruning_fn),
            channels=root.current_size, idxs=list(idxs),
            orig_idxs=root.alive_idx[np.asarray(idxs, dtype=np.int64)].tolist() if len(idxs) else [],
            proposed=_sorted_ints(proposal.proposed_idxs),
            reason=reason, explicit=isinstance(group, ExplicitGroup), key=group_key(group),
        )

    def _log(self, d: Decision) -> Decision:
        """Fill in the figures after ``d`` and append it to the log."""
        self.suggested.pop(d.root, None)
        d.params_after, d.macs_after = self.s.params_now(), self.s.macs_now()
        d.channels_removed = self.s.layout.channels_removed_fraction()
        self.decisions.append(d)
        return d

    def require_current(self, what: str) -> None:
        if self.current is None:
            raise ExplorerError(f"cannot {what}: every group has been decided (the walk is over). Undo to go back, "
                                "or change the ratio / ignored layers to start a new walk.")

    # ---- actions ---------------------------------------------------------------------------------------------------
    def accept(self, idxs: Optional[Sequence[int]] = None) -> Decision:
        """Prune the current group (its proposed channels, those set by :meth:`adjust`, or ``idxs``) and move on."""
        self.require_current("accept")
        idxs = self.validate_idxs(idxs) if idxs is not None else list(self.current_idxs)
        n_logged = len(self.decisions)
        try:
            d = self.apply(idxs, check=True)  # pruned, logged and checked, or neither
            self.advance()
        except BaseException:
            if len(self.decisions) > n_logged:
                self.resume()
            raise
        return d

    def apply(self, idxs: List[int], proposed=None, check: bool = False) -> Decision:
        """Prune the current group's root channels ``idxs`` (nothing when empty: a skip) through the pruner's driver
        and log the decision; ``check``: then run the post-prune check (see :meth:`_prune`)."""
        cut = self._cut(idxs, proposed)
        self._prune([cut], check)
        return cut.tag

    def _cut(self, idxs: List[int], proposed=None) -> Cut:
        """The driver's cut for the current group's root channels ``idxs`` (empty: a skip), with its decision."""
        d = self._decision(self.proposal, "accept" if idxs else "skip", idxs)
        if proposed is not None:
            d.proposed = proposed
        d.params_before, d.macs_before = self.s.params_now(), self.s.macs_now()
        return Cut(self.proposal, list(idxs), tag=d)

    def _prune(self, cuts, check: bool) -> None:
        """Prune ``cuts`` through the pruner's driver, logging each decision as it is pruned (if logging fails, the
        driver undoes that cut, so log and model agree); with ``check``, then the post-prune check: a group that
        breaks the model is rolled back and its decision becomes a skip with the error as reason. What was pruned
        before a failure stays pruned, logged and checked."""
        taken: List[Cut] = []

        def pruned(cut: Cut) -> None:
            cut.tag.record = cut.record
            self._log(cut.tag)
            taken.append(cut)
            self._remember_plan(cut)

        def refused(cut: Cut, exc: PruningError) -> None:
            raise ExplorerError(f"the group rooted at {cut.tag.root} could not be pruned: {exc}") from exc

        try:
            self.s.pruner.driver.apply(cuts, check=check, on_error=KEEP, on_pruned=pruned, refused=refused,
                                       what="accept")
        finally:
            self._take_repair(taken)

    def skip_current(self) -> Decision:
        d = self._decision(self.proposal, "skip")
        d.params_before, d.macs_before = self.s.params_now(), self.s.macs_now()
        return self._log(d)

    def skip(self) -> Decision:
        """Leave the current group as it is and move on."""
        self.require_current("skip")
        d = self.skip_current()
        self.advance()
        return d

    def adjust(self, n: Optional[int] = None, idxs=None) -> List[int]:
        """Choose what accepting the current group removes: the ``n`` least important channels, or ``idxs``.

        ``n`` must be reachable (see :meth:`allowed_counts`: units, ``round_to``, guards); ``idxs`` are root channel
        indices (a list or a string such as ``"0, 5, 7"``), completed to whole units. Returns the new selection.
        """
        self.require_current("adjust")
        if (n is None) == (idxs is None):
            raise ExplorerError("adjust takes either n (how many channels to remove) or idxs (which ones), not both: "
                                "pass one of them, e.g. adjust(n=8) or adjust(idxs='0, 5, 7')")
        if idxs is not None:
            sel = self.validate_idxs(idxs)
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
                    + (f" in steps that keep whole units / multiples of round_to={self.s.round_to}" if len(allowed) < hi - lo + 1 else "")
                    + f"; nearest valid: {', '.join(map(str, sorted(near)))}"
                )
            sel = self.propose(n)
        self.current_idxs = sel
        return list(sel)

    def use_proposal(self) -> List[int]:
        """Go back to the pruner's proposal for the current group (undoing :meth:`adjust`)."""
        self.require_current("use the proposal")
        self.current_idxs = sorted(int(i) for i in self.proposal.proposed_idxs)
        return list(self.current_idxs)

    def max_removable(self) -> int:
        """The most root channels of the current group that the guards allow to remove."""
        self.require_current("ask for the maximum")
        return int(self.proposal.max_removable)

    def allowed_counts(self) -> List[int]:
        """Every number of channels the current group can lose (whole units, ``round_to``, guards)."""
        self.require_current("list the allowed counts")
        # keyed by the group object itself (kept alive by the key), never by id(): a later group may reuse an id
        cached = self._allowed
        if cached is not None and cached[0] is self.current and cached[1] == self.s.DG.version:
            return cached[2]
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
        rt = self.s.round_to
        if rt and rt > 1:  # the pruner keeps a multiple of round_to channels (or removes nothing)
            counts = [c for c in counts if (total - c) % rt == 0 or c == 0]
        self._allowed = (g, self.s.DG.version, counts)
        return counts

    def propose(self, n: int) -> List[int]:
        if n == 0:
            return []
        idxs = sorted(int(i) for i in self.s.pruner.propose(self.proposal, n))  # the proposal brings its scores
        if len(idxs) != n:
            self.events.notice(f"{n} channels cannot be removed from {self.current.root_name} while keeping the "
                            f"constraints (units, round_to, member multiples, guards); selected {len(idxs)} instead")
        return idxs

    def candidates(self) -> List[int]:
        return [int(i) for i in self.proposal.candidate_idxs]

    def validate_idxs(self, idxs) -> List[int]:
        g = self.current
        what = f"channels of {g.root_name}"
        if isinstance(idxs, str):
            idxs = _read_idx_text(idxs, what)
        n = g.root_space.current_size
        vals = check_indices(idxs, n, what=what, of=g.root_name, error=ExplorerError).tolist()
        cand = set(self.candidates())
        outside = [i for i in vals if i not in cand]
        if outside:
            raise ExplorerError(f"channels {outside[:5]} of {g.root_name} are not part of this group (they are fixed, "
                                "e.g. they reach the model output, or belong to an ignored layer's outputs)")
        # complete whole units
        unit_of = {i: u for u in g.units for i in u}
        full = set()
        for i in vals:
            full.update(unit_of.get(i, [i]))
        hi = self.max_removable()
        if len(full) > hi:
            raise ExplorerError(f"removing {len(full)} channels from {g.root_name} goes past the guards: at most {hi} "
                                f"of its {n} channels may be removed (max_pruning_ratio, and at least one channel stays)")
        if len(full) > len(vals):
            self.events.notice(f"added {len(full) - len(vals)} channels to complete whole units (channels tied by the "
                            "layer's arithmetic are removed together)")
        return sorted(full)

    def undo(self) -> Decision:
        """Restore the model exactly as it was before the last accepted group, and show that group again."""
        k = next((i for i in range(len(self.decisions) - 1, -1, -1) if self.decisions[i].action == "accept"), None)
        if k is None:
            raise ExplorerError("nothing to undo: no group has been accepted yet")
        d = self.decisions[k]
        try:
            self.undo_record(d.record)
        except PruneExplorerError as exc:
            raise ExplorerError(f"undo failed: {exc}") from exc
        del self.decisions[k:]
        self._reuse_plan_of(d.record)  # the model is as it was when d's group was planned
        self.restart()
        self.last_undone = d.root
        return d

    def undo_record(self, record) -> None:
        """Undo a decision's ``record`` (None: the graph's last), first undoing the edits made after it that are no
        decision of the walk (a recovery: its weights go back too), so the model is exactly as before it."""
        DG = self.s.DG
        if record is not None:
            while DG.history and DG.history[-1] is not record and record in DG.history:
                DG.undo()
            DG.undo(record)
        else:
            DG.undo()

    def accept_all_remaining(self) -> List[Decision]:
        """Accept every remaining group as the pruner proposes it (the current one with its adjusted selection)."""
        self.require_current("accept all")
        done = []
        n_total = self.n_groups_left
        stage = "accepting every remaining group"
        self.events.report(stage, 0, n_total)

        def cuts():
            while self.current is not None:
                cut = self._cut(list(self.current_idxs))
                yield cut  # the driver prunes it and _prune logs it
                done.append(cut.tag)
                self.advance()
                self.events.report(stage, len(done), max(n_total, len(done) + self.n_groups_left))

        try:
            with gc_paused():  # the batch keeps many small objects alive: no full collector passes meanwhile
                self._prune(cuts(), check=True)
        except BaseException:
            # stopped part-way (an interrupt, an error while planning the next group): the groups accepted so far
            # stay accepted and checked (the driver), and the walk goes on from the first undecided group
            self.resume()
            raise
        return done

    def apply_counts(self, count_of: Callable[[], int], stage: str) -> List[Decision]:
        """Decide every remaining group at once: remove ``count_of()`` root channels of the group on show (the least
        important ones; 0 skips it). All or nothing: if anything fails or is interrupted, the groups it had decided
        are undone and the error goes on. Progress goes to ``stage``. Returns the decisions made."""
        self.require_current("apply counts")
        start = len(self.decisions)
        n_total = max(self.n_groups_left, 1)
        done = 0
        self.events.report(stage, 0, n_total)
        try:
            while self.current is not None:
                n = count_of() or 0
                if n:
                    self.apply(self.propose(n))
                else:
                    self.skip_current()
                self.advance()
                done += 1
                self.events.report(stage, done, max(n_total, done + self.n_groups_left))
        except BaseException:
            self.undo_since(start)
            raise
        finally:
            self.events.report(stage, n_total, n_total)
        return list(self.decisions[start:])

    def undo_since(self, start: int) -> None:
        """Undo every decision after the first ``start`` ones (newest first; the model is restored exactly) and walk
        back to the first of them."""
        first = self.decisions[start] if start < len(self.decisions) else None
        for d in reversed(self.decisions[start:]):
            if d.action == "accept":
                self.undo_record(d.record)
        del self.decisions[start:]
        if first is not None and first.action == "accept":
            self._reuse_plan_of(first.record)
        self.restart()

    def restart_walk(self) -> List[Decision]:
        """Undo every decision (the model is as built again) and walk from the first group; returns the decisions
        undone."""
        old = list(self.decisions)
        self.undo_since(0)
        return old

    def resume(self) -> None:
        """Put the walk back on the first undecided group after an operation stopped part-way (the group on show
        may already be decided, or its proposal stale)."""
        try:
            self.restart()
        except Exception:  # noqa: BLE001 - planning fails again (e.g. NaN scores): the caller's error says why
            self.current, self.proposal, self.current_idxs = None, None, []

    def _take_repair(self, cuts: Sequence[Cut]) -> None:
        """The decisions of ``cuts`` after the driver's post-prune check: a re-applied group has a new record; a
        rolled back one becomes a skip whose reason is the error."""
        for cut in cuts:
            d = cut.tag
            if d.record is None:
                continue
            if cut.rolled_back is None:
                d.record = cut.record
                continue
            d.action, d.record, d.idxs, d.orig_idxs = "skip", None, [], []
            d.reason = f"rolled back by the post-prune check: the pruned model did not run ({cut.rolled_back})"
            d.params_after, d.macs_after = d.params_before, d.macs_before

    def replay(self, old: List[Decision]) -> List[str]:
        """Walk the groups again, re-taking the decisions of ``old`` (by original channel ids) where they apply.
        Returns the roots of the decisions that could not be re-taken."""
        # by group key, not root name: a whole-heads group and its head-dims group share their root layer
        pending = {d.key or d.root: d for d in old}
        self.decisions = []
        self._iter = iter(self.groups())
        dropped = []
        self.replay_stopped_at = None
        while True:
            self.advance()
            g = self.current
            if g is None:
                break
            key = group_key(g)
            if key not in pending:
                # decisions are a prefix of the walk: a group that was not walked before (e.g. a layer no longer
                # ignored) comes first now, so the decisions after it cannot be kept
                self.replay_stopped_at = g.root_name
                break
            d = pending.pop(key)
            if d.action == "skip":
                self.skip_current()
                continue
            root = g.root_space
            alive = root.alive
            orig = np.asarray(d.orig_idxs, dtype=np.int64)
            cand = set(self.candidates())
            cur = [int(root.rank[o]) for o in orig if alive[o]]
            if len(cur) != len(orig) or not set(cur) <= cand:
                dropped.append(d.root)
                continue
            try:
                self.apply(cur, proposed=d.proposed)
            except ExplorerError:
                dropped.append(d.root)
        dropped.extend(d.root for d in pending.values())
        return dropped
