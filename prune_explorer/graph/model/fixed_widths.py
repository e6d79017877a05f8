"""Which widths of a model no group prunes, and why: the graph's account of what stays.

Every channel of a traced layer side (a :class:`~.channel_space.ChannelSpace`) is either removed by some group of
``DependencyGraph.get_all_groups`` or left alone for one of these reasons:

* its class is fixed (``DG.classes.reasons``: an op the graph cannot follow, a literal size...) or reaches a model
  output;
* it is an output of an ``ignored_layers`` layer (or coupled with one);
* no layer that roots groups (conv, linear... outputs, and loose weights used as a linear's) produces it:
  :data:`UNREACHED_REASON`.

A layer of a known family (a conv, a linear...) that has no channel space at all was not seen as a layer by the
trace: :data:`UNTRACED_REASON`.

:func:`fixed_widths` lists one :class:`FixedWidth` per layer side and reason (what a pruner's report shows);
:func:`unreached_mask` and :func:`untraced_reason` serve ``DependencyGraph.fixed_reason``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, List, Optional

import numpy as np
import torch
import torch.nn as nn

from ...layers.family import FAMILIES
from .channel_space import SIDE_OUT

__all__ = ["FixedWidth", "fixed_widths", "unreached_mask", "untraced_reason", "IGNORED_REASON",
           "UNREACHED_REASON", "UNTRACED_REASON"]

IGNORED_REASON = "an output of an ignored layer (ignored_layers), or coupled with one"
UNREACHED_REASON = ("no layer that starts a group (a conv, linear... output, or a loose weight used as a linear's) "
                    "produces these channels")
UNTRACED_REASON = ("the trace never saw this layer run as one call (it did not run on the example inputs, or its "
                   "own forward uses its weights in operations the graph does not follow as this layer): no channel "
                   "of it can be pruned")


@dataclass(frozen=True)
class FixedWidth:
    """``fixed`` of the ``size`` channels (as built) of one layer side ``name`` + ``side`` (``"out"``, ``"in"``, or
    ``""`` for a pass-through layer or a parameter dim) that no automatic group prunes, because ``reason``."""

    name: str
    side: str
    size: int
    fixed: int
    reason: str

    @property
    def label(self) -> str:
        return f"{self.name}.{self.side}" if self.side else self.name

    def as_dict(self) -> dict:
        return asdict(self)


def unreached_mask(graph, ignored_layers: Iterable = (), root_module_types=None) -> np.ndarray:
    """``mask[c]``: class ``c`` is prunable (not kept, not blocked by ``ignored_layers``) yet no group root reaches
    it (as built), so the automatic tools never remove it."""
    kw = {} if root_module_types is None else {"root_module_types": root_module_types}
    covered = np.zeros(graph.classes.of.size, dtype=bool)
    for root in graph.group_roots(ignored_layers, as_built=True, **kw):
        covered[root.classes] = True
    blocked = graph.blocked_class_mask(list(ignored_layers or ()) + list(graph.ignored_layers))
    return ~covered & ~graph.classes.kept & ~blocked


def untraced_reason(graph, layer) -> Optional[str]:
    """Why ``layer`` (a module with no channel space) has no group: a known layer type the trace did not see as one
    call, or a module that holds no prunable weights of its own."""
    if isinstance(layer, nn.Module) and FAMILIES.family_of(layer) is not None:
        return UNTRACED_REASON
    if isinstance(layer, nn.Module):
        return ("it holds no channels of its own that the graph tracks (not a layer with weights, or its weights are "
                "loose parameters: ask for them by parameter)")
    return "not a parameter or layer of the traced model"


def fixed_widths(graph, ignored_layers: Iterable = (), root_module_types=None) -> List[FixedWidth]:
    """Every layer side (as built, in trace order) with channels no group prunes, one row per reason; then the layers
    of known families that have no channel space (:data:`UNTRACED_REASON`)."""
    ignored = list(ignored_layers or ()) + list(graph.ignored_layers)
    of, kept, reasons = graph.classes.of, graph.classes.kept, graph.classes.reasons
    blocked = graph.blocked_class_mask(ignored)
    unreached = unreached_mask(graph, ignored_layers, root_module_types)
    hidden = {s.index for s in graph.state.attr_spaces}  # size attributes: not widths of the model
    rows: List[FixedWidth] = []
    for s in graph.spaces:
        if s.index in hidden or s.size == 0:
            continue
        cls = of[s.gids()]
        why = Counter()
        for c in cls[kept[cls]].tolist():
            why[reasons.get(int(c), "fixed")] += 1
        n_blocked = int((blocked[cls] & ~kept[cls]).sum())
        if n_blocked:
            why[IGNORED_REASON] += n_blocked
        n_unreached = int(unreached[cls].sum()) if not _is_buffer(s.owner) else 0  # constants: nothing to prune
        if n_unreached:
            why[UNREACHED_REASON] += n_unreached
        side = "" if (s.passthrough or s.dim is not None) else s.side
        for reason, n in why.items():
            rows.append(FixedWidth(s.name, side, int(s.size), int(n), reason))
    traced = {id(s.owner) for s in graph.spaces}
    ignored_ids = {id(m) for m in ignored}
    model = graph.model
    for name, m in model.named_modules() if model is not None else ():
        if id(m) in traced or id(m) in ignored_ids or FAMILIES.family_of(m) is None:
            continue
        if not any(True for _ in m.parameters(recurse=False)):
            continue
        rows.append(FixedWidth(name, SIDE_OUT, _out_size(graph, m), _out_size(graph, m), UNTRACED_REASON))
    return rows


def _is_buffer(owner) -> bool:
    return isinstance(owner, torch.Tensor) and not isinstance(owner, nn.Parameter)


def _out_size(graph, m) -> int:
    n = graph.get_out_channels(m)
    return int(n) if n is not None else 0
