"""What a size argument of a traced operation says about whether the size can follow the pruning.

Shape arguments (``view`` / ``reshape`` / ``expand`` / ``unflatten`` sizes, the sizes of ``torch.zeros``, split
sizes) are classified by :func:`kind_of`:

* ``"infer"``: ``-1``, or a size the op computes from its input (``flatten``): it follows the input;
* ``"literal"``: an int written in the code (or captured in a closure): it never changes;
* a ``frozenset`` of ``(value uid, dim)``: an int read from tensor shapes (``x.shape[1] // 4``): it follows those
  tensors' channels (the tracer checks, once channels are coupled, that they are the channels being sized);
* :class:`AttrSize`: ``scale * attribute`` for an int attribute the forward read (``self.hidden_dim``,
  ``self.config.hidden_size``, ``self.num_heads * 2``): it follows the pruning when the attribute is rewritten;
* :class:`MixedSize`: a tensor size combined with attributes (``C // self.num_heads``): it follows the tensor,
  the attributes must stay as they are;
* :class:`OpaqueSize`: computed from an attribute in a way that cannot be inverted (``self.dim + 1``): a literal,
  with a reason naming the attribute.

>>> from prune_explorer.graph.trace.traced_int import TracedInt
>>> kind_of(-1), kind_of(7), kind_of(TracedInt(8, {(3, 1)}, exact=True))
('infer', 'literal', frozenset({(3, 1)}))
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, FrozenSet, Iterator, List, NamedTuple, Optional

import torch

from .attributes import AttributeRef
from .traced_int import TracedInt


class AttrSize(NamedTuple):
    """The size ``scale * ref``."""

    ref: AttributeRef
    scale: Fraction


class MixedSize(NamedTuple):
    """A size computed from tensor sizes ``sources`` and attributes ``attrs`` (which must keep their values)."""

    sources: FrozenSet
    attrs: FrozenSet


class OpaqueSize(NamedTuple):
    """A size computed from ``attrs`` by arithmetic that cannot be inverted."""

    attrs: FrozenSet

    def reason(self) -> str:
        names = ", ".join(sorted(a.label for a in self.attrs))
        return f"the size is computed from the attribute {names} in a way that cannot be inverted"


def kind_of(s: Any, held: Any = ()):
    """The kind of one size argument (see the module docstring). ``held``: ids of attributes known to keep their
    value; a product of attributes of which all but one are held is that one times a constant
    (``self.num_heads * self.head_dim`` once the head count is known to stay)."""
    if isinstance(s, TracedInt):
        if not s.attrs:
            return s.sources
        e = s.expr
        if e is not None and all(isinstance(k, AttributeRef) for k in e.atoms()):
            one = e.single_atom()
            if one is not None and one[1] > 0:
                return AttrSize(one[0], one[1])
            free = [(k, p) for k, p in e.powers if id(k) not in held]
            if len(free) == 1 and free[0][1] == 1 and e.coef > 0:
                scale = e.coef
                for k, p in e.powers:
                    if id(k) in held:
                        scale *= Fraction(k.value) ** p
                if scale > 0:
                    return AttrSize(free[0][0], scale)
            return OpaqueSize(s.attrs)
        if e is not None and s.sources:
            return MixedSize(s.sources, s.attrs)
        return OpaqueSize(s.attrs)
    if isinstance(s, int) and s == -1:
        return "infer"
    return "literal"


#: argument types that never hold a traced int
_NO_INTS = frozenset((torch.Tensor, torch.nn.Parameter, int, float, bool, str, type(None)))


def traced_ints_in(obj: Any, skip_keys=("dim", "dims", "axis", "dtype")) -> Iterator[TracedInt]:
    """Every :class:`TracedInt` that depends on an attribute inside ``obj`` (args, kwargs, nested tuples, slices),
    in order."""
    out: List[TracedInt] = []
    _collect_ints(obj, skip_keys, out)
    return iter(out)


def call_traced_ints(args: tuple, kwargs: Optional[dict]) -> List[TracedInt]:
    """``list(traced_ints_in((args, kwargs)))`` for one call's positional and keyword arguments, read without the
    outer pair (the same ints in the same order; every traced op's arguments are searched)."""
    out: List[TracedInt] = []
    _collect_ints(args, _SKIP_KEYS, out)
    if kwargs:
        _collect_ints(kwargs, _SKIP_KEYS, out)
    return out


_SKIP_KEYS = ("dim", "dims", "axis", "dtype")  # (traced_ints_in's default: keyword arguments that are no size)


def _collect_ints(obj: Any, skip_keys, out: list) -> None:
    """:func:`traced_ints_in` into ``out``: one call per container (not a generator per item; every traced op's
    arguments are searched)."""
    if isinstance(obj, TracedInt):
        if obj.attrs:
            out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            t = type(o)
            if t in _NO_INTS:  # (a list of 48 tensors for DenseNet's cat)
                continue
            if t is TracedInt:
                if o.attrs:
                    out.append(o)
            else:
                _collect_ints(o, skip_keys, out)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k not in skip_keys:
                _collect_ints(v, skip_keys, out)
    elif isinstance(obj, slice):
        for o in (obj.start, obj.stop, obj.step):
            _collect_ints(o, skip_keys, out)


def attrs_in(obj: Any, skip_keys=("dim", "dims", "axis", "dtype")) -> Iterator[AttributeRef]:
    """Every attribute any :class:`TracedInt` inside ``obj`` (args, kwargs, nested tuples, slices) depends on."""
    for t in traced_ints_in(obj, skip_keys):
        yield from t.attrs


def attribute_ratio(t: TracedInt):
    """``(a, b)`` when ``t`` is ``a / b`` for two attributes (``self.num_heads // self.num_key_value_heads``): it
    stays constant when both shrink in proportion. None otherwise."""
    e = t.expr
    if e is None or e.coef != 1 or len(e.powers) != 2:
        return None
    (a, pa), (b, pb) = e.powers
    if not (isinstance(a, AttributeRef) and isinstance(b, AttributeRef)):
        return None
    if (pa, pb) == (1, -1):
        return a, b
    if (pa, pb) == (-1, 1):
        return b, a
    return None


def is_attribute_kind(kind) -> bool:
    return isinstance(kind, (AttrSize, MixedSize, OpaqueSize))


def kind_attrs(kind) -> FrozenSet:
    if isinstance(kind, AttrSize):
        return frozenset({kind.ref})
    if isinstance(kind, (MixedSize, OpaqueSize)):
        return kind.attrs
    return frozenset()
