"""Reductions (channels along a reduced dim are summed away, or coupled when they also lie along a kept dim:
:func:`~..labels.collapse`), pooling and resampling (channels stay on dim 1; a resampled channel dim is fixed),
and tensor creation with sizes read from a traced tensor."""

from __future__ import annotations

import torch

from ..labels import collapse, merge_fields, new_field, varying_dims
from ..size_args import AttrSize, kind_of
from ..traced_int import TracedInt
from .call import Call, arg, norm_dim, unlabeled

__all__ = ["reduction", "norm_reduction", "spatial", "creation"]


def norm_reduction(tracer, call: Call) -> None:
    """``torch.norm(x, p, dim, keepdim)`` / ``torch.linalg.vector_norm(x, ord, dim, keepdim)``: a reduction whose
    ``dim`` comes after the order (ConvNeXt V2's global response norm)."""
    reduction(tracer, call, dim_pos=2)


def reduction(tracer, call: Call, dim_pos: int = 1) -> None:
    x = call.x
    if x is None or not x.fields:
        return unlabeled(call)
    dim = arg(call, dim_pos, "dim")
    keepdim = bool(arg(call, dim_pos + 1, "keepdim", False))
    if isinstance(dim, torch.dtype):
        dim = None
    if dim is None:
        return unlabeled(call)
    dims = [dim] if isinstance(dim, int) else list(dim)
    dims = sorted({norm_dim(int(dd), x.ndim) for dd in dims})
    reason = f"'{call.name}' combines these channels with positions that hold no prunable channel"
    kept = []
    for f in x.fields:  # a field varying along a reduced dim and a kept one: coupled along the reduced dims
        g = collapse(tracer.couplings, f, dims, reason)
        if g is not None:
            kept.append(g)
    for o in call.outputs:
        fields = []
        for g in kept:
            if not keepdim:
                for dd in reversed(dims):
                    g = g.squeeze(dd) if g.ndim > dd else g
            if g.ndim == o.ndim:
                fields.append(g)
        o.fields = fields


def spatial(tracer, call: Call) -> None:
    """Pooling / interpolation / roi ops on ``(N, C, *spatial)``: channels stay on dim 1."""
    x = call.x
    if x is None or not x.fields:
        return unlabeled(call)
    keep = {1} if call.name.startswith("roi") or call.name.startswith("ps_roi") else {0, 1}
    for o in call.outputs:
        fields = []
        for f in x.fields:
            vd = varying_dims(f)
            if vd <= keep and f.ndim == o.ndim:
                fields.append(f)
            elif vd - keep:
                tracer.couplings.fix(f, f"'{call.name}' resamples a dim that holds channels")
        if o.ndim == x.ndim:
            o.fields = fields
        else:
            o.fields = []


def creation(tracer, call: Call) -> None:
    """``torch.zeros(b, c, h, w)`` with sizes read from a tensor: the new tensor holds those channels; a size that is
    an attribute (``torch.zeros(1, self.num_heads, L, S)``) holds the attribute's positions."""
    out = call.outputs[0] if call.outputs else None
    if out is None:
        return
    size_args = [a for a in call.args if not isinstance(a, torch.Tensor)]
    if call.name.startswith("new_"):
        size_args = list(call.args[1:])
    if len(size_args) == 1 and isinstance(size_args[0], (tuple, list, torch.Size)):
        size_args = list(size_args[0])
    if "size" in call.kwargs:
        size_args = list(call.kwargs["size"])
    fields = []
    if len(size_args) == out.ndim:
        for d, s in enumerate(size_args):
            kind = kind_of(s, tracer.held_attributes)
            if isinstance(s, TracedInt) and s.exact and len(s.sources) == 1:
                uid, sd = next(iter(s.sources))
                v = tracer.values.get(uid)
                g = v.field_on(sd) if v is not None and sd < v.ndim else None
                if g is not None:
                    line = g.movedim(sd, 0).reshape(g.shape[sd], -1)[:, 0]
                    fields.append(new_field(out.shape, d, line))
            elif isinstance(kind, AttrSize) and call.name in _FILLED and out.shape[d] > 1:
                # torch.zeros(1, self.num_heads, L, S): the new tensor's dim holds the attribute's positions, so it
                # follows whatever that attribute is coupled with (and meets)
                ids = tracer.attribute_ids(kind.ref, kind.scale)
                if ids is not None and ids.numel() == out.shape[d]:
                    tracer.handled_attributes([kind])
                    fields.append(new_field(out.shape, d, ids))
    out.fields = merge_fields(fields)


_FILLED = set("""zeros ones empty full rand randn randint new_zeros new_ones new_empty new_full""".split())
