"""Ranking scopes: which groups are ranked together, and with which target ratio.

* ``local:<root>`` -- the group alone: it loses ``ratio`` of its root layer's initial channels (the default);
* ``global`` -- every group in one ranking (``global_pruning=True``); the importance criterion's normaliser makes
  the groups' scores comparable;
* ``isomorphic:<k>`` -- groups of identical structure (same :func:`structural_signature`) ranked together
  (``isomorphic=True``, Isomorphic Pruning, ECCV 2024);
* ``user:<a>,<b>,...`` -- the groups rooted at (or containing the outputs of) the modules of one tuple key of
  ``pruning_ratio_dict``, ranked together with that key's ratio.

A scope with several groups removes ``current_total - int(initial_total * (1 - ratio))`` root channels in all,
taking the lowest-scored units across its groups (see :func:`rank_scope`), each group capped at what its guards
allow.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch

__all__ = ["structural_signature", "rank_scope", "LOCAL", "GLOBAL", "ISOMORPHIC", "USER"]

LOCAL, GLOBAL, ISOMORPHIC, USER = "local", "global", "isomorphic", "user"


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
