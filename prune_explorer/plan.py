"""Pruning plans: a named, JSON-able record of how many channels each group loses, applied to a model later.

A :class:`PruningPlan` holds one :class:`GroupDecision` per group, keyed by the group's root layer (its qualified
name, plus ``:<kind>`` for attention-head groups, see :func:`group_key`): how many *root channels* the group loses
(``remove``, out of ``channels``), or a fraction of them (``ratio``) resolved when the plan is applied. Which
channels go is decided at application time by an importance criterion on the real weights, so a plan made on one
copy of a model (or by a budget solver, or by hand) applies to any model of the same architecture.

Around the decisions a plan keeps what made it: ``target`` and ``kind`` (e.g. ``0.5`` of the ``"macs"``), the
importance's description, the pruner options it assumed (``round_to``, ``max_pruning_ratio``, ignored layers by
name...), ``source`` (e.g. the scan it came from), ``base`` (parameters / MACs of the unpruned model) and
``predicted`` (parameters / MACs / metric after pruning, when known).

Applying a plan (:func:`apply_plan`) builds a pruner with the plan's options and walks the pruner's groups in its
own order (attention blocks first, then the dependency graph's groups); for each group the plan names, the
pruner's :meth:`~prune_explorer.pruner.BasePruner.propose` picks the lowest-importance whole units so that exactly
``remove`` root channels go while ``round_to``, unit and head ties and the guards hold. Each group is planned on
the model as the earlier groups left it, as in ``pruner.step()``. Everything is atomic: if a group cannot lose
exactly its planned count, or the result does not have the parameter count the plan predicted, every group pruned
so far is undone and :class:`PlanError` is raised.

Example::

    >>> import torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> x = torch.randn(1, 3, 64, 64)
    >>> plan = pe.PruningPlan([pe.plan.GroupDecision("layer1.0.conv1", channels=64, remove=32)], name="demo")
    >>> _ = pe.apply_plan(model, plan, example_inputs=x)
    >>> model.layer1[0].conv1.out_channels
    32
    >>> pe.PruningPlan.from_json(plan.to_json()) == plan
    True
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import torch.nn as nn

from .errors import PruneExplorerError

__all__ = [
    "PruningPlan", "GroupDecision", "PlanError", "PlanProposal", "apply_plan", "prune_with_plan", "plan_proposals",
    "group_key", "options_to_names", "options_from_names", "FORMAT",
]

FORMAT = "prune_explorer.plan/1"

#: pruner options a plan records (JSON-able once modules are replaced by their qualified names)
JSON_OPTIONS = ("ignored_layers", "round_to", "max_pruning_ratio", "num_heads", "in_channel_groups",
                "out_channel_groups", "prune_num_heads", "prune_head_dims")
#: every pruner option :func:`options_to_names` accepts (the others are functions or types, kept as they are)
PRUNER_OPTIONS = JSON_OPTIONS + ("forward_fn", "output_transform", "customized_pruners", "unwrapped_parameters",
                                 "root_module_types", "head_pruning_ratio")


class PlanError(PruneExplorerError, ValueError):
    """A plan is malformed or does not fit the model; the model is left exactly as it was."""


def group_key(group) -> str:
    """The key of a group in a plan or a sensitivity table: its root layer's qualified name, with ``:in`` for a
    group rooted at a layer's inputs and ``:<kind>`` for an attention group (``"attn.q_proj:attention-heads"``).

    >>> import torch, torchvision, prune_explorer as pe
    >>> m = torchvision.models.resnet18()
    >>> DG = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 32, 32))
    >>> [group_key(g) for g in DG.get_all_groups()][:2]
    ['conv1', 'layer1.0.conv1']
    """
    kind = getattr(group, "kind", None)
    name = group.root_name or "<model>"
    if kind:
        return f"{name}:{kind}"
    side = group.root_space.side
    return name if side == "out" else f"{name}:{side}"


# ----------------------------------------------------------------------------------------------------------------------
# decisions and plans
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class GroupDecision:
    """What a plan does to one group.

    Attributes:
        key: the group's key (:func:`group_key`), e.g. ``"layer2.0.conv1"``.
        channels: root channels the group has before pruning (None when unknown, e.g. a hand-written ratio plan).
        remove: root channels to remove (an exact count), or None to use ``ratio``.
        ratio: fraction of the group's root channels to remove, used when ``remove`` is None (resolved at
            application time as the pruner does: ``channels - int(channels * (1 - ratio))``, rounded down to a
            feasible count).
        root, side, kind: the root layer's qualified name, ``"out"`` / ``"in"``, and ``"channels"`` or an
            attention kind (``"attention-heads"``, ``"attention-dims"``); derived from ``key`` when not given.
        extra: free-form JSON-able details (e.g. the predicted metric drop from a scan).
    """

    key: str
    channels: Optional[int] = None
    remove: Optional[int] = None
    ratio: Optional[float] = None
    root: Optional[str] = None
    side: str = "out"
    kind: str = "channels"
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.key, str) or not self.key:
            raise PlanError(f"a group decision needs a key (the root layer's qualified name), got {self.key!r}")
        if self.root is None:
            base, _, suffix = self.key.partition(":")
            self.root = base
            if suffix in ("in", "out"):
                self.side = suffix
            elif suffix:
                self.kind = suffix
        for name in ("channels", "remove"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise PlanError(f"{self.key}: {name}={v!r} must be an int >= 0 (root channels)")
        if self.remove is None and self.ratio is None:
            raise PlanError(f"{self.key}: give remove= (root channels to remove) or ratio= (a fraction in [0, 1))")
        if self.ratio is not None:
            r = self.ratio
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or not 0 <= r < 1:
                raise PlanError(f"{self.key}: ratio={r!r} must be a number in [0, 1)")
            self.ratio = float(r)
        if self.channels is not None and self.remove is not None and self.remove >= self.channels > 0:
            raise PlanError(f"{self.key}: remove={self.remove} would leave none of its {self.channels} channels")

    @property
    def keep(self) -> Optional[int]:
        """Root channels left after pruning (None when only a ratio is known and ``channels`` is not)."""
        n = self.count(self.channels) if self.channels is not None else None
        return None if n is None else self.channels - n

    @property
    def fraction(self) -> Optional[float]:
        """Fraction of the group's root channels removed (``remove / channels``, or ``ratio``)."""
        if self.remove is not None and self.channels:
            return self.remove / self.channels
        return self.ratio

    def count(self, current: int) -> int:
        """Root channels to remove from a group that has ``current`` channels now."""
        if self.remove is not None:
            return self.remove
        return current - int(current * (1 - self.ratio))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "GroupDecision":
        known = {k: d[k] for k in ("key", "channels", "remove", "ratio", "root", "side", "kind", "extra") if k in d}
        if "key" not in known:
            raise PlanError(f"a group decision needs a 'key', got {dict(d)!r:.120}")
        return cls(**known)


class PruningPlan:
    """A named, ordered set of :class:`GroupDecision` (see the module docstring).

    Args:
        decisions: the decisions, in the order of the pruner's groups (or any order: application follows the
            pruner's).
        name: a label, e.g. ``"uniform 0.5"`` or ``"sensitivity, 2x MACs"``.
        target, kind: the budget the plan was made for (a fraction of the original cost, and ``"params"``,
            ``"macs"`` or ``"latency"``), when any.
        importance: a description of the importance criterion the plan assumes (``repr`` of it).
        options: pruner options the plan assumes, JSON-able (modules as qualified names; see
            :func:`options_to_names`).
        source, base, predicted, metadata: free-form JSON-able dicts: where the plan came from, the unpruned
            model's figures (``{"params", "macs", "metric"}``) and the figures predicted after pruning.
    """

    def __init__(self, decisions: Iterable[Union[GroupDecision, Mapping]] = (), name: str = "plan",
                 target: Optional[float] = None, kind: Optional[str] = None, importance: Optional[str] = None,
                 options: Optional[Mapping] = None, source: Optional[Mapping] = None, base: Optional[Mapping] = None,
                 predicted: Optional[Mapping] = None, metadata: Optional[Mapping] = None):
        if not isinstance(name, str):
            raise PlanError(f"a plan's name must be a string, got {name!r}")
        self.name = name
        self.decisions: List[GroupDecision] = []
        self._by_key: Dict[str, GroupDecision] = {}
        for d in decisions:
            self.add(d)
        self.target = None if target is None else float(target)
        self.kind = kind
        self.importance = importance
        self.options = dict(options or {})
        self.source = dict(source or {})
        self.base = dict(base or {})
        self.predicted = dict(predicted or {})
        self.metadata = dict(metadata or {})

    # ---- container -------------------------------------------------------------------------------------------
    def add(self, decision: Union[GroupDecision, Mapping]) -> GroupDecision:
        """Append a decision (a :class:`GroupDecision` or its dict); a key may appear once."""
        d = decision if isinstance(decision, GroupDecision) else GroupDecision.from_dict(decision)
        if d.key in self._by_key:
            raise PlanError(f"the plan already has a decision for {d.key}; each group appears once")
        self.decisions.append(d)
        self._by_key[d.key] = d
        return d

    def __getitem__(self, key: str) -> GroupDecision:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"no decision for {key!r} in plan {self.name!r}; keys: {list(self._by_key)[:8]}") from None

    def get(self, key: str, default=None) -> Optional[GroupDecision]:
        return self._by_key.get(key, default)

    def __contains__(self, key) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[GroupDecision]:
        return iter(self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)

    def keys(self) -> List[str]:
        return [d.key for d in self.decisions]

    def widths(self) -> Dict[str, Optional[int]]:
        """``{key: root channels kept}`` (None where only a ratio is known)."""
        return {d.key: d.keep for d in self.decisions}

    def renamed(self, name: str) -> "PruningPlan":
        """A copy of the plan under another name."""
        other = PruningPlan.from_dict(self.as_dict())
        other.name = name
        return other

    def __eq__(self, other) -> bool:
        return isinstance(other, PruningPlan) and self.as_dict() == other.as_dict()

    # ---- serialisation ---------------------------------------------------------------------------------------
    def as_dict(self) -> dict:
        return {
            "format": FORMAT, "name": self.name, "target": self.target, "kind": self.kind,
            "importance": self.importance, "options": copy.deepcopy(self.options), "source": copy.deepcopy(self.source),
            "base": copy.deepcopy(self.base), "predicted": copy.deepcopy(self.predicted),
            "metadata": copy.deepcopy(self.metadata), "groups": [d.as_dict() for d in self.decisions],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "PruningPlan":
        if not isinstance(d, Mapping) or d.get("format", FORMAT) != FORMAT or not isinstance(d.get("groups", []), list):
            raise PlanError(f"not a pruning plan (expected a dict with format {FORMAT!r} and a 'groups' list)")
        return cls([GroupDecision.from_dict(g) for g in d.get("groups", [])], name=d.get("name", "plan"),
                   target=d.get("target"), kind=d.get("kind"), importance=d.get("importance"),
                   options=d.get("options"), source=d.get("source"), base=d.get("base"),
                   predicted=d.get("predicted"), metadata=d.get("metadata"))

    def to_json(self, indent: Optional[int] = None) -> str:
        try:
            return json.dumps(self.as_dict(), indent=indent, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PlanError(f"plan {self.name!r} holds a value JSON cannot store ({exc}); keep source/metadata/extra "
                            "to plain numbers, strings, lists and dicts") from None

    @classmethod
    def from_json(cls, text: str) -> "PruningPlan":
        return cls.from_dict(json.loads(text))

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the plan as JSON."""
        text = self.to_json(indent=1)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "PruningPlan":
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    # ---- printing --------------------------------------------------------------------------------------------
    def summary(self) -> str:
        head = f"PruningPlan {self.name!r}: {len(self)} groups"
        if self.target is not None:
            head += f", target {self.target:g} of the {self.kind or 'cost'}"
        pred = []
        for k in ("params", "macs"):
            if k in self.predicted and self.base.get(k):
                pred.append(f"{k} {self.predicted[k] / self.base[k]:.1%} of original")
        if "metric" in self.predicted:
            pred.append(f"metric ~{self.predicted['metric']:.4g}")
        if pred:
            head += " (" + ", ".join(pred) + ")"
        rows = [("group", "channels", "remove", "keep")]
        for d in self.decisions:
            rem = str(d.remove) if d.remove is not None else f"{d.ratio:.0%}"
            rows.append((d.key, "?" if d.channels is None else str(d.channels), rem,
                         "?" if d.keep is None else str(d.keep)))
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [head] + ["  " + "  ".join(v.ljust(w[i]) if i == 0 else v.rjust(w[i]) for i, v in enumerate(r))
                          for r in rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(self.summary()) + "</pre>"


# ----------------------------------------------------------------------------------------------------------------------
# pruner options by name (so they cross process boundaries and JSON files)
# ----------------------------------------------------------------------------------------------------------------------
def _names(model: nn.Module):
    mods = {id(m): n for n, m in model.named_modules()}
    params = {id(p): n for n, p in model.named_parameters()}
    return mods, params


def _name_of(obj, mods, params, option: str) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, nn.Parameter) and id(obj) in params:
        return params[id(obj)]
    if isinstance(obj, nn.Module) and id(obj) in mods:
        return mods[id(obj)]
    raise PlanError(f"{option}: {type(obj).__name__} {obj!r:.60} is not a submodule or parameter of the model. "
                    "Fix: pass modules from model.modules() (of this model, not a copy) or their qualified names")


def options_to_names(model: nn.Module, **options) -> dict:
    """Pruner options with every module (or parameter) replaced by its qualified name in ``model``.

    Accepts the :class:`~prune_explorer.pruner.BasePruner` options listed in ``PRUNER_OPTIONS``; modules may also
    be given by name already. Options left at None are dropped.

    >>> import torch.nn as nn
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> options_to_names(m, ignored_layers=[m[2]], round_to=4)
    {'ignored_layers': ['2'], 'round_to': 4}
    """
    unknown = sorted(set(options) - set(PRUNER_OPTIONS))
    if unknown:
        raise PlanError(f"unknown pruner option(s) {unknown}; supported: {list(PRUNER_OPTIONS)}")
    mods, params = _names(model)
    out = {}
    for k, v in options.items():
        if v is None:
            continue
        if k == "ignored_layers":
            out[k] = [_name_of(o, mods, params, k) for o in v]
        elif k in ("num_heads", "in_channel_groups", "out_channel_groups"):
            out[k] = {_name_of(m, mods, params, k): int(n) for m, n in dict(v).items()}
        elif k == "unwrapped_parameters":
            out[k] = [(_name_of(p, mods, params, k), int(dim)) for p, dim in v]
        else:
            out[k] = v
    return out


def options_from_names(model: nn.Module, options: Mapping) -> dict:
    """The inverse of :func:`options_to_names`: names resolved to ``model``'s modules and parameters."""
    def resolve(name: str, option: str):
        if not isinstance(name, str):
            return name
        try:
            return model.get_submodule(name) if name else model
        except AttributeError:
            pass
        try:
            return model.get_parameter(name)
        except AttributeError:
            raise PlanError(f"{option}: the model has no layer or parameter named {name!r}. Fix: use the same "
                            "architecture the plan (or scan) was made for, or drop that option") from None

    out = {}
    for k, v in dict(options).items():
        if k == "ignored_layers":
            out[k] = [resolve(n, k) for n in v]
        elif k in ("num_heads", "in_channel_groups", "out_channel_groups"):
            out[k] = {resolve(n, k): int(c) for n, c in dict(v).items()}
        elif k == "unwrapped_parameters":
            out[k] = [(resolve(n, k), int(dim)) for n, dim in v]
        else:
            out[k] = v
    return out


def json_options(options: Mapping) -> dict:
    """The JSON-able part of name-based pruner options (what a plan records)."""
    return {k: copy.deepcopy(v) for k, v in options.items() if k in JSON_OPTIONS}


# ----------------------------------------------------------------------------------------------------------------------
# walking and applying
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class PlanProposal:
    """One group of a plan as the pruner sees it now: ``group`` (the pruner's group), its ``decision``, and
    ``idxs``, the root channels (current indices, sorted) that :meth:`accept` removes. ``n_planned`` is the count
    the plan asks for; ``len(idxs)`` can be smaller when the constraints do not allow that count now."""

    key: str
    group: Any
    decision: GroupDecision
    idxs: List[int]
    n_planned: int
    record: Any = None

    @property
    def n(self) -> int:
        return len(self.idxs)

    @property
    def exact(self) -> bool:
        """Whether the proposal removes exactly the planned count."""
        return len(self.idxs) == self.n_planned

    def accept(self):
        """Remove ``idxs`` from the group (atomically); returns the prune record (None when nothing is removed)."""
        if not self.idxs:
            return None
        self.record = self.group.select(self.idxs).prune()
        return self.record


def plan_proposals(pruner, plan: PruningPlan) -> Iterator[PlanProposal]:
    """The plan's groups in the order of ``pruner``'s groups, each proposed right before it is yielded.

    For the group each decision names, ``pruner.propose(group, n)`` picks the lowest-importance whole units for
    ``n`` root channels (rounded down to what ``round_to``, unit/head ties and the guards allow), on the model as
    the earlier proposals left it. Call :meth:`PlanProposal.accept` to prune it, or do nothing to skip it (as in
    ``pruner.step(interactive=True)``). Groups the plan does not name are passed over.
    """
    for group in pruner.get_all_groups():
        key = group_key(group)
        d = plan.get(key)
        if d is None:
            continue
        current = len(group.root_idxs)
        n = d.count(current)
        idxs = list(pruner.propose(group, n)) if n > 0 else []
        yield PlanProposal(key=key, group=group, decision=d, idxs=idxs, n_planned=n)


def prune_with_plan(pruner, plan: PruningPlan, strict: bool = True,
                    verify: Optional[Callable[[], None]] = None) -> List[Any]:
    """Apply ``plan`` through an existing pruner (built on the model to prune); returns the prune records.

    ``strict=True`` (default): every key of the plan must name one of the pruner's groups (checked before anything
    is pruned), and every group with a planned count (``remove``) must lose exactly that (a ``ratio`` is rounded
    down to a feasible count, as the pruner does); otherwise everything pruned so far is undone
    and :class:`PlanError` is raised. ``strict=False`` skips unknown keys and accepts counts rounded down.
    ``verify()``, when given, runs once everything is pruned; if it raises, everything is undone too.
    """
    keys = [group_key(g) for g in pruner.get_all_groups()]
    missing = [k for k in plan.keys() if k not in set(keys)]
    if missing and strict:
        import difflib

        hints = {k: difflib.get_close_matches(k, keys, n=1) for k in missing[:3]}
        hint = "; ".join(f"{k!r}: did you mean {v[0]!r}?" for k, v in hints.items() if v)
        raise PlanError(f"plan {plan.name!r} names {len(missing)} group(s) this model/pruner does not have: "
                        f"{missing[:5]}{' (' + hint + ')' if hint else ''}. Groups here: {keys[:6]}... Fix: apply the "
                        "plan to the architecture it was made for, with the same ignored_layers")
    DG = pruner.DG
    old_depth = DG.undo_depth
    DG.undo_depth = max(old_depth, len(plan) + 1)
    records: List[Any] = []
    try:
        for prop in plan_proposals(pruner, plan):
            if strict and prop.decision.remove is not None and not prop.exact:
                raise PlanError(
                    f"plan {plan.name!r}: group {prop.key} can lose {prop.n} root channels, not the planned "
                    f"{prop.n_planned}, under round_to={pruner.round_to}, max_pruning_ratio={pruner.max_pruning_ratio} "
                    f"and its unit/head ties (max removable now: {pruner.max_removable(prop.group)}). Fix: apply with "
                    "the options the plan was made with (plan.options), or pass strict=False to round down")
            rec = prop.accept()
            if rec is not None:
                records.append(rec)
        if verify is not None:
            verify()
    except BaseException:
        for rec in reversed(records):
            rec.undo()
        raise
    finally:
        DG.undo_depth = old_depth
    return records


def apply_plan(model: nn.Module, plan: PruningPlan, example_inputs=None, importance: Optional[Callable] = None,
               pruner=None, strict: bool = True, **pruner_options) -> nn.Module:
    """Prune ``model`` in place as ``plan`` says and return it.

    Args:
        model: the model to prune (same architecture as the plan's).
        plan: a :class:`PruningPlan`.
        example_inputs: inputs for tracing (not needed when ``pruner`` is given).
        importance: ranks the channels on the model's weights (default ``MagnitudeImportance(p=2)``).
        pruner: an existing :class:`~prune_explorer.pruner.BasePruner` on ``model`` to apply the plan through
            (e.g. the explorer's); its options are used as they are.
        strict: see :func:`prune_with_plan`. Also checks that the parameter count reached equals
            ``plan.predicted["params"]`` when the plan predicts one for this model.
        **pruner_options: override the plan's recorded pruner options (``ignored_layers``, ``round_to``,
            ``max_pruning_ratio``, ``num_heads``, ...; see :class:`~prune_explorer.pruner.BasePruner`).

    Raises:
        PlanError: the plan does not fit the model; nothing is pruned (or everything is undone).
    """
    if not isinstance(model, nn.Module):
        raise PlanError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(plan, PruningPlan):
        raise PlanError(f"plan must be a PruningPlan, got {type(plan).__name__}. Fix: PruningPlan.load(path) or "
                        "PruningPlan.from_dict(d)")
    from .measure import count_params

    if pruner is None:
        if example_inputs is None:
            raise PlanError("apply_plan needs example_inputs (to trace the model) when no pruner is given")
        pruner = build_pruner(model, example_inputs, importance, {**options_from_names(model, plan.options),
                                                                  **pruner_options})
    elif getattr(pruner, "model", None) is not model:
        raise PlanError("pruner was built on another model. Fix: pass the pruner of the model being pruned")
    before = count_params(model)
    want = plan.predicted.get("params")

    def verify():
        got = count_params(model)
        if got != want:
            raise PlanError(f"plan {plan.name!r} predicted {want:,} parameters but applying it gives {got:,}; the model "
                            "was restored unchanged. Fix: apply with the pruner options in plan.options")

    check = strict and want is not None and plan.base.get("params") == before
    prune_with_plan(pruner, plan, strict=strict, verify=verify if check else None)
    return model


def build_pruner(model: nn.Module, example_inputs, importance: Optional[Callable] = None,
                 options: Optional[Mapping] = None):
    """A :class:`~prune_explorer.pruner.BasePruner` on ``model`` with resolved ``options`` (modules, not names),
    used to list groups and propose channels (its ratio and schedule are not used)."""
    from .importance import MagnitudeImportance
    from .pruner import BasePruner

    opts = dict(options or {})
    return BasePruner(model, example_inputs, importance if importance is not None else MagnitudeImportance(p=2),
                      **opts)
