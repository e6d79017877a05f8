"""Slices along a channel dim that follow the pruning: bounds that are an attribute (``x[:, :self.in_channels]``),
fixed fractions of the dim's own size (``x[..., : x.shape[-1] // 2]``, rotary embeddings' ``rotate_half``) or a step
(``x[..., ::2]``, interleaved rotary embeddings). Any other slice of a channel dim keeps a fixed subset of channels
(see :func:`~.replay.getitem`)."""

from __future__ import annotations

from fractions import Fraction

from ..labels import Value, new_field
from ..size_args import AttrSize, kind_of
from ..traced_int import TracedInt

__all__ = ["index_dims", "attribute_slice", "fraction_slice"]


def index_dims(x: Value, idx):
    """``(dim of x, index item)`` for each item of ``x[idx]`` that consumes a dim of ``x``."""
    items = idx if isinstance(idx, tuple) else (idx,)
    n_consumed = sum(1 for it in items if it is not None and it is not Ellipsis and not isinstance(it, bool))
    d = 0
    for it in items:
        if it is Ellipsis:
            d += x.ndim - n_consumed
            continue
        if it is None or isinstance(it, bool):
            continue
        if d < x.ndim:
            yield d, it
        d += 1


def attribute_slice(tracer, x: Value, d: int, it: slice) -> bool:
    """``x[:, 0:self.in_channels]`` / ``x[:, self.in_channels:]`` (timm's RexNet adds a shortcut to the first
    ``in_channels`` channels): a bound that is an attribute follows the channels before it, so the attribute is
    coupled with them and rewritten; the channels on either side stay prunable. False when the slice is not of that
    kind (a literal bound other than 0 / the end, a step)."""
    f = x.field_on(d)
    if f is None or it.step not in (None, 1):
        return False
    kinds = []
    for b, edge in ((it.start, 0), (it.stop, None)):
        if b is None or (not isinstance(b, TracedInt) and b == edge):
            continue
        k = kind_of(b, tracer.held_attributes)
        if not isinstance(k, AttrSize) or not 0 < int(b) < x.shape[d]:
            return False
        kinds.append((int(b), k))
    if not kinds:
        return False
    tracer.handled_attributes([k for _, k in kinds])
    for b, k in kinds:
        ids = tracer.attribute_ids(k.ref, k.scale)
        if ids is None or ids.numel() != b:
            return False
        prefix = f.narrow(d, 0, b) if f.shape[d] > 1 else f
        shape = list(prefix.shape)
        shape[d] = b
        tracer.couplings.unify(new_field(shape, d, ids), prefix, f"sliced at the attribute {k.ref.label}")
    return True


def fraction_slice(tracer, x: Value, d: int, it: slice) -> bool:
    """``x[..., : x.shape[-1] // 2]`` (rotary embeddings' ``rotate_half``): bounds that are fixed fractions of the
    dim's own size cut it into ``k`` equal parts that must lose the same positions, so the parts are tied position
    by position (and the part kept carries its labels). ``x[..., 1::2]``: the residues modulo the step are such
    parts. False when the slice is not of that kind."""
    f = x.field_on(d)
    n = x.shape[d]
    if f is None:
        return False
    step = it.step if it.step is not None else 1
    if isinstance(step, int) and step > 1:
        # x[..., 1::2] and x[..., ::2] (interleaved rotary embeddings): the k residues mod step are equal parts that
        # must lose the same positions, so positions step*i + r are tied for every r
        start = 0 if it.start is None else it.start
        if it.stop is not None or not isinstance(start, int) or not 0 <= start < step or n % step or f.shape[d] != n:
            return False
        tracer.couplings.tie_along(f.unflatten(d, (n // step, step)), [d + 1])
        return True
    if it.step not in (None, 1):
        return False
    fracs = []
    for b, default in ((it.start, 0), (it.stop, n)):
        if b is None:
            fracs.append(Fraction(default, n))
            continue
        e = b.expr if isinstance(b, TracedInt) else None
        one = e.single_atom() if e is not None else None
        if one is None or one[0] != ("t", x.uid, d):
            return False
        fracs.append(one[1])
    k = 1
    for fr in fracs:
        k = max(k, fr.denominator)
    if k < 2 or n % k or not all(0 <= fr <= 1 and (fr * k).denominator == 1 for fr in fracs):
        return False
    part = n // k
    base = f.narrow(d, 0, part) if f.shape[d] > 1 else f
    for j in range(1, k):
        tracer.couplings.pair(f.narrow(d, j * part, part), base)
    return True
