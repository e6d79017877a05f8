"""Ranking scopes: which groups are ranked together, and with which target ratio.

* ``local:<root>`` -- the group alone: it loses ``ratio`` of its root layer's initial channels (the default);
* ``global`` -- every group in one ranking (``global_pruning=True``); the importance criterion's normaliser makes
  the groups' scores comparable;
* ``isomorphic:<k>`` -- groups of identical structure (same :func:`structural_signature`) ranked together
  (``isomorphic=True``, Isomorphic Pruning, ECCV 2024);
* ``user:<a>,<b>,...`` -- the groups rooted at (or containing the outputs of) the modules of one tuple key of
  ``pruning_ratio_dict``, ranked together with that key's ratio (a user-defined scope).

A module key of ``pruning_ratio_dict`` (not a tuple) gives its groups their own ratio in a ``local`` scope.
:class:`ScopeRules` says which scope and ratio a group gets at a step.

A scope with several groups removes ``current_total - int(initial_total * (1 - ratio))`` root channels in all,
taking the lowest-scored units across its groups (see :func:`rank_scope`), each group capped at what its guards
allow.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch

__all__ = ["structural_signature", "rank_scope", "ScopeRules", "LOCAL", "GLOBAL", "ISOMORPHIC", "USER_DEFINED"]

# scope name prefixes (``user`` is also the value of guards.NOT_ACCEPTED, a skip kind: a different field)
LOCAL, GLOBAL, ISOMORPHIC, USER_DEFINED = "local", "global", "isomorphic", "user"


def _member_descriptor(item, init_shapes: Dict[int, tuple], init_sizes: Dict[int, int]) -> tuple:
    dep = item.dep
    s = dep.space
    layer = dep.layer
    kind = "param" if s.dim is not None else type(layer).__name__
    side = "in=out" if s.passthrough else s.side
    return (kind, side, init_sizes.get(s.index, s.size), init_shapes.get(s.index))


def structural_signature(group, init_shapes: Dict[int, tuple], init_sizes: Dict[int, int]) -> tuple:
    """A hashable description of a group's structure: the root's descriptor and the sorted multiset of its
    members' descriptors ``(layer type, side, initial channel count, initial weight shape)``. Two groups with the
    same signature (e.g. the first conv of every basic block of one ResNet stage) are *isomorphic*."""
    items = group.items
    root = _member_descriptor(items[0], init_shapes, init_sizes)
    members = tuple(sorted((_member_descriptor(it, init_shapes, init_sizes) for it in items[1:]), key=repr))
    return (root, members)


def rank_scope(entries: Sequence[Tuple[object, torch.Tensor, torch.Tensor, int]], n_total: int) -> List[int]:
    """Pick the ``n_total`` lowest-scored root channels across several groups, unit by unit.

    ``entries``: one ``(key, unit_scores, unit_sizes, cap)`` per group (``cap``: the most channels that group may
    lose). Units are taken in increasing score order while they fit in ``n_total`` and in their group's cap.
    Returns, per entry, how many root channels it should lose.
    """
    if n_total <= 0 or not entries:
        return [0 for _ in entries]
    scores = torch.cat([e[1].float() for e in entries])
    sizes = torch.cat([e[2].long() for e in entries])
    owner = torch.cat([torch.full((e[1].numel(),), i, dtype=torch.long) for i, e in enumerate(entries)])
    order = torch.argsort(scores, stable=True)
    taken = [0] * len(entries)
    caps = [int(e[3]) for e in entries]
    left = n_total
    for j in order.tolist():
        size = int(sizes[j])
        i = int(owner[j])
        if size <= left and taken[i] + size <= caps[i]:
            taken[i] += size
            left -= size
            if left == 0:
                break
    return taken


class ScopeRules:
    """Which scope a group belongs to and its target ratio at a step, from a pruner's options (read live:
    ``options`` is the pruner's :class:`~.config.PrunerOptions`).

    ``initial_shapes`` / ``initial_sizes``: channel space index -> weight shape / channel count when the pruner was
    built (isomorphic scopes compare groups as built)."""

    def __init__(self, options, initial_shapes: Dict[int, tuple], initial_sizes: Dict[int, int]):
        self.options = options
        self.initial_shapes = initial_shapes
        self.initial_sizes = initial_sizes
        self._isomorphic_names: Dict[tuple, str] = {}

    @property
    def any_shared(self) -> bool:
        """Whether some group may rank together with others (global, isomorphic or a tuple key)."""
        o = self.options
        return o.global_pruning or o.isomorphic or any(isinstance(k, tuple) for k in o.pruning_ratio_dict)

    def ratio_key(self, group):
        """The ``pruning_ratio_dict`` key of the group: its root's, or that of a member whose outputs it holds."""
        key_of = self.options.ratio_key_of
        if not key_of:
            return None
        key = key_of.get(id(group.root_module))
        if key is not None:
            return key
        for it in group.items:
            if it.dep.side == "out" or it.dep.space.passthrough:
                key = key_of.get(id(it.dep.layer))
                if key is not None:
                    return key
        return None

    def scope(self, group, step: int) -> Tuple[str, float]:
        """``(scope name, cumulative target ratio at step)`` of a graph group."""
        o = self.options
        key = self.ratio_key(group)
        if isinstance(key, tuple):
            names = ",".join(o.module_names.get(id(m), "?") for m in key)
            return f"{USER_DEFINED}:{names}", o.ratio_schedules[key][step]
        if key is not None:
            return f"{LOCAL}:{group.root_name}", o.ratio_schedules[key][step]
        ratio = o.per_step_pruning_ratio[step]
        if o.isomorphic:
            sig = structural_signature(group, self.initial_shapes, self.initial_sizes)
            name = self._isomorphic_names.get(sig)
            if name is None:
                name = self._isomorphic_names[sig] = f"{ISOMORPHIC}:{len(self._isomorphic_names)}"
            return name, ratio
        if o.global_pruning:
            return GLOBAL, ratio
        return f"{LOCAL}:{group.root_name}", ratio
