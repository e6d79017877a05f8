"""Size attributes in the graph: the checks that keep them consistent, and their new values after a pruning.

An integer attribute the forward reads (``self.hidden_dim``, ``self.num_heads``, ``config.hidden_size``, see
:mod:`.attributes`) is a hidden channel space of the graph, one id per position it counts, with ``scale`` times as
many positions as its value when it is used as ``scale * value`` (``self.dim * 2``). The graph never lists these
spaces as group members; a pruning that removes some of their positions rewrites the attribute
(:func:`attribute_updates`), in proportion to its value now.

Two checks run when the channel classes are built (see :class:`~.classes.ChannelClasses`):
:func:`check_attribute_scales` (an attribute used as several sizes must keep one value) and
:func:`check_attribute_ratios` (``num_heads / num_key_value_heads`` must not change). A class that would break one is
fixed, with the reason.

>>> import torch, torch.nn as nn, prune_explorer as pe
>>> class Block(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.hidden_dim = 8
...         self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 2)
...     def forward(self, x):
...         return self.fc2(self.fc1(x).reshape(-1, self.hidden_dim))
>>> m = Block()
>>> dg = pe.DependencyGraph().build_dependency(m, torch.randn(3, 8))
>>> _ = dg.get_pruning_group(m.fc1, pe.prune_linear_out_channels, [0, 1]).prune()
>>> m.hidden_dim, m(torch.randn(3, 8)).shape
(6, torch.Size([3, 2]))
"""

from __future__ import annotations

from fractions import Fraction
from typing import Dict, List, Sequence

import numpy as np

from ...errors import PruningError
from ..trace.attributes import AttributeSize

__all__ = ["attribute_spaces", "check_attribute_scales", "check_attribute_ratios", "attribute_updates"]


def attribute_spaces(spaces) -> list:
    """The hidden channel spaces of size attributes among ``spaces``."""
    return [s for s in spaces if isinstance(s.owner, AttributeSize)]


def _by_ref(attr_spaces) -> Dict[int, list]:
    out: Dict[int, list] = {}
    for s in attr_spaces:
        out.setdefault(id(s.owner.ref), []).append(s)
    return out


def check_attribute_scales(of: np.ndarray, reasons: Dict[int, str], attr_spaces: Sequence) -> None:
    """An attribute used as several sizes (``self.dim`` and ``self.dim * 2``) has one space per size; every pruning
    must leave them agreeing on one value: each class must hold ``scale`` times as many positions of each space.
    Otherwise every class of them is fixed (added to ``reasons``)."""
    for spaces in _by_ref(attr_spaces).values():
        if len(spaces) < 2:
            continue
        per = []
        for s in spaces:
            c, k = np.unique(of[s.gids()], return_counts=True)
            per.append({int(a): b / s.owner.scale for a, b in zip(c, k) if int(a) not in reasons})
        if any(p != per[0] for p in per[1:]):
            reason = (f"the attribute {spaces[0].owner.ref.label} sizes dims that would not shrink together "
                      f"({', '.join(s.owner.label for s in spaces)})")
            for s in spaces:
                for c in np.unique(of[s.gids()]):
                    reasons.setdefault(int(c), reason)


def check_attribute_ratios(of: np.ndarray, reasons: Dict[int, str], attr_spaces: Sequence, ratios) -> None:
    """``a / b`` of two attributes must not change (``ratios``: ``(a, b, reason)``): every class must hold ``a / b``
    times as many positions of ``a``'s space as of ``b``'s (a key/value head and the query heads that read it). Else
    both are fixed (added to ``reasons``)."""
    spaces = _by_ref(attr_spaces)

    def counts(ref):
        out: Dict[int, Fraction] = {}
        for s in spaces.get(id(ref), []):
            c, k = np.unique(of[s.gids()], return_counts=True)
            for a, b in zip(c, k):
                if int(a) not in reasons:
                    out[int(a)] = out.get(int(a), 0) + Fraction(int(b)) / s.owner.scale
        return out

    for a, b, reason in ratios:
        ca, cb = counts(a), counts(b)
        r = Fraction(a.value, b.value)
        if set(ca) == set(cb) and all(ca[c] == r * cb[c] for c in ca):
            continue
        for ref in (a, b):
            for s in spaces.get(id(ref), []):
                for c in np.unique(of[s.gids()]):
                    reasons.setdefault(int(c), f"the attributes {a.label} / {b.label} must keep their ratio ({reason})")


def attribute_updates(graph, killed: np.ndarray, label: str) -> List[tuple]:
    """``(AttributeRef, old, new)`` for each size attribute of ``graph`` that removing channel ids ``killed``
    changes (raises :class:`PruningError`, naming the group ``label``, if a new value is not a whole, positive
    number, or two of its spaces disagree)."""
    if not graph.state.attr_spaces or killed.size == 0:
        return []
    new_by_ref: Dict[int, tuple] = {}
    killed = np.sort(killed)
    for s in graph.state.attr_spaces:
        lo, hi = np.searchsorted(killed, (s.offset, s.offset + s.size))
        removed = int(np.count_nonzero(graph.alive_mask[killed[lo:hi]]))
        if not removed:
            continue
        owner = s.owner
        ref = owner.ref
        # in proportion to the attribute's value now: the same as value_after(positions left) while only this
        # graph changed it, and still right after another graph (the pruner's head-dims graph) did
        cur, left = ref.get(), s.current_size - removed
        value = None
        if s.current_size and (cur * left) % s.current_size == 0:
            value = cur * left // s.current_size
        if value is None or value <= 0:
            raise PruningError(f"cannot prune the group rooted at {label}: the attribute {ref.label} would size "
                               f"{left} positions as {owner.label}, which is not a whole, positive value")
        prev = new_by_ref.get(id(ref))
        if prev is not None and prev[2] != value:
            raise PruningError(f"cannot prune the group rooted at {label}: the attribute {ref.label} would need two "
                               f"values ({prev[2]} and {value})")
        new_by_ref[id(ref)] = (ref, ref.get(), value)
    return list(new_by_ref.values())
