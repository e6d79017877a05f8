"""Sizes given to shape ops (``view``, ``split``, ``expand``, slicing...), and whether they follow a pruning.

A size argument is one of the kinds :func:`~..size_args.kind_of` tells apart: ``"infer"`` (``-1``, or computed by
the op), ``"literal"``, the traced tensor sizes it was read from (a frozenset of ``(value uid, dim)``), an attribute
(:class:`~..size_args.AttrSize`: ``self.num_heads``, ``config.hidden_size``...), a mix of both, or something opaque.
:func:`couple_size` couples a size that follows the channels along a dim with them (an attribute position by
position, so it is rewritten after pruning); :func:`hold_size` makes an attribute that cannot follow keep its value.
:func:`tie_and_narrow` is :func:`~..labels.collapse` for dims a size keeps (heads of a split, a broadcast operand).
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from ..labels import Value, collapse, new_field
from ..size_args import AttrSize, MixedSize, OpaqueSize, kind_attrs

__all__ = ["line_of", "tie_and_narrow", "hold_size", "couple_size", "check_sources", "source_fields", "follows"]


def line_of(f: torch.Tensor, dim: int) -> torch.Tensor:
    """The labels of ``f`` along ``dim`` (taken at position 0 of every other dim): ``f.shape[dim]`` ids.

    >>> line_of(torch.tensor([[1, 2, 3], [4, 5, 6]]), 1).tolist()
    [1, 2, 3]
    """
    for k in range(f.ndim):
        if k != dim and f.shape[k] > 1:
            f = f.narrow(k, 0, 1)
    return f.reshape(-1)


def tie_and_narrow(tracer, f: torch.Tensor, dims, reason: str = "tied along a dim whose size is kept") -> torch.Tensor:
    """Couple the positions of ``f`` that differ only along ``dims`` and return ``f`` narrowed to size 1 there: the
    same channel classes, now visibly constant along ``dims`` (so later ops see which dims carry channels)."""
    dims = [d for d in dims if f.shape[d] > 1]
    if not dims:
        return f
    g = collapse(tracer.couplings, f, dims, reason)
    if g is None:  # f varies along dims only: its positions there are still one unit
        tracer.couplings.tie_along(f, dims)
        g = f
        for d in dims:
            g = g.narrow(d, 0, 1)
    return g.contiguous()


def hold_size(tracer, kind, reason: str) -> None:
    """The attributes behind a size that must keep its value keep their value (their channels stay fixed)."""
    for ref in kind_attrs(kind):
        tracer.hold_attribute(ref, reason)


def couple_size(tracer, kind, out: Value, dim: int, where: str) -> None:
    """A size that follows the channels along ``dim`` of ``out``: an attribute behind it is coupled position by
    position with those channels (and rewritten with them); tensor sizes are checked to be the same channels."""
    fields = [f for f in out.fields if f.shape[dim] > 1]
    if isinstance(kind, AttrSize):
        ids = tracer.attribute_ids(kind.ref, kind.scale)
        if ids is None or ids.numel() != out.shape[dim]:
            for f in fields:
                tracer.couplings.fix(f, f"{where}: the attribute {kind.ref.label} does not size this dim exactly")
            return
        for f in fields:
            tracer.couplings.unify(new_field(out.shape, dim, ids), f, f"{where}: sized by the attribute {kind.ref.label}")
        if fields:
            tracer.attribute_partners(ids, line_of(fields[0], dim))
        return
    if isinstance(kind, MixedSize):
        hold_size(tracer, kind, f"{where}: a size computed from it and a tensor size")
        kind = kind.sources
    if isinstance(kind, frozenset) and fields:
        check_sources(tracer, kind, fields, where, line_of(fields[0], dim))


def check_sources(tracer, sources, fields, where: str, line: Optional[torch.Tensor] = None) -> None:
    """A size read from tensor shapes must count the same channels as ``fields`` (checked after union-find).

    When it counts other channels (timm's EVA: ``x.reshape(B, N, C)`` with ``C`` the block's input width, torchvision's
    Swin: ``C // num_heads``), the two widths must still keep their ratio: then the source's channel ``j`` is coupled
    with position ``j % n`` of ``line`` (the ``n`` positions this size counts), a consistent pairing, applied by the
    graph only if the channels turn out different."""
    src = source_fields(tracer, sources)
    if not src:
        return
    fallback = None
    if line is not None and len(sources) == 1:
        (uid, sdim), = sources
        v = tracer.values.get(uid)
        g = v.field_on(sdim) if v is not None and sdim < v.ndim else None
        if g is not None:
            src_line, n = line_of(g, sdim), line.numel()
            if n and src_line.numel() % n == 0:
                # ``line.repeat(k)``, in numpy (a small torch op costs several times more)
                fallback = (src_line, torch.from_numpy(np.tile(line.numpy(), src_line.numel() // n)))
    tracer.deferred_same_channels(src, fields, f"{where}: a size comes from other channels", fallback)


def source_fields(tracer, sources) -> List[torch.Tensor]:
    """The label fields of the tensor dims a size was read from (those that carry channels)."""
    out = []
    for uid, dim in sources:
        v = tracer.values.get(uid)
        if v is not None and dim < v.ndim:
            g = v.field_on(dim)
            if g is not None:
                out.append(g)
    return out


def follows(tracer, kind) -> Optional[str]:
    """None when a size of ``kind`` follows the pruning, else why it cannot."""
    if kind == "infer" or isinstance(kind, AttrSize):
        return None
    if kind == "literal":
        return "the new size is a literal in the model's code, so it cannot follow pruning"
    if isinstance(kind, OpaqueSize):
        return kind.reason()
    sources = kind.sources if isinstance(kind, MixedSize) else kind
    if not source_fields(tracer, sources):
        return "the new size is read from a dim that carries no channel, so it cannot follow pruning"
    return None
