"""What the explorer shows, as plain dicts and lists: header figures, the group card, its predicted effect, the
ratio curves, the uniform-pruning sweep and the prunable layers.

Parameters are exact (from the members' weight shapes); MACs follow
:class:`~prune_explorer.measure.structure.ModelStructure` (exact for convolutions, linear layers and norms); the
sweep is computed from the group structure (:mod:`prune_explorer.measure.sweep`), without tracing or pruning.
Figures of the current state are cached until the next change.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..depth.blocks import DEPTH_KIND

from ..graph import DEFAULT_ROOT_TYPES
from ..graph.model.channel_space import SIDE_OUT
from ..measure.sweep import SweepResult, uniform_sweep
from ..graph.model.group import HEADS_KIND
from ..validation import check_ratios
from .session import ExplorerError, check_explorer_ratio

__all__ = ["Figures", "DEFAULT_SWEEP_RATIOS"]

DEFAULT_SWEEP_RATIOS = tuple(round(0.1 * i, 1) for i in range(10))  # 0.0 .. 0.9


def _threshold(candidates: List[int], importance: List[float], selected: set) -> Optional[float]:
    """An importance between the highest removed and the lowest kept score (finite scores only)."""
    imp = np.asarray(importance, dtype=float)
    sel = np.isin(np.asarray(candidates, dtype=np.int64), np.fromiter(selected, dtype=np.int64, count=len(selected)))
    ok = np.isfinite(imp)
    removed, kept = imp[ok & sel], imp[ok & ~sel]
    if removed.size and kept.size:
        return (float(removed.max()) + float(kept.min())) / 2.0
    return float(removed.max()) if removed.size else None


def _head_bars(group, candidates: List[int], importance: List[float], selected: set,
               blocks=()) -> Optional[List[dict]]:
    """For a group of whole attention heads (``kind == "attention-heads"``: a unit is one head, or under grouped-query
    attention one key/value head with its query heads): one entry per unit, ``{"head", "channels", "score" (mean
    importance of its channels), "removed", "query_heads" (query heads in the unit: 1 without grouped-query
    attention)}``; None for channel groups and head-size groups (``"attention-dims"``, whose units are channel
    positions across heads), shown channel by channel. ``blocks``: the graph's attention blocks (their head counts)."""
    if getattr(group, "kind", None) != HEADS_KIND or not group.units:
        return None
    block = next((b for b in blocks if group.root_name in b.layers), None)
    per_unit = max(1, block.num_heads // max(1, block.num_key_value_heads)) if block is not None else 1
    score = dict(zip(candidates, importance))
    out = []
    for k, unit in enumerate(group.units):
        vals = [score[i] for i in unit if i in score and math.isfinite(score[i])]
        out.append({"head": k, "channels": len(unit), "score": float(np.mean(vals)) if vals else float("nan"),
                    "removed": bool(unit) and all(int(i) in selected for i in unit), "query_heads": per_unit})
    return out


class Figures:
    """The figures (see the module docstring; a part of :class:`~.controller.ExplorerController`,
    ``controller.measures``). Reads the session and the walk, changes neither.

    Args:
        session: the :class:`~.session.Session`; walk: the :class:`~.walk.Walk`; events: the
            :class:`~.status.StatusLine` (progress of the sweep).
    """

    def __init__(self, session, walk, events):
        self.s = session
        self.w = walk
        self.events = events
        self.sweep_result: Optional[SweepResult] = None  # the last uniform sweep (None after a rebuild)
        self._cache: Dict[tuple, Any] = {}  # figures of the current state, cleared on every change

    def clear(self, sweep: bool = False) -> None:
        """Forget the cached figures (after every change), and the sweep too when ``sweep`` (a new pruner)."""
        self._cache.clear()
        if sweep:
            self.sweep_result = None

    def figures(self) -> dict:
        """Header figures: parameters and MACs (original, now, % removed), groups done / skipped / left, ratio."""
        p_now, m_now = self.s.params_now(), self.s.macs_now()
        counts = {a: sum(d.action == a for d in self.w.decisions) for a in ("accept", "skip", "guard")}
        done = sum(counts.values())
        return {
            "params_original": self.s.params0,
            "params_now": p_now,
            "params_removed": 1.0 - p_now / self.s.params0 if self.s.params0 else 0.0,
            "macs_original": self.s.macs0,
            "macs_now": None if m_now is None else int(round(m_now)),
            "macs_removed": (1.0 - m_now / self.s.macs0) if (self.s.macs0 and m_now is not None) else None,
            "groups_accepted": counts["accept"],
            "groups_skipped": counts["skip"],
            "groups_guard_skipped": counts["guard"],
            "groups_done": done,
            "groups_left": self.w.n_groups_left,
            "groups_total": done + self.w.n_groups_left,
            "pruning_ratio": self.s.pruning_ratio,
            "channels_removed": self.s.layout.channels_removed_fraction(),
            "current_ratio": self.current_ratio(),
            "finished": self.w.current is None,
        }

    def current_ratio(self) -> Optional[float]:
        """Channel ratio of the current selection: channels to remove / root channels of the current group."""
        if self.w.current is None:
            return None
        n = self.w.current.root_space.current_size
        return len(self.w.current_idxs) / n if n else 0.0

    # ---- the current group ----------------------------------------------------------------------------------------
    def predict(self, idxs: Optional[Sequence[int]] = None) -> dict:
        """Predicted change if the current group is accepted with ``idxs`` (default: the current selection):
        every member's channels before and after and the parameters it loses, and the totals (parameters exact,
        MACs from the structure's laws; ``*_pct`` relative to the model now). Nothing is pruned."""
        self.w.require_current("predict")
        idxs = list(self.w.current_idxs if idxs is None else idxs)
        key = ("predict", self.s.DG.version, tuple(idxs))  # with the group itself in the entry: ids can be reused
        cached = self._cache.get(key)
        if cached is not None and cached[0] is self.w.current:
            return cached[1]
        g = self.w.current
        if getattr(g, "kind", None) == DEPTH_KIND:
            out = self._predict_depth(g, bool(idxs))
            self._cache[key] = (g, out)
            return out
        by_space = {it.dep.space.index: it for it in (g.select(idxs).items if idxs else [])}
        removed: Dict[int, int] = {}
        for it in g.items:
            s = it.dep.space
            here = len(by_space[s.index].idxs) if s.index in by_space else 0
            if here:
                removed[s.index] = removed.get(s.index, 0) + here
        p_removed, m_removed, per_space = self.s.structure.group_effect(removed) if removed else (0, 0.0, {})
        rows = []
        for it in g.items:
            s = it.dep.space
            rows.append({
                "name": it.dep.target.name,
                "type": it.dep.target.op,
                "side": "in=out" if s.passthrough else s.side,
                "channels_before": s.current_size,
                "channels_after": s.current_size - removed.get(s.index, 0),
                "params_removed": int(per_space.get(s.index, 0)),
                "is_root": s is g.root_space,
            })
        p_now, m_now = self.s.params_now(), self.s.macs_now()
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
        self._cache[key] = (g, out)
        return out

    def card(self) -> Optional[dict]:
        """Everything the group card shows about the current group (None when the walk is over)."""
        if self.w.current is None:
            return None
        g, proposal = self.w.current, self.w.proposal
        cand = self.w.candidates()
        imp = proposal.importance
        if imp is None:
            imp_list = [float("nan")] * len(cand)
        else:
            arr = imp.detach().float().reshape(-1).cpu().numpy() if isinstance(imp, torch.Tensor) else np.asarray(imp, dtype=np.float64)
            imp_list = [float(v) for v in arr]
        sel = set(self.w.current_idxs)
        prop = sorted(int(i) for i in proposal.proposed_idxs)
        guard_notes = []
        for d in reversed(self.w.decisions):
            if d.action != "guard":
                break
            guard_notes.append({"root": d.root, "reason": d.reason})
        return {
            "root": g.root_name,
            "root_label": g.root_space.label,
            "root_type": g.root.op,
            "position": len(self.w.decisions) + 1,
            "channels": g.root_space.current_size,
            "candidates": cand,
            "importance": imp_list,
            "selected": sorted(sel),
            "proposed": prop,
            "follows_proposal": sorted(sel) == prop,
            "threshold": _threshold(cand, imp_list, sel),
            "scope": None if proposal.scope is None else str(proposal.scope),
            "pruning_ratio": None if proposal.pruning_ratio is None else float(proposal.pruning_ratio),
            "n_units": len(g.units),
            "max_removable": self.w.max_removable(),
            "allowed_counts": self.w.allowed_counts(),
            "prediction": self.predict(),
            "guard_skipped": list(reversed(guard_notes)),
            "heads": _head_bars(g, cand, imp_list, sel,  # one entry per head (head groups), else None
                                self.s.DG.attention_blocks() if getattr(g, "kind", None) == HEADS_KIND else ()),
            "note": proposal.skip_reason,  # why the pruner proposes nothing (the user may still choose channels)
            "step": proposal.step,
            "kind": getattr(g, "kind", None) or "channels",
            "depth": self.depth_card(),  # a depth group: the block, its score, parameters and MACs (else None)
        }

    def _predict_depth(self, g, remove: bool) -> dict:
        """:meth:`predict` for a depth group: the whole block goes (its parameters and MACs as it is now)."""
        params, macs = int(g.num_params), g.macs
        p_removed = params if remove else 0
        m_removed = float(macs) if (remove and macs is not None) else 0.0
        p_now, m_now = self.s.params_now(), self.s.macs_now()
        rows = [{"name": g.root_name, "type": g.root.op, "side": "block", "channels_before": 1,
                 "channels_after": 0 if remove else 1, "params_removed": p_removed, "is_root": True}]
        return {
            "rows": rows, "n_removed": int(remove), "params_removed": p_removed, "params_after": p_now - p_removed,
            "params_removed_pct": p_removed / p_now if p_now else 0.0,
            "macs_removed": None if m_now is None else int(round(m_removed)),
            "macs_after": None if m_now is None else int(round(m_now - m_removed)),
            "macs_removed_pct": (m_removed / m_now) if m_now else None,
        }

    def depth_card(self) -> Optional[dict]:
        """What the card shows about a depth group on show (None for a width group): the block, its class, its
        score (block influence 1 - cos on the calibration data, or the pruner's depth_importance), its parameters
        and MACs now, and whether the pruner proposes to remove it."""
        g = self.w.current
        if g is None or getattr(g, "kind", None) != DEPTH_KIND:
            return None
        imp = self.w.proposal.importance
        return {"block": g.root_name, "type": g.root.op, "mode": g.block.mode,
                "score": None if imp is None else float(imp[0]),
                "score_name": "block influence (1 - cos)" if g.source.importance is None else "depth importance",
                "params": int(g.num_params), "macs": g.macs, "remove_proposed": bool(self.w.proposal.proposed_idxs),
                "layers": g.layer_names()}

    def guard_skipped(self) -> List[dict]:
        """Every group a guard of the pruner passed over, with its reason."""
        return [{"root": d.root, "reason": d.reason} for d in self.w.decisions if d.action == "guard"]

    # ---- curves -----------------------------------------------------------------------------------------------------
    def curves(self) -> dict:
        """Ratio-curve data: one point per accepted group plus the references and the sweep (when computed)."""
        xs, yp, names = [0.0], [0.0], ["(start)"]
        ym = [0.0] if self.s.macs0 else []
        for d in self.w.decisions:
            if d.action != "accept":
                continue
            xs.append(d.channels_removed)
            yp.append(1.0 - d.params_after / self.s.params0)
            if self.s.macs0:
                ym.append(1.0 - d.macs_after / self.s.macs0)
            names.append(d.root)
        ref_x = [i / 50 for i in range(51)]
        return {
            "points": {"channels_removed": xs, "params_removed": yp, "macs_removed": ym, "roots": names},
            "reference": {"p": ref_x, "quadratic": [1 - (1 - p) ** 2 for p in ref_x], "linear": list(ref_x)},
            "sweep": None if self.sweep_result is None else self.sweep_result.as_dict(),
        }

    def sweep(self, ratios: Sequence[float] = DEFAULT_SWEEP_RATIOS) -> SweepResult:
        """Uniform pruning at each ratio (every group loses ``p`` of its channels, ``round_to`` and guards applied):
        the fractions of parameters and MACs removed, computed from the group structure without tracing again."""
        ratios = list(check_ratios("sweep ratios", dict(enumerate(ratios)), error=ExplorerError,
                                   meaning="the channel ratios of the uniform-pruning curve").values())
        self.events.report("sweep", 0, len(ratios))
        self.sweep_result = uniform_sweep(self.s.structure, self.s.layout, ratios, round_to=self.s.round_to,
                                          max_ratio=self.s.max_ratio,
                                          progress=lambda i, n: self.events.report("sweep", i, n))
        return self.sweep_result

    def reachable_reduction(self, ignored_layers=None, ratio: Optional[float] = None) -> dict:
        """Fraction of parameters (and MACs) uniform pruning at ``ratio`` would remove with these ignored layers."""
        names = self.s.ignored_names if ignored_layers is None else self.s.resolve_layers(ignored_layers)
        ratio = self.s.pruning_ratio if ratio is None else check_explorer_ratio(ratio, "ratio")
        key = ("reach", tuple(sorted(names)), ratio)
        if key in self._cache:
            return self._cache[key]
        layout = self.s.layout if names == self.s.ignored_names else self.s.make_layout(names)
        res = uniform_sweep(self.s.structure, layout, [ratio], round_to=self.s.round_to, max_ratio=self.s.max_ratio)
        out = {"ratio": ratio, "params_removed": res.params_removed[0], "macs_removed": res.macs_removed[0],
               "params": res.params[0], "ignored": list(names)}
        self._cache[key] = out
        return out

    # ---- layers -----------------------------------------------------------------------------------------------------
    def prunable_layers(self, details: bool = True) -> List[dict]:
        """Every layer that can root a group (conv, linear, ...), with its channels and whether it is ignored.
        ``details=False`` leaves out ``prunable_fraction`` and ``fixed_reason`` (they read the whole graph per layer:
        the lists that follow every decision do without them)."""
        root_types = tuple(self.s.root_module_types or DEFAULT_ROOT_TYPES)
        out, seen = [], set()
        for s in self.s.DG.spaces:
            if s.side != SIDE_OUT or not isinstance(s.owner, root_types) or id(s.owner) in seen:
                continue
            seen.add(id(s.owner))
            name = self.s.name_of(s.owner, s.name)
            d = {"name": name, "type": type(s.owner).__name__, "channels": s.current_size,
                 "original_channels": s.size, "ignored": name in self.s.ignored_names}
            if details:
                d["prunable_fraction"] = self.s.DG.prunable_fraction(s.owner)
                d["fixed_reason"] = self.s.DG.fixed_reason(s.owner)
            out.append(d)
        return out

    def groups_of(self, layer) -> List[dict]:
        """The groups (of the walk) that touch ``layer``: their root, the members' side and channel count."""
        module = self.s.modules[self.s.resolve_layer(layer)]
        res = []
        for g in self.w.groups():
            hit = [it for it in g.items if it.dep.layer is module]
            if hit:
                res.append({
                    "root": g.root_name, "members": len(g.items), "channels": g.root_space.current_size,
                    "sides": sorted({"in=out" if it.dep.space.passthrough else it.dep.space.side for it in hit}),
                    "is_current": self.w.current is not None and g.root_name == self.w.current.root_name,
                    "decision": next((d.action for d in self.w.decisions if d.root == g.root_name), None),
                })
        return res
