"""The data of a pruning plan: :class:`GroupDecision` (what one group loses) and :class:`PruningPlan` (a named,
ordered, JSON-able set of them), keyed by :func:`group_key`.

Counts are *root channels* of a group (the channels of its root layer's pruned side), never indices: which channels
go is decided when the plan is applied (:mod:`.apply`), by an importance criterion on the real weights.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Union

from ..errors import PruneExplorerError
from ..validation import is_ratio

__all__ = ["PruningPlan", "GroupDecision", "PlanError", "group_key", "FORMAT", "ATTENTION_KINDS", "DEPTH_KIND"]

FORMAT = "prune_explorer.plan/1"

#: ``group.kind`` of the attention groups (whole heads, or the same dims of every head); a plan keys them
#: ``"<root>:<kind>"``
ATTENTION_KINDS = ("attention-heads", "attention-dims")
#: ``group.kind`` of a depth group (a whole residual block, :mod:`prune_explorer.depth`); keyed ``"<block>:depth"``,
#: ``channels=1`` and ``remove=1`` when the plan removes the block
DEPTH_KIND = "depth"

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
            if not is_ratio(r):
                raise PlanError(f"{self.key}: ratio={r!r} must be a number in [0, 1)")
            self.ratio = float(r)
        if self.kind == DEPTH_KIND:  # a whole block: one unit, removed (1) or kept (0)
            if self.remove is not None and self.remove > 1:
                raise PlanError(f"{self.key}: a depth group removes its block (remove=1) or keeps it (0), "
                                f"not remove={self.remove}")
        elif self.channels is not None and self.remove is not None and self.remove >= self.channels > 0:
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
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise PlanError(f"not a pruning plan: the text is not JSON ({exc})") from None
        return cls.from_dict(data)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the plan as JSON to the file ``path`` (its folder must exist). Raises :class:`PlanError` naming the
        problem when ``path`` is empty, a folder, in a missing folder, or cannot be written."""
        text = self.to_json(indent=1)
        if not isinstance(path, (str, os.PathLike)) or not str(path).strip() or os.path.isdir(path):
            raise PlanError(f"give a file name to save the plan to, not {str(path)!r} (e.g. 'plan.json')")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise PlanError(f"the folder {folder!r} does not exist; create it or choose another path")
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise PlanError(f"could not write the plan to {str(path)!r}: {exc.strerror or exc}") from exc

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "PruningPlan":
        """Read a plan written by :meth:`save` (or any JSON in its format). Raises :class:`PlanError` when the file
        is missing or not a plan."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise PlanError(f"could not read a plan from {str(path)!r}: {exc.strerror or exc}") from exc
        return cls.from_json(text)

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
        return "\n".join(lines + self._attention_lines())

    def _attention_lines(self) -> List[str]:
        """One line per attention block whose heads change: heads, key-value heads and head size, before -> after."""
        before, after = self.base.get("attention") or {}, self.predicted.get("attention") or {}
        lines = []
        for block, now in after.items():
            was = before.get(block, {})
            if was == now:
                continue
            parts = [f"{label} {was.get(k, '?')}->{now.get(k, '?')}" for k, label in
                     (("num_heads", "heads"), ("num_key_value_heads", "kv heads"), ("head_dim", "head_dim"))]
            lines.append(f"  attention {block}: " + ", ".join(parts))
        if lines:
            lines.insert(0, f"  attention blocks changed: {len(lines)} of {len(after)}")
        return lines

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(self.summary()) + "</pre>"
