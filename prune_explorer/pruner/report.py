"""``pruner.report()``: what pruning did to each group, and which widths stayed and why.

A :class:`PruningReport` is plain data (dataclasses, ``as_dict()`` for JSON) that prints as two tables:

* **groups**: one :class:`GroupReport` per group of the graph (as built: the groups a pruner considers, pruned or
  not): its root layer side, its kind (attention heads / head dims, or None), its root channels before pruning
  and now, the layer sides it removes channels from, and, when a step left it alone, the pruner's reason;
* **fixed widths**: one :class:`~prune_explorer.graph.fixed_widths.FixedWidth` per layer side and reason for the
  channels no group prunes (fixed by the graph, reaching an output, an ignored layer's, reached by no group root,
  or a layer the trace did not see), from ``DG.fixed_widths``.

>>> import torch, torchvision, prune_explorer as pe
>>> model = torchvision.models.resnet18()
>>> pruner = pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 64, 64), pe.importance.MagnitudeImportance(),
...                                    pruning_ratio=0.5, ignored_layers=[model.fc])
>>> pruner.step()
>>> report = pruner.report()
>>> g = report.groups[0]
>>> g.root, g.before, g.after
('conv1.out', 64, 32)
>>> [(f.label, f.fixed, f.size) for f in report.fixed][:2]
[('conv1.in', 3, 3), ('fc.out', 1000, 1000)]

:func:`zero_groups_warning` is the warning a pruner gives when its graph has no group at all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import torch.nn as nn

from ..graph import FixedWidth
from ..graph.model.classes import OUTPUT_REASON
from ..graph.trace.tracing import named_modules_of

__all__ = ["GroupReport", "PruningReport", "build_report", "zero_groups_warning"]

#: rows each table prints before "... N more" (the data holds every row)
MAX_ROWS = 60


@dataclass(frozen=True)
class GroupReport:
    """One group: ``root`` (its root layer side, e.g. ``"layer1.0.conv1.out"``), ``kind``, ``before`` / ``after``
    (root channels as built / now), ``members`` (layer sides it prunes, in trace order) and ``skipped`` (why the
    last step that left it alone did so; None when it was pruned or never considered)."""

    root: str
    kind: Optional[str]
    before: int
    after: int
    members: List[str] = field(default_factory=list)
    skipped: Optional[str] = None

    @property
    def removed(self) -> int:
        return self.before - self.after

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PruningReport:
    """What a pruner did (``groups``) and what stays (``fixed``); ``params_before`` / ``params_after``: the model's
    parameter counts when the pruner was built and now. Print it, or read the lists."""

    model: str
    groups: List[GroupReport]
    fixed: List[FixedWidth]
    params_before: int
    params_after: int

    @property
    def pruned_groups(self) -> List[GroupReport]:
        return [g for g in self.groups if g.removed]

    def reasons(self) -> dict:
        """``{reason: channels}`` over the fixed widths, most channels first."""
        out: dict = {}
        for f in self.fixed:
            out[f.reason] = out.get(f.reason, 0) + f.fixed
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def as_dict(self) -> dict:
        return {"model": self.model, "params_before": self.params_before, "params_after": self.params_after,
                "groups": [g.as_dict() for g in self.groups], "fixed": [f.as_dict() for f in self.fixed]}

    def __str__(self) -> str:
        kept = self.params_after / self.params_before if self.params_before else 1.0
        lines = [f"{self.model}: {len(self.pruned_groups)} of {len(self.groups)} groups pruned; parameters "
                 f"{self.params_before:,} -> {self.params_after:,} ({kept:.1%} kept)"]
        if self.groups:
            lines += ["", "groups (root channels before -> after, members):"]
            for g in self.groups[:MAX_ROWS]:
                kind = f" [{g.kind}]" if g.kind else ""
                members = ", ".join(g.members[:4]) + (f", ... ({len(g.members)} in all)" if len(g.members) > 4 else "")
                line = f"  {g.root}{kind}: {g.before} -> {g.after}  ({members})"
                if g.skipped and not g.removed:
                    line += f"  left alone: {g.skipped}"
                lines.append(line)
            if len(self.groups) > MAX_ROWS:
                lines.append(f"  ... {len(self.groups) - MAX_ROWS} more groups")
        if self.fixed:
            lines += ["", "widths that stay (channels fixed / size, reason):"]
            for f in self.fixed[:MAX_ROWS]:
                lines.append(f"  {f.label}: {f.fixed}/{f.size}  {f.reason}")
            if len(self.fixed) > MAX_ROWS:
                lines.append(f"  ... {len(self.fixed) - MAX_ROWS} more")
            if any(f.reason == OUTPUT_REASON for f in self.fixed):
                lines.append("  (widths that reach a model output stay; output_transform= picks the outputs whose "
                             "size must stay, e.g. lambda out: out.logits)")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython / Jupyter
        p.text(str(self) if not cycle else "PruningReport(...)")

    def __repr__(self) -> str:
        return (f"PruningReport({self.model}: {len(self.pruned_groups)}/{len(self.groups)} groups pruned, "
                f"{len(self.fixed)} fixed widths)")


def parameter_count(model: nn.Module) -> int:
    """``sum(p.numel() for p in model.parameters())``: each parameter once (by identity), from the one-loop module
    walk (:func:`~..graph.trace.tracing.named_modules_of`) instead of torch's generators, one per level."""
    seen, n = set(), 0
    for _, m in named_modules_of(model):
        for p in m._parameters.values():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                n += int(p.numel())
    return n


def build_report(pruner) -> PruningReport:
    """The report of ``pruner`` (a :class:`~.base_pruner.BasePruner`) as its model is now."""
    DG = pruner.DG
    ignored = pruner.group_ignored_layers
    roots = list(DG.group_roots(ignored, pruner.root_module_types, as_built=True))
    skipped = {}
    for s in pruner.skipped:
        skipped[s.root] = s.reason
    groups = []
    for r in roots:
        space = r.space
        after = int(space.alive[r.idxs].sum())
        kind = DG.attention_kind(r.classes)
        groups.append(GroupReport(root=space.label, kind=kind, before=int(r.idxs.size), after=after,
                                  members=DG.member_labels(r.classes), skipped=skipped.get(space.name)))
    fixed = DG.fixed_widths(ignored, pruner.root_module_types)
    return PruningReport(model=type(pruner.model).__name__, groups=groups, fixed=fixed,
                         params_before=pruner.initial_params, params_after=parameter_count(pruner.model))


def main_reasons(rows: List[FixedWidth], top: int = 3) -> List[str]:
    """The ``top`` reasons holding the most channels, each with its channel and layer counts (for a warning)."""
    channels, layers = Counter(), Counter()
    for r in rows:
        channels[r.reason] += r.fixed
        layers[r.reason] += 1
    return [f"{reason} ({channels[reason]} channels of {layers[reason]} layer sides)"
            for reason, _ in channels.most_common(top)]


def zero_groups_warning(pruner) -> Optional[str]:
    """The warning for a pruner whose graph has no group (nothing will ever be pruned), naming the main reasons;
    None when there is a group."""
    DG = pruner.DG
    if next(iter(DG.group_roots(pruner.group_ignored_layers, pruner.root_module_types)), None) is not None:
        return None
    reasons = main_reasons(DG.fixed_widths(pruner.group_ignored_layers, pruner.root_module_types))
    why = "; ".join(reasons) if reasons else "the graph found no prunable layer"
    return (f"prune_explorer: {type(pruner.model).__name__} has no group to prune: every width stays and step() "
            f"changes nothing. Main reasons: {why}. pruner.report() lists every fixed width with its reason.")
