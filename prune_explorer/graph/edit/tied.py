"""Tied parameters: one tensor used by several modules stays one tensor.

A parameter can be registered on several modules: an input embedding and the output head
(``tie_word_embeddings``), T5's ``shared`` embedding and its encoder / decoder users, ALBERT-style shared blocks.
Pruning must treat it as one tensor:

* while the graph is built, :func:`couple_tied_spaces` couples, position by position, every channel space that
  owns entries of a shared parameter along the same dim (an embedding's features and the tied head's inputs are one
  channel class), so they are removed together or, if one of them must stay, kept together;
* after a group is pruned (each user's pruner builds its own new tensor), :func:`retie` checks that the users of a
  shared parameter got the very same tensor and makes them share one again; users that never ran (T5's ``shared``)
  get it too, with their size attributes updated. If the users disagree (the graph could not couple them), the
  pruning fails with :class:`~prune_explorer.errors.PruningError` and is rolled back: a tied parameter is never
  untied.

>>> import torch.nn as nn
>>> emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
>>> head.weight = emb.weight
>>> [[n for _, n in aliases] for aliases in tied_parameters(nn.ModuleDict({"emb": emb, "head": head}))]
[['emb.weight', 'head.weight']]
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn as nn

from ...errors import PruningError
from ...layers.family import FAMILIES
from ...layers.slicing import Rows
from ..trace.labels import new_field

__all__ = ["tied_parameters", "couple_tied_spaces", "tied_modules", "held_tensors", "retie"]

#: one tied parameter: ``[((module, attribute), qualified name), ...]``, one entry per module holding it
Aliases = List[Tuple[Tuple[nn.Module, str], str]]

TIED_REASON = "a tied parameter is shared with layers whose channels are fixed"


def tied_parameters(model: nn.Module, named_modules=None) -> List[Aliases]:
    """Every parameter registered on more than one module, with the ``(module, attribute)`` holding it and its
    qualified name, in module-walk order. ``named_modules``: the model's
    :func:`~prune_explorer.graph.trace.tracing.named_modules_of` when the caller has it, else
    ``model.named_modules()``; each module is met once, under its first name: the same aliases in the same order as a
    walk of every path would give, since a module met again on another path holds the same ``(module, attribute)``
    pairs, and everything under it was met the first time."""
    by_id: Dict[int, list] = {}  # id(parameter) -> [(module, attribute, module name)]
    for mname, m in (model.named_modules() if named_modules is None else named_modules):
        for attr, p in m._parameters.items():
            if p is not None:
                by_id.setdefault(id(p), []).append((m, attr, mname))
    return [[((m, attr), f"{mname}.{attr}" if mname else attr) for m, attr, mname in entries]
            for entries in by_id.values() if len(entries) > 1]


def _rows_of_space(space) -> List[Tuple[torch.Tensor, int]]:
    """``(parameter, dim)`` for each tensor whose entries along ``dim`` the space's channels own, in order."""
    if space.dim is not None:  # a loose parameter's space
        return [(space.owner, space.dim)]
    family = FAMILIES.family_of(space.owner)
    if family is None or family.parts is None:
        return []
    idx = torch.arange(space.size)
    try:
        parts = family.parts(space.owner, space, idx)
    except Exception:  # noqa: BLE001 - a layer whose parts cannot be listed shares nothing we can see
        return []
    return [(p.param, p.select.dim) for p in parts if isinstance(p.select, Rows) and p.select.n == space.size]


def couple_tied_spaces(tracer, tied: List[Aliases]) -> None:
    """Couple the channel spaces of the tracer that own entries of one tied parameter along the same dim."""
    if not tied:
        return
    shared = {id(getattr(m, attr)) for aliases in tied for (m, attr), _ in aliases}
    by_key: Dict[Tuple[int, int], List] = {}
    for space in tracer.spaces.spaces:
        for param, dim in _rows_of_space(space):
            if id(param) in shared:
                by_key.setdefault((id(param), dim), []).append(space)
    for spaces in by_key.values():
        first = spaces[0]
        a = torch.as_tensor(first.gids(), dtype=torch.long)
        for other in spaces[1:]:
            if other is first:
                continue
            b = torch.as_tensor(other.gids(), dtype=torch.long)
            if a.numel() != b.numel():
                tracer.couplings.fix(a, TIED_REASON)
                tracer.couplings.fix(b, TIED_REASON)
                continue
            tracer.couplings.unify(new_field(tuple(a.shape), 0, a), new_field(tuple(b.shape), 0, b), TIED_REASON)


def tied_modules(tied: List[Aliases], modules) -> List[nn.Module]:
    """The modules holding a parameter tied to one held by ``modules`` (for snapshots before pruning)."""
    ids = {id(m) for m in modules}
    out = []
    for aliases in tied:
        if any(id(m) in ids for (m, _), _ in aliases):
            out += [m for (m, _), _ in aliases if id(m) not in ids]
    return out


def held_tensors(tied: List[Aliases]) -> List[torch.Tensor]:
    """The tensor each tied parameter is now (before a pruning: what :func:`retie` compares with)."""
    return [getattr(aliases[0][0][0], aliases[0][0][1]) for aliases in tied]


def retie(tied: List[Aliases], originals: List[torch.Tensor], group_label: str) -> None:
    """After a pruning: the users of a tied parameter that got a new tensor (``originals``: what they held before,
    from :func:`held_tensors`) must have got the same one (shape and values); then every user holds that one, its
    size attributes updated. Raises :class:`PruningError` if they differ (the caller rolls the pruning back)."""
    for aliases, original in zip(tied, originals):
        held = [getattr(m, attr) for (m, attr), _ in aliases]
        if all(t is held[0] for t in held):
            continue
        new = []
        for t in held:
            if t is not original and all(t is not u for u in new):
                new.append(t)
        if not new:
            continue
        if len({tuple(t.shape) for t in new}) != 1 or not all(torch.equal(new[0].detach(), t.detach())
                                                             for t in new[1:]):
            names = [n for _, n in aliases]
            raise PruningError(
                f"pruning the group rooted at {group_label} would untie the parameter shared by {names} (its users "
                f"were pruned differently: shapes {[tuple(t.shape) for t in new]}), so it was rolled back. Fix: "
                "report the model; as a workaround add one of these layers to ignored_layers")
        for (m, attr), _ in aliases:
            if getattr(m, attr) is not new[0]:
                _rebind(m, attr, new[0])


def _rebind(module: nn.Module, attr: str, new: torch.Tensor) -> None:
    """``module.attr = new``, and the module's size attributes follow (its family's pruner knows which
    attribute counts the entries of which dim)."""
    old = getattr(module, attr)
    setattr(module, attr, new)
    family = FAMILIES.family_of(module)
    pruner = family.pruner if family is not None else None
    sliced = getattr(pruner, "SLICED_TENSORS", None) or {}
    counts = getattr(pruner, "CHANNEL_ATTRS", None) or (None, None)
    for side, tensors in sliced.items():
        dim = tensors.get(attr)
        count_attr = counts[0 if side == "out" else 1]
        if dim is not None and count_attr and old.shape[dim] != new.shape[dim]:
            setattr(module, count_attr, int(new.shape[dim]))
