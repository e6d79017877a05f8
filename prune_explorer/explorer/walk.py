"""The walk: the pruner's groups one by one, each accepted, adjusted, skipped or undone by the user.

The groups come from ``pruner.get_all_groups()`` in the dependency graph's deterministic order; each is *planned*
by the pruner right before it is shown (``pruner.proposal(group)``: a :class:`~prune_explorer.pruner.Proposal` with
its importance, the channels it proposes to remove, the scope and ratio behind them), so every proposal sees the
model as the earlier decisions left it. A group the pruner refuses (a guard, an importance without opinion, head
constraints: :data:`AUTO_SKIP_KINDS`) is logged with its reason and passed over. Every step of the walk is a
:class:`Decision`; undo restores the model exactly (the graph's own undo) and walks back to that group.

After an accept (and after accept-all) the pruner's post-prune check runs the model on shape-only stand-ins
(:mod:`prune_explorer.pruner.post_check`); a group that breaks it is rolled back exactly and its decision becomes a
skip whose reason is the error. Accept and accept-all are safe to interrupt: a group is pruned and logged whole or
not at all, and the walk resumes at the first undecided group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import numpy as np

from ..errors import PruneExplorerError
from ..graph import fn_name
from ..plan.decisions import group_key
from ..pruner.guards import CHECK, GUARD, HEADS, IMPORTANCE
from ..pruner.heads import ExplicitGroup
from ..pruner.post_check import warn_rolled_back
from ..validation import check_indices
from .session import ExplorerError

__all__ = ["Decision", "Walk", "AUTO_SKIP_KINDS"]

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
    """Mixin of :class:`~.controller.ExplorerController`: the walk over the pruner's groups (module docstring).

    State: ``decisions`` (the log), ``current`` (the group on show, whole; None when the walk is over),
    ``_proposal`` (the pruner's proposal for it), ``current_idxs`` (what accepting removes now), ``message``.
    """

    # ---- moving along ----------------------------------------------------------------------------------------------
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
                self._show(self.pruner.proposal(g))
                return
            k += 1
        self._advance()

    def _advance(self) -> None:
        """Plan the next group and show it, unless the pruner refuses it (then log why and go on)."""
        for g in self._iter:
            proposal = self.pruner.proposal(g)
            if proposal.skip_kind in AUTO_SKIP_KINDS:
                self.decisions.append(self._decision(proposal, "guard", reason=proposal.skip_reason or proposal.skip_kind))
                continue
            self._show(proposal)
            return
        self.current = None
        self._proposal = None
        self.current_idxs = []

    def _show(self, proposal) -> None:
        self.current = proposal.group
        self._proposal = proposal
        self.current_idxs = sorted(int(i) for i in proposal.proposed_idxs)

    def _decision(self, proposal, action: str, idxs: Sequence[int] = (), reason: str = "") -> Decision:
        group = proposal.group
        root = group.root_space
        return Decision(
            action=action, root=group.root_name, root_label=root.label, root_fn=fn_name(group.pruning_fn),
            channels=root.current_size, idxs=list(idxs),
            orig_idxs=[int(i) for i in root.alive_idx[list(idxs)]] if len(idxs) else [],
            proposed=sorted(int(i) for i in proposal.proposed_idxs),
            reason=reason, explicit=isinstance(group, ExplicitGroup), key=group_key(group),
        )

    def _log(self, d: Decision) -> Decision:
        """Fill in the figures after ``d`` and append it to the log."""
        d.params_after, d.macs_after = self._params_now(), self._macs_now()
        d.channels_removed = self._layout.channels_removed_fraction()
        self.decisions.append(d)
        return d

    def _require_current(self, what: str) -> None:
        if self.current is None:
            raise ExplorerError(f"cannot {what}: every group has been decided (the walk is over). Undo to go back, "
                                "or change the ratio / ignored layers to start a new walk.")

    # ---- actions ---------------------------------------------------------------------------------------------------
    def accept(self, idxs: Optional[Sequence[int]] = None) -> Decision:
        """Prune the current group (its proposed channels, those set by :meth:`adjust`, or ``idxs``) and move on."""
        self._require_current("accept")
        idxs = self._validate_idxs(idxs) if idxs is not None else list(self.current_idxs)
        d = self._apply(idxs)  # pruned and logged, or neither
        try:
            self._check_decisions([d])
            self._advance()
        except BaseException:
            self._resume_walk()
            raise
        self._changed("accept")
        return d

    def _apply(self, idxs: List[int], proposed=None) -> Decision:
        """Prune the current group's root channels ``idxs`` (nothing when empty: a skip) and log the decision."""
        d = self._decision(self._proposal, "accept" if idxs else "skip", idxs)
        if proposed is not None:
            d.proposed = proposed
        d.params_before, d.macs_before = self._params_now(), self._macs_now()
        n_records = len(self.DG.history)
        try:
            if idxs:
                try:
                    d.record = self._proposal.prune(idxs=list(idxs))
                except PruneExplorerError as exc:
                    raise ExplorerError(f"the group rooted at {self.current.root_name} could not be pruned: "
                                        f"{exc}") from exc
                self._cache.clear()
            return self._log(d)
        except BaseException:
            # pruned but not logged (an interrupt between the two): take the pruning back, so log and model agree
            if not (self.decisions and self.decisions[-1] is d):
                while len(self.DG.history) > n_records:
                    self.DG.undo()
                self._cache.clear()
            raise

    def _skip_current(self) -> Decision:
        d = self._decision(self._proposal, "skip")
        d.params_before, d.macs_before = self._params_now(), self._macs_now()
        return self._log(d)

    def skip(self) -> Decision:
        """Leave the current group as it is and move on."""
        self._require_current("skip")
        d = self._skip_current()
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
        self.current_idxs = sorted(int(i) for i in self._proposal.proposed_idxs)
        self._changed("adjust")
        return list(self.current_idxs)

    @property
    def round_to(self) -> Optional[int]:
        r = self.pruner_kwargs.get("round_to")
        return int(r) if r else None

    def max_removable(self) -> int:
        """The most root channels of the current group that the guards allow to remove."""
        self._require_current("ask for the maximum")
        return int(self._proposal.max_removable)

    def allowed_counts(self) -> List[int]:
        """Every number of channels the current group can lose (whole units, ``round_to``, guards)."""
        self._require_current("list the allowed counts")
        # keyed by the group object itself (kept alive by the key), never by id(): a later group may reuse an id
        cached = self._cache.get("allowed")
        if cached is not None and cached[0] is self.current and cached[1] == self.DG.version:
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
        rt = self.round_to
        if rt and rt > 1:  # the pruner keeps a multiple of round_to channels (or removes nothing)
            counts = [c for c in counts if (total - c) % rt == 0 or c == 0]
        self._cache["allowed"] = (g, self.DG.version, counts)
        return counts

    def _propose(self, n: int) -> List[int]:
        if n == 0:
            return []
        idxs = sorted(int(i) for i in self.pruner.propose(self._proposal, n))  # the proposal brings its scores
        if len(idxs) != n:
            self._notice(f"{n} channels cannot be removed from {self.current.root_name} while keeping the "
                            f"constraints (units, round_to, member multiples, guards); selected {len(idxs)} instead")
        return idxs

    def _candidates(self) -> List[int]:
        return [int(i) for i in self._proposal.candidate_idxs]

    def _validate_idxs(self, idxs) -> List[int]:
        g = self.current
        what = f"channels of {g.root_name}"
        if isinstance(idxs, str):
            idxs = _read_idx_text(idxs, what)
        n = g.root_space.current_size
        vals = check_indices(idxs, n, what=what, of=g.root_name, error=ExplorerError).tolist()
        cand = set(self._candidates())
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
            self._notice(f"added {len(full) - len(vals)} channels to complete whole units (channels tied by the "
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
        self.last_undone = d.root
        self._changed("undo")
        return d

    def accept_all_remaining(self) -> List[Decision]:
        """Accept every remaining group as the pruner proposes it (the current one with its adjusted selection)."""
        self._require_current("accept all")
        done = []
        n_total = self.n_groups_left
        stage = "accepting every remaining group"
        self._report(stage, 0, n_total)
        try:
            while self.current is not None:
                done.append(self._apply(list(self.current_idxs)))
                self._advance()
                self._report(stage, len(done), max(n_total, len(done) + self.n_groups_left))
        except BaseException:
            # stopped part-way (an interrupt, an error while planning the next group): the groups accepted so far
            # stay accepted and checked, and the walk goes on from the first undecided group
            try:
                self._check_decisions(done)
            finally:
                self._resume_walk()
                self._changed("accept_all")
            raise
        self._check_decisions(done)
        self._changed("accept_all")
        return done

    def _resume_walk(self) -> None:
        """Put the walk back on the first undecided group after an operation stopped part-way (the group on show
        may already be decided, or its proposal stale)."""
        self._cache.clear()
        try:
            self._restart_walk()
        except Exception:  # noqa: BLE001 - planning fails again (e.g. NaN scores): the caller's error says why
            self.current, self._proposal, self.current_idxs = None, None, []

    def _check_decisions(self, decisions: Sequence[Decision]) -> None:
        """The pruner's post-prune check of the groups just accepted (the newest entries of the graph's history):
        a group that breaks the model is rolled back, and its decision becomes a skip with the error as reason."""
        records = [d.record for d in decisions if d.record is not None]
        if not records or not getattr(self.pruner, "post_prune_check", False):
            return
        check = self.pruner.check
        error = check.error()
        if error is None:
            return
        repair = check.repair(records, error)
        self.pruner.apply_repair(repair)
        self._cache.clear()
        for d in decisions:
            if d.record is None:
                continue
            now = repair.current(d.record)
            if now is not None:
                d.record = now
                continue
            err = next(e for r, e in repair.rolled_back if r is d.record)
            d.action, d.record, d.idxs, d.orig_idxs = "skip", None, [], []
            d.reason = f"rolled back by the post-prune check: the pruned model did not run ({err})"
            d.params_after, d.macs_after = d.params_before, d.macs_before
        warn_rolled_back(repair, "accept")

    def _replay(self, old: List[Decision]) -> List[str]:
        """Walk the groups again, re-taking the decisions of ``old`` (by original channel ids) where they apply.
        Returns the roots of the decisions that could not be re-taken."""
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
                self._skip_current()
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
