"""Integers that remember which tensor dimension they were read from.

During tracing, ``x.shape`` / ``x.size()`` return :class:`TracedInt` values instead of plain ints. When the
model's own code later uses such an int to build a shape (``x.view(b, c // g, g, h, w)``), the tracer can tell a
size that *follows* the channel count (it will shrink with it after pruning) from a literal written in the code
(it will not). A :class:`TracedInt` is a real ``int``: arithmetic, comparisons and every torch API accept it.

Example::

    >>> a = TracedInt(64, {(7, 1)}, exact=True)   # read from dim 1 of traced value #7
    >>> b = a // 4
    >>> isinstance(b, TracedInt), int(b), b.sources, b.exact
    (True, 16, frozenset({(7, 1)}), False)
"""

from __future__ import annotations

from typing import FrozenSet, Iterable, Tuple

Source = Tuple[int, int]  # (value uid, dim)


class TracedInt(int):
    """An ``int`` read from ``tensor.shape[dim]``; ``sources`` holds every ``(value uid, dim)`` it depends on.

    ``exact`` is True while the int is the unmodified size (no arithmetic applied yet).
    """

    sources: FrozenSet[Source]
    exact: bool

    def __new__(cls, value: int, sources: Iterable[Source], exact: bool = False):
        obj = int.__new__(cls, value)
        obj.sources = frozenset(sources)
        obj.exact = exact
        return obj

    def __repr__(self) -> str:  # keep printing identical to a plain int
        return int.__repr__(self)

    def _combine(self, other, result):
        if isinstance(result, bool) or not isinstance(result, int):
            return result
        sources = set(self.sources)
        if isinstance(other, TracedInt):
            sources |= other.sources
        return TracedInt(result, sources)

    # arithmetic keeps the provenance; the result is no longer "exact"
    def __add__(self, o):
        return self._combine(o, int.__add__(self, o))

    def __radd__(self, o):
        return self._combine(o, int.__radd__(self, o))

    def __sub__(self, o):
        return self._combine(o, int.__sub__(self, o))

    def __rsub__(self, o):
        return self._combine(o, int.__rsub__(self, o))

    def __mul__(self, o):
        return self._combine(o, int.__mul__(self, o))

    def __rmul__(self, o):
        return self._combine(o, int.__rmul__(self, o))

    def __floordiv__(self, o):
        return self._combine(o, int.__floordiv__(self, o))

    def __rfloordiv__(self, o):
        return self._combine(o, int.__rfloordiv__(self, o))

    def __mod__(self, o):
        return self._combine(o, int.__mod__(self, o))

    def __neg__(self):
        return TracedInt(-int(self), self.sources)

    def __index__(self):
        return int(self)

    def __hash__(self):
        return int.__hash__(self)

    def __reduce__(self):  # pickles/deep-copies as a plain int
        return (int, (int(self),))

