"""Integers that remember where they come from: a tensor dimension, or an integer attribute the model reads.

During tracing, ``x.shape`` / ``x.size()`` return :class:`TracedInt` values instead of plain ints, and so do the
integer attributes of the model's modules and configs (``self.num_heads``, ``self.config.hidden_size``; see
:mod:`.attributes`). When the model's own code later uses such an int to build a shape
(``x.view(b, c // g, g, h, w)``, ``x.reshape(n, self.hidden_dim, -1)``), the tracer can tell a size that *follows*
the channel count (it will shrink with it after pruning, or its attribute is rewritten) from a literal written in
the code (it will not). A :class:`TracedInt` is a real ``int``: arithmetic, comparisons and every torch API accept it.

Arithmetic keeps the provenance: ``sources`` (the tensor dims), ``attrs`` (the attributes) and, while it is a
product of powers of them times a rational constant, the expression itself (:class:`Monomial`), which is what
lets an attribute be rewritten after pruning (``self.dim * 2`` sized 16 channels: ``dim = channels / 2``).

Example::

    >>> a = TracedInt(64, {(7, 1)}, exact=True)   # read from dim 1 of traced value #7
    >>> b = a // 4
    >>> isinstance(b, TracedInt), int(b), b.sources, b.exact
    (True, 16, frozenset({(7, 1)}), False)
    >>> b.expr.coef, b.expr.single_atom()[0]
    (Fraction(1, 4), ('t', 7, 1))
    >>> (a + 1).expr is None   # not a product: cannot be inverted
    True
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, FrozenSet, Iterable, Optional, Tuple

Source = Tuple[int, int]  # (value uid, dim)


_ONE = Fraction(1)  # Fractions are immutable: one shared 1 instead of a new one per atom
_NO_SOURCES: FrozenSet = frozenset()


class Monomial:
    """``coef * prod(atom ** power)``: the value of an int as a function of its sources.

    Atoms are ``("t", uid, dim)`` for a tensor dimension, or an attribute (any hashable object, see
    :class:`~.attributes.AttributeRef`). Powers are non-zero ints; ``coef`` a :class:`~fractions.Fraction`.
    """

    __slots__ = ("coef", "powers")

    def __init__(self, coef, powers: Tuple[Tuple[Any, int], ...] = ()):
        self.coef = coef if type(coef) is Fraction else Fraction(coef)
        self.powers = powers

    @staticmethod
    def atom(key) -> "Monomial":
        return Monomial(_ONE, ((key, 1),))

    def _as_dict(self):
        return dict(self.powers)

    def __mul__(self, other) -> "Monomial":
        if not isinstance(other, Monomial):
            return Monomial(self.coef * Fraction(other), self.powers)
        d = self._as_dict()
        for k, p in other.powers:
            q = d.get(k, 0) + p
            if q:
                d[k] = q
            else:
                d.pop(k, None)
        return Monomial(self.coef * other.coef, tuple(d.items()))

    def inverse(self) -> Optional["Monomial"]:
        if self.coef == 0:
            return None
        return Monomial(1 / self.coef, tuple((k, -p) for k, p in self.powers))

    def same_atoms(self, other: "Monomial") -> bool:
        return self._as_dict() == other._as_dict()

    def single_atom(self) -> Optional[Tuple[Any, Fraction]]:
        """``(atom, coef)`` when the value is ``coef * atom`` (one atom, power 1), else None."""
        if len(self.powers) == 1 and self.powers[0][1] == 1:
            return self.powers[0][0], self.coef
        return None

    def atoms(self):
        return [k for k, _ in self.powers]

    def __repr__(self) -> str:
        parts = [str(self.coef)] + [f"{k}^{p}" for k, p in self.powers]
        return "*".join(parts)


class TracedInt(int):
    """An ``int`` read from ``tensor.shape[dim]`` or from an integer attribute, or computed from such ints.

    ``sources``: every ``(value uid, dim)`` it depends on; ``attrs``: every attribute it depends on; ``expr``: the
    :class:`Monomial` it equals, or None once an operation that cannot be inverted (``+`` of different terms,
    ``%``, an inexact ``//``) was applied. ``exact`` is True while the int is an unmodified tensor size.
    """

    sources: FrozenSet[Source]
    attrs: FrozenSet[Any]
    expr: Optional[Monomial]
    exact: bool

    def __new__(cls, value: int, sources: Iterable[Source] = (), exact: bool = False, attrs: Iterable[Any] = (),
                expr: Optional[Monomial] = None):
        obj = int.__new__(cls, value)
        obj.sources = frozenset(sources)
        obj.attrs = frozenset(attrs)
        obj.exact = exact
        if expr is None and exact and len(obj.sources) == 1 and not obj.attrs:
            uid, dim = next(iter(obj.sources))
            expr = Monomial.atom(("t", uid, dim))
        obj.expr = expr
        return obj

    @classmethod
    def of_attribute(cls, value: int, ref) -> "TracedInt":
        """The value of attribute ``ref`` (an :class:`~.attributes.AttributeRef`): what ``cls(value, (), False,
        (ref,), Monomial.atom(ref))`` makes, its fields set directly (a trace installs one per int attribute)."""
        obj = int.__new__(cls, value)
        obj.sources, obj.attrs, obj.exact, obj.expr = _NO_SOURCES, frozenset((ref,)), False, Monomial.atom(ref)
        return obj

    def __repr__(self) -> str:  # keep printing identical to a plain int
        return int.__repr__(self)

    # ---- provenance of a result ------------------------------------------------------------------------------
    def _make(self, other, result, expr: Optional[Monomial]):
        if isinstance(result, bool) or not isinstance(result, int):
            return result
        sources, attrs = set(self.sources), set(self.attrs)
        if isinstance(other, TracedInt):
            sources |= other.sources
            attrs |= other.attrs
        return TracedInt(result, sources, False, attrs, expr)

    @staticmethod
    def _expr_of(o) -> Optional[Monomial]:
        if isinstance(o, TracedInt):
            return o.expr
        if isinstance(o, int) and not isinstance(o, bool):
            return Monomial(o)
        return None

    def _sum_expr(self, o, sign: int) -> Optional[Monomial]:
        if isinstance(o, int) and not isinstance(o, TracedInt) and o == 0:
            return self.expr
        e, f = self.expr, self._expr_of(o)
        if e is None or f is None or not e.same_atoms(f) or not e.powers:
            return None
        coef = e.coef + sign * f.coef
        return Monomial(coef, e.powers) if coef else None

    # arithmetic keeps the provenance; the result is no longer "exact"
    def __add__(self, o):
        return self._make(o, int.__add__(self, o), self._sum_expr(o, 1))

    def __radd__(self, o):
        return self._make(o, int.__radd__(self, o), self._sum_expr(o, 1))

    def __sub__(self, o):
        return self._make(o, int.__sub__(self, o), self._sum_expr(o, -1))

    def __rsub__(self, o):
        r = int.__rsub__(self, o)
        e = None
        if isinstance(o, int) and not isinstance(o, TracedInt) and o == 0 and self.expr is not None:
            e = self.expr * -1
        return self._make(o, r, e)

    def __mul__(self, o):
        e, f = self.expr, self._expr_of(o)
        return self._make(o, int.__mul__(self, o), e * f if e is not None and f is not None else None)

    def __rmul__(self, o):
        return self.__mul__(o) if isinstance(o, int) else int.__rmul__(self, o)

    def __floordiv__(self, o):
        r = int.__floordiv__(self, o)
        e, f = self.expr, self._expr_of(o)
        exact = isinstance(o, int) and o != 0 and int(self) % int(o) == 0
        inv = f.inverse() if (exact and f is not None) else None
        return self._make(o, r, e * inv if e is not None and inv is not None else None)

    def __rfloordiv__(self, o):
        r = int.__rfloordiv__(self, o)
        e, f = self.expr, self._expr_of(o)
        exact = isinstance(o, int) and int(self) != 0 and int(o) % int(self) == 0
        inv = e.inverse() if (exact and e is not None) else None
        return self._make(o, r, f * inv if f is not None and inv is not None else None)

    def __mod__(self, o):
        return self._make(o, int.__mod__(self, o), None)

    def __rmod__(self, o):
        return self._make(o, int.__rmod__(self, o), None)

    def __neg__(self):
        return TracedInt(-int(self), self.sources, False, self.attrs, self.expr * -1 if self.expr is not None else None)

    def __pos__(self):
        return self

    def __abs__(self):
        return self if int(self) >= 0 else -self

    def __index__(self):
        return int(self)

    def __int__(self):
        return int.__int__(self)

    def __hash__(self):
        return int.__hash__(self)

    def __reduce__(self):  # pickles/deep-copies as a plain int
        return (int, (int(self),))

    def __deepcopy__(self, memo):
        return int(self)

    def __copy__(self):
        return int(self)


def sources_of(obj) -> FrozenSet[Source]:
    """All traced sources of an int (or nested tuple/list of ints); empty for literals."""
    if isinstance(obj, TracedInt):
        return obj.sources
    if isinstance(obj, (tuple, list)):
        out = set()
        for item in obj:
            out |= sources_of(item)
        return frozenset(out)
    return frozenset()
