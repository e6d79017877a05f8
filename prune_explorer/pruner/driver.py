"""The pruning driver: the one path by which the library prunes groups.

Everything that prunes goes through a pruner's :class:`PruningDriver` (``pruner.driver``): ``pruner.step()``, the
explorer's accept, accept-all and apply-plan, ``pe.plan`` application (:func:`~prune_explorer.plan.prune_with_plan`),
the sensitivity scan's points and plan costing. A feature added to pruning is therefore added here, once.

What it does:

* **the walk** (:meth:`PruningDriver.groups`, :meth:`PruningDriver.proposals`): the graph's groups (lazily, each
  against the model as the earlier prunings left it), then the pruner's head-dim groups, then the groups of every
  extra source in :attr:`PruningDriver.group_sources`; a proposal for each from the pruner's planner.
* **applying decided cuts** (:meth:`PruningDriver.apply`): a :class:`Cut` is one group (or a pruner proposal) and
  the root channels to remove. ``apply(cuts)`` opens the undo scope (``DG.undoable()``: every pruning inside keeps
  what an exact rollback needs), prunes the cuts one after another (each atomically: whole or not at all), runs the
  post-prune check once over what it pruned and repairs it (:meth:`PruningDriver.check`: the groups that break the
  model are rolled back and recorded as skipped by the pruner), runs the ``after_apply`` hooks, then ``verify``.
  ``on_error`` says what a failure part-way leaves (:data:`ROLLBACK`, :data:`KEEP` or
  :data:`KEEP_ON_INTERRUPT`). The cuts may come from a generator: each is then decided after the previous one
  was pruned (what ``step()`` does).
* **trials** (:meth:`PruningDriver.trial`): apply cuts, let the caller measure, undo them all exactly (plan costs,
  sensitivity points).
* **the undo scope** (:meth:`PruningDriver.undo_scope`, :meth:`PruningDriver.keep_every_record`): the only code
  outside ``graph/`` that decides how many records stay undoable.

Extension points (documented contracts; keep them small):

* :attr:`PruningDriver.applier`: the strategy that prunes a batch of cuts. ``applier(driver, cuts, pruned)``
  consumes the iterable ``cuts`` and calls ``pruned(cut)`` after setting ``cut.record`` for each cut it pruned (or
  ``cut.record = None`` for a cut with nothing to remove); it raises to stop (a :class:`~..errors.PruningError` for
  a cut is handed to the caller's ``refused`` callback by :func:`sequential_applier`). The default
  :func:`sequential_applier` prunes them one after another with :meth:`PruningDriver.prune`; a batched applier may
  materialize the cuts and cut every tensor once, as long as each cut ends with its own undoable record.
* :attr:`PruningDriver.after_apply`: hooks ``hook(driver, applied)`` run after the check of every
  :meth:`PruningDriver.apply` that pruned something (e.g. a compensation step that refits the layers after the
  cut); they run inside the undo scope, so a hook that raises rolls back per ``on_error``.
* :attr:`PruningDriver.group_sources`: callables returning extra groups for the walk (e.g. depth groups), visited
  after the graph's and the head-dim groups.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

from .._gc import gc_paused
from ..errors import PruningError
from ..graph.model.group import Group
from ..importance.held import HeldConflict, HeldCuts, reads_channel_parts_only
from .post_check import Repair, warn_rolled_back
from .proposal import Proposal

__all__ = ["PruningDriver", "Cut", "Applied", "sequential_applier", "batched_applier", "ROLLBACK", "KEEP",
           "KEEP_ON_INTERRUPT"]

#: ``on_error``: any failure part-way undoes everything the call pruned (plans, trials)
ROLLBACK = "rollback"
#: ``on_error``: what was pruned before a failure stays pruned, and is checked (the explorer's accept-all)
KEEP = "keep"
#: ``on_error``: an ``Exception`` rolls back, an interrupt (``KeyboardInterrupt``...) keeps and checks (``step()``)
KEEP_ON_INTERRUPT = "keep-on-interrupt"
_POLICIES = (ROLLBACK, KEEP, KEEP_ON_INTERRUPT)


@dataclass(eq=False)
class Cut:
    """One decided pruning: ``target`` (a :class:`~.proposal.Proposal` of the pruner, whose bookkeeping then runs,
    or any group with ``select``) and ``idxs``, the root channels to remove (current indices; None: the proposal's
    own ``proposed_idxs``; empty: nothing, the cut is then a skip). ``tag`` is the caller's (e.g. the explorer's
    decision). After :meth:`PruningDriver.apply`: ``record`` (the graph's record of it, or None) and
    ``rolled_back`` (the error, when the post-prune check rolled it back)."""

    target: Any
    idxs: Optional[Sequence[int]] = None
    tag: Any = None
    record: Any = None
    rolled_back: Optional[str] = None
    #: for a cut pruned in a batch (:func:`batched_applier`): its position among the batch record's groups
    part: Optional[int] = None


@dataclass(eq=False)
class Applied:
    """What :meth:`PruningDriver.apply` did: the ``cuts`` it consumed (in order), the ``records`` now standing for
    them (after any repair) and the post-prune check's ``repair`` (None when the check did not run or found
    nothing wrong)."""

    cuts: List[Cut] = field(default_factory=list)
    repair: Optional[Repair] = None

    @property
    def records(self) -> List[Any]:
        """The records, in order, each once (the cuts of a batch share one)."""
        out: List[Any] = []
        for c in self.cuts:
            if c.record is not None and not (out and out[-1] is c.record):
                out.append(c.record)
        return out


_BATCHED_KINDS = (None, "attention-dims")


def sequential_applier(driver: "PruningDriver", cuts: Iterable[Cut], pruned: Callable[[Cut], None],
                       refused: Optional[Callable[[Cut, PruningError], None]] = None) -> None:
    """The default :attr:`PruningDriver.applier`: each cut pruned on its own, in order (see the module docstring).
    A cut a layer refuses (:class:`~prune_explorer.errors.PruningError`, nothing pruned) goes to ``refused`` when
    given, else the error propagates."""
    for cut in cuts:
        try:
            driver.prune(cut)
        except PruningError as exc:
            if refused is None:
                raise
            refused(cut, exc)
            continue
        pruned(cut)


def _graph_group(group) -> bool:
    """A group the graph derives from its channel classes (not a hand-built attention group), attention-dims ones
    (one offset in every head, e.g. a transformer's hidden size) included: the graph prunes it like any other."""
    return type(group) is Group and group.kind in _BATCHED_KINDS


@functools.lru_cache(maxsize=1)
def _base_estimate():
    """``BasePruner.estimate_importance`` (base_pruner imports this module: read on first use, then kept)."""
    from .base_pruner import BasePruner

    return BasePruner.estimate_importance


def _hf_config(driver) -> bool:
    """Whether the pruned model has a Hugging Face config (asked only for attention groups: a model without
    attention never loads the config code)."""
    from ..hf import is_hf_model

    return is_hf_model(driver.graph.model)


def _batch_group(cut: Cut):
    """The graph group a cut would prune, when it can be cut together with others (a plain graph group with
    channels to remove, not a hand-built attention group); else None."""
    target, idxs = cut.target, cut.idxs
    if isinstance(target, Proposal):
        group = target.group
        if not _graph_group(group):
            return None
        if idxs is None:
            return target.selection if target.proposed_idxs else None
        return group.select(list(idxs)) if len(idxs) else None
    if not _graph_group(target) or (idxs is not None and not len(idxs)):
        return None
    return target if idxs is None else target.select(list(idxs))


def batched_applier(driver: "PruningDriver", cuts: Iterable[Cut], pruned: Callable[[Cut], None],
                    refused: Optional[Callable[[Cut, PruningError], None]] = None) -> None:
    """An :attr:`PruningDriver.applier` that decides first and cuts once: consecutive plain graph groups are
    collected and pruned together with ``DG.prune_groups`` (one cut per tensor, ONE record; every cut of the batch
    has that ``record`` and its ``part``); any other cut (hand-built attention groups, head dims, extra sources; an
    attention-dims graph group of a Hugging Face model, whose config sync derives ``head_dim`` from the sizes of one
    record) is pruned on its own after the batch before it was cut.

    The choices stay exactly those of pruning one group after another. The cuts held are recorded as (channel space,
    positions) in the driver's :class:`~prune_explorer.importance.held.HeldCuts`, and the next decisions read the
    model through them (:meth:`PruningDriver.decide`): channel counts as the held cuts leave them, weights without
    the entries they remove (bit for bit the values the cut model has). The held cuts are pruned first
    (:meth:`PruningDriver.before_decide`) only when that cannot be exact: the group's root channels have held cuts,
    a member's layer is read in a way held cuts cannot be seen through (gates, a grouped conv's inputs read per
    group, a layer of no known family, a member with a channel multiple or declared heads), or the criterion reads
    more than the channels' weights (activation or input statistics, a custom criterion: see
    :func:`~prune_explorer.importance.held.reads_channel_parts_only`), in which case any held cut of a layer the
    group touches is pruned first, as the model it reads must be cut. So a DenseNet, where every group also cuts
    the inputs of every later layer, is decided in one pass and each tensor is copied once per step, not once per
    group.

    A batch that a layer refuses as a whole is pruned one cut after another, as :func:`sequential_applier` does.
    The post-prune check splits a failing batch into one record per group before it searches
    (:meth:`PruningDriver.check`)."""
    batch: List[tuple] = []
    held = driver._held  # the cuts decided and not applied yet (see PruningDriver.decide)

    def flush() -> None:
        todo = list(batch)
        batch.clear()
        held.clear()
        if len(todo) > 1:
            try:
                rec = driver.graph.prune_groups([g for _, g in todo])
            except PruningError:
                rec = None  # a layer refuses the union: one by one, each group on its own
            if rec is not None:
                for k, (cut, _) in enumerate(todo):
                    cut.record, cut.part = rec, k
                    if isinstance(cut.target, Proposal):
                        cut.target.record = rec
                driver.pruner.remember_batch(rec, [c.target for c, _ in todo])
                for cut, _ in todo:
                    pruned(cut)
                return
        sequential_applier(driver, [c for c, _ in todo], pruned, refused)

    driver._flush = flush  # the walk cuts what is decided before it visits groups decided on the cut model
    try:
        for cut in cuts:
            group = _batch_group(cut)
            if group is not None and group.kind is not None and _hf_config(driver):
                group = None  # a Hugging Face config is synced once per record, and derives head_dim from the
                # hidden size and head count: an attention-dims group keeps a record of its own there
            if group is not None:
                if isinstance(cut.target, Proposal):
                    cut.target.batched = True
                batch.append((cut, group))
                held.add(group)
                continue
            flush()
            sequential_applier(driver, [cut], pruned, refused)
        flush()
    finally:
        driver._flush = None
        held.clear()


class PruningDriver:
    """The one pruning path of a pruner (module docstring). Built by :class:`~.base_pruner.BasePruner` as
    ``pruner.driver``; it reads the pruner's graph (``DG``), planner, post-prune check and head-dim groups, and
    records repairs through ``pruner.apply_repair``."""

    def __init__(self, pruner):
        self.pruner = pruner
        #: the strategy that prunes a batch of cuts (see the module docstring)
        self.applier: Callable = sequential_applier
        #: hooks ``hook(driver, applied)`` run after the post-prune check of each apply that pruned something
        self.after_apply: List[Callable[["PruningDriver", Applied], None]] = []
        #: extra group sources for the walk: callables returning an iterable of groups
        self.group_sources: List[Callable[[], Iterable[Any]]] = []
        self._flush: Optional[Callable[[], None]] = None  # set while batched_applier holds decided cuts
        self._held = HeldCuts()  # the cuts batched_applier holds: (channel space, positions) on the uncut model

    @property
    def graph(self):
        return self.pruner.DG

    # ---- the walk --------------------------------------------------------------------------------------------------
    def groups(self) -> Iterator[Any]:
        """Every group a step visits, as the model is now (lazily: each computed after the earlier ones were
        pruned): the graph's groups, the pruner's head-dim groups, then those of :attr:`group_sources`."""
        yield from self.pruner.graph_groups()
        self._cut_decided()
        head_dims = self.pruner.head_dim_groups
        if head_dims is not None:  # the heads left are narrowed after whole heads were removed
            yield from head_dims.groups()
        for source in self.group_sources:
            self._cut_decided()
            yield from source()

    def before_decide(self, group) -> None:
        """Call before deciding ``group``'s channels (inside :meth:`decide`): when a batched applier holds cuts that
        this decision cannot read through exactly (see :func:`batched_applier`), they are pruned first, so that the
        decision reads the weights it would read group after group."""
        held = self._held
        if self._flush is None or not held:
            return
        if self._reads_through(group):
            if held.conflict(group) is not None or self._size_conflict(group):
                self._flush()
        elif any(held.touches(it.dep.space.owner) for it in group.items):
            self._flush()

    def decide(self, group, fn: Callable[[], Any]) -> Any:
        """``fn()`` (a decision about ``group``: a proposal, a choice of channels) as group-by-group pruning would
        make it: :meth:`before_decide`, then ``fn`` reading the model through the cuts still held (channel counts and
        weights as those cuts leave them, :mod:`~prune_explorer.importance.held`). If a read turns out not to be
        exact there, the held cuts are pruned and ``fn`` runs again on the cut model."""
        self.before_decide(group)
        held = self._held
        if self._flush is None or not held:
            return fn()
        try:
            with held.reading():
                return fn()
        except HeldConflict:
            self._flush()
        return fn()

    def _reads_through(self, group) -> bool:
        """Whether ``group`` may be decided through held cuts: a plain graph group, scored by a criterion that reads
        only its channels' weights (:func:`~prune_explorer.importance.held.reads_channel_parts_only`) through the
        pruner's own ``estimate_importance``."""
        if not _graph_group(group):
            return False
        pruner = self.pruner
        if type(pruner).estimate_importance is not _base_estimate():
            return False
        return reads_channel_parts_only(getattr(pruner, "importance", None))

    def _size_conflict(self, group) -> bool:
        """A member with held cuts whose decision rules read more than its channel count: a channel multiple
        (heads, GroupNorm groups) or a declared block (``num_heads``, ``in/out_channel_groups``)."""
        held = self._held
        options = getattr(self.pruner, "options", None)
        planner = self.pruner.planner
        declared = bool(options is not None and (options.out_channel_groups or options.in_channel_groups)) or bool(
            getattr(planner, "head_layers", None))
        layout = group.member_layout
        index = layout.space
        if not declared:  # only the members with a channel multiple (read once per graph version) matter
            index = index[planner.space_facts.read(index)[:, 1] > 1]
        spaces = self.graph.spaces
        return any(held.holds(spaces[k]) for k in index.tolist())

    def _cut_decided(self) -> None:
        """Prune the cuts a batched applier holds (the groups that follow are decided on the model they leave)."""
        if self._flush is not None:
            self._flush()

    def proposals(self, step: int, budgets, on_pruned=None) -> Iterator[Any]:
        """The pruner's :class:`~.proposal.Proposal` for each group of :meth:`groups` at ``step`` with the step's
        ``budgets``, each made right before it is yielded."""
        for group in self.groups():
            yield self.decide(group, lambda: self.propose(group, step, budgets, on_pruned=on_pruned))

    def propose(self, group, step: int, budgets, on_pruned=None):
        """The proposal for one group: the pruner's planner for the graph's groups; a group of an extra source that
        has a ``source`` with a ``proposal(group, step, on_pruned)`` method (depth groups) is proposed by it."""
        source = getattr(group, "source", None)
        if source is not None and hasattr(source, "proposal"):
            if isinstance(group, Proposal) or hasattr(group, "full_group"):
                group = group.full_group
            return source.proposal(group, step, on_pruned=on_pruned)
        depth = getattr(self.pruner, "depth", None)
        if depth is not None and depth.inside_removed(group):  # its layers no longer run: nothing to decide
            return depth.removed_block_proposal(group, step)
        return self.pruner.planner.proposal(group, step, budgets, on_pruned=on_pruned)

    # ---- pruning ---------------------------------------------------------------------------------------------------
    def prune(self, cut: Cut, idxs: Optional[Sequence[int]] = None):
        """Prune one cut atomically and return its record (None when it removes nothing). Also takes a proposal or
        group and ``idxs`` directly (``driver.prune(proposal, [0, 3])``)."""
        if not isinstance(cut, Cut):
            cut = Cut(cut, idxs)
        target, idxs = cut.target, cut.idxs
        if idxs is not None and len(idxs) == 0:
            record = None
        elif isinstance(target, Proposal) or getattr(type(target), "own_bookkeeping", False):
            # a pruner's proposal (or an extra source's, e.g. a depth proposal): its own bookkeeping runs
            record = target.prune(idxs=None if idxs is None else list(idxs))
        else:
            record = target.select(list(idxs)).prune() if idxs is not None else target.prune()
        cut.record = record
        return record

    def apply(self, cuts: Iterable[Cut], *, applier: Optional[Callable] = None, check: Optional[bool] = None,
              on_error: str = ROLLBACK,
              on_pruned: Optional[Callable[[Cut], None]] = None,
              refused: Optional[Callable[[Cut, PruningError], None]] = None,
              on_abort: Optional[Callable[[BaseException], None]] = None,
              verify: Optional[Callable[[], None]] = None, what: str = "pruning step") -> Applied:
        """Prune ``cuts`` (an iterable of :class:`Cut`, possibly a generator) inside one undo scope, then run the
        post-prune check over them and repair (see the module docstring). Returns :class:`Applied`.

        Args:
            applier: the strategy for this call (default :attr:`applier`), e.g. :func:`batched_applier`.
            check: run the post-prune check (default: the pruner's ``post_prune_check``).
            on_error: what a failure part-way leaves: :data:`ROLLBACK`, :data:`KEEP` or :data:`KEEP_ON_INTERRUPT`.
            on_pruned: ``on_pruned(cut)`` after each cut is pruned (``cut.record`` set; None for an empty cut).
                With it, a cut is pruned and accounted for whole or not at all: a failure (an interrupt) after a
                pruning and before its ``on_pruned`` returned undoes that pruning first.
            refused: ``refused(cut, error)`` for a cut a layer refuses (nothing pruned); the walk goes on. Without
                it the error propagates.
            on_abort: ``on_abort(exc)`` when a failure stops the call, before anything is rolled back or checked.
            verify: called last, inside the scope; if it raises, everything is handled per ``on_error``.
            what: how the post-prune check's warning names the operation (``"pruning step"``, ``"accept"``).
        """
        if on_error not in _POLICIES:
            raise ValueError(f"on_error must be one of {_POLICIES}, got {on_error!r}")
        graph = self.graph
        if check is None:
            check = bool(self.pruner.post_prune_check)
        applied = Applied()
        start = len(graph.history)

        accounted = [start]  # the history's length when the last cut was accounted for

        def account(cut: Cut) -> None:
            applied.cuts.append(cut)
            if on_pruned is not None:
                on_pruned(cut)
            accounted[0] = len(graph.history)

        checked = False
        with gc_paused(), graph.undoable():  # the collector's full passes over torch's heap: off for the batch
            try:
                try:
                    (applier or self.applier)(self, cuts, account, refused)
                except BaseException:
                    if on_pruned is not None:  # pruned but not accounted for (an interrupt in between): undone
                        self._undo_after(accounted[0], applied)
                    raise
                self._checked(applied, start, check, what)
                checked = True
                if applied.records:
                    for hook in self.after_apply:
                        hook(self, applied)
                if verify is not None:
                    verify()
            except BaseException as exc:
                if on_abort is not None:
                    on_abort(exc)
                if on_error == ROLLBACK or (on_error == KEEP_ON_INTERRUPT and isinstance(exc, Exception)):
                    self.undo_since(start)
                    for cut in applied.cuts:
                        cut.record = None
                elif not checked:
                    self._checked(applied, start, check, what)
                raise
        return applied

    def _undo_after(self, n: int, applied: Applied) -> None:
        graph = self.graph
        while len(graph.history) > n:
            rec = graph.history[-1]
            graph.undo(rec)
            for cut in applied.cuts:
                if cut.record is rec:
                    cut.record = None

    def _checked(self, applied: Applied, start: int, check: bool, what: str) -> None:
        """The post-prune check of the records since history entry ``start``, its repair applied to the cuts."""
        if not check:
            return
        repair = self.check(self.graph.history[start:], what)
        if repair is None:
            return
        applied.repair = repair
        for cut in applied.cuts:
            if cut.record is None:
                continue
            if cut.part is not None and id(cut.record) in repair.split:  # a batch split into its groups
                cut.record, cut.part = repair.split[id(cut.record)][cut.part], None
            now = repair.current(cut.record)
            if now is None:
                cut.rolled_back = next(e for r, e in repair.rolled_back if r is cut.record)
            cut.record = now

    def check(self, records: Sequence[Any], what: str = "pruning step") -> Optional[Repair]:
        """The post-prune check of ``records`` (the newest entries of the graph's history): None when the model runs;
        otherwise the groups that break it are rolled back exactly (:meth:`~.post_check.PostPruneCheck.repair`),
        the pruner records them (``pruner.apply_repair``), one warning says so, and the :class:`Repair` is
        returned. The only caller of the check and the repair in the library."""
        records = list(records)
        if not records:
            return None
        checker = self.pruner.check
        error = checker.error()
        if error is None:
            return None
        records, split = self._split_batches(records)  # the search rolls back single groups
        repair = checker.repair(records, error)
        repair.split = split
        self.pruner.apply_repair(repair)
        warn_rolled_back(repair, what)
        return repair

    def _split_batches(self, records: List[Any]):
        """``records`` (the newest of the history) with every batched cut (``DG.prune_groups``) turned into one
        record per group (same channels, same model), and ``{id(batch record): [its groups' records]}``."""
        split: dict = {}
        if all(getattr(rec, "parts", None) is None for rec in records):
            return records, split
        graph = self.graph
        for rec in reversed(records):
            graph.undo(rec)
        out = []
        for rec in records:
            new = graph.redo(rec)
            if rec.parts is None:
                self.pruner.record_replaced(rec, new)
                out.append(new)
                continue
            parts = graph.split_record(new)
            self.pruner.record_split(rec, parts)
            split[id(rec)] = parts
            out.extend(parts)
        return out, split

    def undo_since(self, start: int) -> None:
        """Undo every pruning after history entry ``start``, newest first."""
        graph = self.graph
        for rec in reversed(graph.history[start:]):
            graph.undo(rec)

    @contextlib.contextmanager
    def trial(self, cuts: Iterable[Cut]) -> Iterator[Applied]:
        """``with driver.trial(cuts) as applied:`` the cuts are pruned (no post-prune check) for the body to measure
        the model, then undone exactly whatever happens (errors and interrupts included)."""
        graph = self.graph
        start = len(graph.history)
        with graph.undoable():
            try:
                yield self.apply(cuts, check=False, on_error=ROLLBACK)
            finally:
                self.undo_since(start)

    # ---- the undo scope --------------------------------------------------------------------------------------------
    def undo_scope(self, keep: bool = True):
        """``with driver.undo_scope():`` every pruning inside stays undoable (the graph's ``undoable()``)."""
        return self.graph.undoable(keep)

    def keep_every_record(self) -> None:
        """Keep every pruning of this graph undoable from now on (the explorer undoes any accepted group): the
        replaced tensors of every record stay in memory."""
        self.graph.undo_depth = 1 << 30
