"""How a pruner makes the :class:`~.proposal.Proposal` for one group at one step.

For a group (of the dependency graph, or an attention-head group of :mod:`prune_explorer.attention.proposals`) the :class:`Planner`

1. refuses it when a guard says so (:func:`~.guards.guard_refusal`), or when it would change the head size of
   layers declared in ``num_heads`` while ``prune_head_dims=False``;
2. scores it (``pruner.estimate_importance``; ``None``: skipped);
3. sets the target: a local scope removes ``current - int(initial * (1 - ratio))`` root channels; a shared scope
   (global, isomorphic, a tuple key of ``pruning_ratio_dict``) ranked all its groups once per step
   (:meth:`Planner.budgets`, :func:`~.scope.rank_scope`) and gives each its share; an attention group removes
   whole heads at ``head_pruning_ratio`` (:meth:`Planner.head_ratio`), or head dims at ``pruning_ratio``;
4. proposes the lowest-scored whole units (:mod:`.units`) whose count keeps ``round_to``, each member's channel
   multiple and the guards satisfied (rounded down, or the nearest feasible count when rounding down removes
   nothing: :func:`~.guards.chosen_prefix`).

Every refusal is a proposal with nothing proposed and a ``skip_kind`` / ``skip_reason``: the step records it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch

from ..errors import PruneExplorerError
from . import guards as G
from ..graph.model.explicit import ExplicitGroup
from ..graph.model.group import DIMS_KIND, HEADS_KIND
from .member_facts import MemberFacts, SpaceFacts
from .proposal import Proposal
from .scope import LOCAL, ScopeRules, rank_scope
from .units import RankedUnits, member_constraints, ranked_units, tied_units

__all__ = ["Planner"]


class Planner:
    """Makes proposals for a pruner (see the module docstring).

    Args:
        options: the pruner's :class:`~.config.PrunerOptions` (read live).
        graph: the pruner's ``DependencyGraph``.
        initial_sizes: channel space index -> channels when the pruner was built.
        scopes: the pruner's :class:`~.scope.ScopeRules`.
        head_layers: ``{id(layer): heads}`` of the other layers declared in ``num_heads``.
        estimate_importance: ``group -> scores or None`` (the pruner's checked criterion).
        graph_groups: ``() -> iterable of the graph's groups a step visits``.
        check_failed: root space index -> why the post-prune check rolled that group back (it is left alone).
    """

    def __init__(self, options, graph, initial_sizes: Dict[int, int], scopes: ScopeRules,
                 head_layers: Dict[int, int],
                 estimate_importance: Callable, graph_groups: Callable[[], Iterable],
                 check_failed: Optional[Dict[int, str]] = None):
        self.options = options
        self.graph = graph
        self.initial_sizes = initial_sizes
        self.scopes = scopes
        self.head_layers = head_layers
        self.estimate_importance = estimate_importance
        self.graph_groups = graph_groups
        self.check_failed = {} if check_failed is None else check_failed
        self._importance_cache: Dict[int, tuple] = {}  # root space index -> (signature, scores) of the ranking pass
        self.initial_units: Dict[int, int] = {}  # root space index of a whole-head group -> its heads at first
        self._budget_cache = None  # ((step, graph version), budgets)
        self._space_facts: Optional[SpaceFacts] = None

    @property
    def space_facts(self) -> SpaceFacts:
        """The channel spaces' initial counts, counts and multiples (:class:`~.member_facts.SpaceFacts`)."""
        if self._space_facts is None:
            self._space_facts = SpaceFacts(self.graph, self.initial_sizes)
        return self._space_facts

    def members(self, group) -> MemberFacts:
        """``group``'s members as arrays (:mod:`.member_facts`), as the model and the held cuts are now."""
        return self.space_facts.members(group)

    # ---- pieces --------------------------------------------------------------------------------------------------
    def refusal(self, group, members: Optional[MemberFacts] = None) -> Optional[str]:
        failed = self.check_failed.get(group.root_space.index) if self.check_failed else None
        if failed is not None:
            return f"left alone since a post-prune check: {failed}"
        return G.guard_refusal(group, self.initial_sizes, self.options.max_pruning_ratio,
                               self.members(group) if members is None else members)

    def keeps_head_size(self, group) -> bool:
        """Whether ``prune_head_dims=False`` forbids this graph group (it touches a declared head layer)."""
        return (not self.options.prune_head_dims and bool(self.head_layers)
                and any(id(it.dep.layer) in self.head_layers for it in group.items))

    def units_of(self, group, members: Optional[MemberFacts] = None) -> List[List[int]]:
        if isinstance(group, ExplicitGroup):
            return group.units
        o = self.options
        if not (o.out_channel_groups or o.in_channel_groups or self.head_layers):
            return group.units  # nothing declared (tied_units would return them)
        return tied_units(group, o.out_channel_groups, o.in_channel_groups, self.head_layers,
                          self.members(group) if members is None else members)

    def limits(self, group) -> Tuple[int, int, Optional[int]]:
        return G.root_limits(group, self.initial_sizes, self.options.max_pruning_ratio, self.options.round_to,
                             keep_one_unit=isinstance(group, ExplicitGroup))

    def prefixes(self, group, ranking: RankedUnits, members: Optional[MemberFacts] = None,
                 limits: Optional[Tuple[int, int, Optional[int]]] = None) -> G.Prefixes:
        """Which prefixes of ``ranking`` (the group's :class:`~.units.RankedUnits`) the root's limits (``limits``:
        :meth:`limits`, read when not given), ``round_to`` and the member constraints allow."""
        cur, min_keep, round_to = self.limits(group) if limits is None else limits
        constraints = member_constraints(group, ranking, self.members(group) if members is None else members)
        return G.Prefixes(None if ranking.singles else ranking.sizes, ranking.order.size, cur, min_keep, round_to,
                          constraints)

    def importance(self, group, store: bool = False, members: Optional[MemberFacts] = None):
        """``estimate_importance``, reusing the score of the ranking pass while the group's members are unchanged
        (the same spaces, channel counts and channels: :meth:`MemberFacts.signature <.member_facts.MemberFacts.
        signature>`)."""
        key = group.root_space.index
        cached = self._importance_cache.get(key) if not isinstance(group, ExplicitGroup) else None
        sig = None
        if store or cached is not None:
            sig = (self.members(group) if members is None else members).signature()
        if cached is not None and cached[0] == sig:
            return cached[1]
        imp = self.estimate_importance(group)
        if store:
            self._importance_cache[key] = (sig, imp)
        return imp

    # ---- public questions (a Proposal stands for its whole group and brings its scores) ---------------------------
    @staticmethod
    def _whole(group):
        if isinstance(group, Proposal):
            return group.group, group.importance
        return group, None

    def max_removable(self, group) -> int:
        group, imp = self._whole(group)
        members = self.members(group)
        if self.refusal(group, members) is not None:
            return 0
        return self.prefixes(group, ranked_units(group, imp, self.units_of(group, members)), members).max_removable

    def choose(self, group, n_remove: int) -> List[int]:
        group, imp = self._whole(group)
        members = self.members(group)
        if self.refusal(group, members) is not None or n_remove <= 0:
            return []
        if imp is None:
            imp = self.estimate_importance(group)
        ranking = ranked_units(group, imp, self.units_of(group, members))
        prefixes = self.prefixes(group, ranking, members)
        return ranking.first_roots(prefixes.removed(prefixes.down(int(n_remove))))

    # ---- the proposal ----------------------------------------------------------------------------------------------
    def proposal(self, group, step: int, budgets: Dict[int, int], on_pruned=None) -> Proposal:
        """The proposal for ``group`` (a graph / attention group, or a proposal standing for its group) at ``step``;
        ``budgets``: the shares of shared scopes (:meth:`budgets`)."""
        full = group.group if isinstance(group, Proposal) else group
        made = dict(step=step, scope=None, pruning_ratio=0.0, on_pruned=on_pruned)

        def skip(kind: str, reason: str) -> Proposal:
            return Proposal(full, skip_kind=kind, skip_reason=reason, **made)

        kind = getattr(full, "kind", None)
        n_target = None
        if isinstance(full, ExplicitGroup) and kind == DIMS_KIND:
            # head dims of the heads left (whole heads went first): pruning_ratio of the initial head size
            made["scope"], made["pruning_ratio"] = self.scopes.scope(full, step)
            if not made["scope"].startswith(LOCAL + ":"):
                made["scope"] = f"{LOCAL}:{full.root_name}"
            ratio = made["pruning_ratio"]
            units = full.units
            d0, d1 = getattr(full, "head_dims", (None, None))
            if units and d0 and d1:  # a unit is one dim of every head (a pair of dims with rotary embeddings)
                per = max(1, d1 // len(units))
                n_units = len(units) - int(d0 * (1 - ratio)) // per
            else:
                n_units = 0
            n_target = max(0, n_units) * (len(units[0]) if units else 0)
        elif kind == HEADS_KIND:
            if not self.options.prune_num_heads:
                return skip(G.HEADS, "prune_num_heads=False: these attention channels can only lose whole heads (the "
                                     "model writes the head size as a literal)")
            made["scope"], made["pruning_ratio"] = f"{LOCAL}:{full.root_name}", self.head_ratio(full, step)
            units = full.units
            init = self.initial_units.get(full.root_space.index, len(units))
            n_target = max(0, len(units) - int(init * (1 - made["pruning_ratio"]))) * (len(units[0]) if units else 0)
        elif kind == DIMS_KIND and not self.options.prune_head_dims:
            return skip(G.HEADS, "prune_head_dims=False keeps the head size of attention layers" +
                        ("" if not self.options.prune_num_heads else
                         " (and the model writes the head count as a literal, so no whole head can leave)"))
        else:
            if self.keeps_head_size(full):
                return skip(G.HEADS, "prune_head_dims=False keeps the head size of declared attention layers")
            made["scope"], made["pruning_ratio"] = self.scopes.scope(full, step)
        members = self.members(full)  # every member's channel counts, initial counts and multiples, read once
        reason = self.refusal(full, members)
        if reason is not None:
            return skip(G.CHECK if full.root_space.index in self.check_failed else G.GUARD, reason)
        imp = self.importance(full, members=members)
        if imp is None:
            return skip(G.IMPORTANCE, f"{type(self.options.importance).__name__} returned None for this group "
                                      "(it cannot score it)")
        units = self.units_of(full, members)
        cur, min_keep, round_to = self.limits(full)
        ranking = ranked_units(full, imp, units)  # the units in rank order, as arrays
        prefixes = self.prefixes(full, ranking, members, (cur, min_keep, round_to))
        scope, ratio = made["scope"], made["pruning_ratio"]
        if n_target is None:
            if scope.startswith(LOCAL + ":"):
                s = full.root_space
                n_target = s.current_size - int(self.initial_sizes.get(s.index, s.size) * (1 - ratio))
            else:
                n_target = budgets.get(full.root_space.index, 0)
        n_target = max(0, int(n_target))
        made.update(importance=imp, prune_units=units, max_removable=prefixes.max_removable, n_target=n_target)
        if n_target <= 0:
            return skip(G.TARGET, f"nothing to remove at step {step}: the target ratio {ratio:.3f} is already "
                                  f"reached in scope {scope}")
        if round_to and round_to > 1:  # the channels kept round *up* to a multiple (Torch-Pruning): remove fewer
            kept_up = -(-(cur - n_target) // round_to) * round_to
            if cur - kept_up <= 0:
                return skip(G.CONSTRAINT, f"round_to={round_to}: removing {n_target} of {cur} channels would keep "
                                          f"{cur - n_target}, which rounds up to {kept_up}: nothing to remove at "
                                          f"step {step}")
            n_target = cur - kept_up
        # the root channels of the chosen prefix of units
        proposed = ranking.first_roots(prefixes.removed(prefixes.choose(n_target)))
        if not proposed:
            near = prefixes.next_after_none()
            return skip(G.CONSTRAINT, (
                f"the target asks for {n_target} channels, but the nearest removal that keeps the constraints "
                + (f"is {near} channels, farther from the target than removing none " if near else "removes none ")
                + f"(units of {sorted({len(u) for u in units})} channels, round_to={self.options.round_to}, member "
                f"multiples, at least {min_keep} channel(s) kept)"))
        return Proposal(full, proposed_idxs=proposed, **made)

    # ---- shared scopes --------------------------------------------------------------------------------------------
    def budgets(self, step: int, cached: bool = False) -> Dict[int, int]:
        """For groups in shared scopes: root space index -> root channels to remove at ``step``."""
        if not self.scopes.any_shared:
            return {}
        key = (step, self.graph.version)
        if cached and self._budget_cache is not None and self._budget_cache[0] == key:
            return self._budget_cache[1]
        self._importance_cache = {}
        members = defaultdict(list)  # scope -> [(group, current, initial, (unit scores, unit sizes, cap) or None)]
        ratios = {}
        for group in self.graph_groups():
            scope, ratio = self.scopes.scope(group, step)
            if scope.startswith(LOCAL + ":"):
                continue
            ratios[scope] = ratio
            s = group.root_space
            ranking = None
            kind = getattr(group, "kind", None)
            if kind == HEADS_KIND or (kind == DIMS_KIND and not self.options.prune_head_dims):
                continue  # whole heads are ranked block by block, with head_pruning_ratio
            facts = self.members(group)
            if self.refusal(group, facts) is None and not self.keeps_head_size(group):
                imp = self.importance(group, store=True, members=facts)
                if imp is not None:
                    ranked = ranked_units(group, imp, self.units_of(group, facts))
                    cap = self.prefixes(group, ranked, facts).max_removable
                    ranking = (ranked.scores, torch.from_numpy(ranked.sizes), cap)
            members[scope].append((group, s.current_size, self.initial_sizes.get(s.index, s.size), ranking))
        budgets: Dict[int, int] = {}
        for scope, entries in members.items():
            n_total = sum(e[1] for e in entries) - int(sum(e[2] for e in entries) * (1 - ratios[scope]))
            ranked = [(e[0].root_space.index, *e[3]) for e in entries if e[3] is not None]
            for (idx, *_), n in zip(ranked, rank_scope(ranked, n_total)):
                budgets[idx] = n
        self._budget_cache = (key, budgets)
        return budgets

    # ---- attention ------------------------------------------------------------------------------------------------
    def head_ratio(self, group, step: int) -> float:
        """The cumulative fraction of heads an ``attention-heads`` group loses by ``step``: ``head_pruning_ratio``,
        or the ``head_pruning_ratio_dict`` entry of one of its layers."""
        o = self.options
        for it in group.items:
            sched = o.head_schedules.get(id(it.dep.layer))
            if sched is not None:
                return sched[step]
        return o.per_step_head_pruning_ratio[step]
