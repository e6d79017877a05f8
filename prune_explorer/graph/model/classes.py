"""Coupled-channel classes: which channels must be removed together, and which can never be removed.

Tracing records pairs of global channel ids that must be removed together and ids that must never be (with a reason,
see :mod:`.labels`). :meth:`ChannelClasses.from_trace` turns the pairs into *classes* (connected components, see
:mod:`.union_find`); a class is fixed when any of its ids is. Classes never change after tracing: pruning only marks
channels dead in the graph's alive mask, so every later group is computed against the pruned model.

>>> import numpy as np
>>> classes = ChannelClasses.build(5, [np.array([1, 3])], [np.array([2, 4])], fixed=[(np.array([4]), "output")],
...                                output_ids=[], deferred=[])
>>> classes.of.tolist(), classes.never.tolist(), classes.reasons[3]
([0, 1, 1, 3, 3], [True, False, False, True, False], 'output')
>>> classes.members(np.array([1]), alive=np.ones(5, dtype=bool)).tolist()
[1, 2]
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from ..._index import concat_ranges, unique_ints
from .union_find import connected_components

#: Why channels that reach the model's outputs are kept fixed by the automatic tools. Unlike the other reasons, it
#: does not make them unprunable: an explicit ``DG.get_pruning_group`` on them is done, with a warning naming each
#: output whose shape changes (see ``Tracer.outputs``).
OUTPUT_REASON = "reaches the model output (its size is part of the model's interface)"

__all__ = ["ChannelClasses", "OUTPUT_REASON"]


def _stored(f) -> np.ndarray:
    """The labels of field ``f`` with each broadcast (stride-0) dim read once: the same ids, not repeated."""
    a = f.numpy()
    if 0 in a.strides:
        a = a[tuple(slice(0, 1) if s > 1 and st == 0 else slice(None) for s, st in zip(a.shape, a.strides))]
    return a.reshape(-1)


def _ids_of(fields) -> np.ndarray:
    if not fields:
        return np.empty(0, dtype=np.int64)
    ids = unique_ints(np.concatenate([_stored(f) for f in fields]))
    return ids[ids >= 0]


def _same_classes(of: np.ndarray, src_ids: np.ndarray, ids: np.ndarray) -> bool:
    """Whether two sets of channel ids (see :func:`_ids_of`) hold the same channel classes."""
    return np.array_equal(unique_ints(of[src_ids]), unique_ints(of[ids]))


def _first_reasons(of: np.ndarray, fixed: Sequence[Tuple[np.ndarray, str]]) -> Dict[int, str]:
    """``{class: reason}`` of the fixed ids: each class keeps the reason of the first entry of ``fixed`` that holds
    one of its ids, and the dict lists the classes as that loop would have met them (entry by entry, classes in
    increasing order within an entry). One sort over every fixed id instead of a Python loop over classes.

    >>> of = np.array([0, 1, 1, 3])
    >>> _first_reasons(of, [(np.array([3, 2]), "a"), (np.array([1, 3]), "b")])
    {1: 'a', 3: 'a'}
    """
    if not fixed:
        return {}
    cls = of[np.concatenate([np.asarray(ids, dtype=np.int64).reshape(-1) for ids, _ in fixed])]
    entry = np.repeat(np.arange(len(fixed)), [np.asarray(ids).size for ids, _ in fixed])
    order = np.lexsort((entry, cls))  # by class, then entry
    cls, entry = cls[order], entry[order]
    first = np.ones(cls.size, dtype=bool)
    first[1:] = cls[1:] != cls[:-1]
    cls, entry = cls[first], entry[first]
    met = np.lexsort((cls, entry))  # the loop's order: by entry, then class
    return {c: fixed[e][1] for c, e in zip(cls[met].tolist(), entry[met].tolist())}


class ChannelClasses:
    """Per global channel id, its class (``of``); per class, whether it is fixed and why.

    ``never[c]``: class ``c`` can never be pruned. ``at_output[c]``: it reaches a model output (only an explicit
    request prunes it). ``kept[c]``: either (what the automatic tools leave alone). ``reasons[c]``: why a class is
    kept. Arrays are indexed by class id (the smallest channel id of the class), sized like the channel ids.
    """

    def __init__(self, of: np.ndarray, reasons: Dict[int, str], at_output: np.ndarray):
        self.of = of
        n = of.size
        self.never = np.zeros(n, dtype=bool)
        self.never[np.fromiter(reasons.keys(), dtype=np.int64, count=len(reasons))] = True
        self.at_output = at_output
        for c in np.flatnonzero(at_output & ~self.never):
            reasons[int(c)] = OUTPUT_REASON
        self.kept = self.never | at_output
        self.reasons = reasons
        # the ids of each class, contiguous: ids of class c are _order[_start[c]:_start[c + 1]]
        self._order = np.argsort(of, kind="stable")
        self._start = np.zeros(n + 1, dtype=np.int64)  # the number of ids in classes below c (class ids are < n)
        np.cumsum(np.bincount(of, minlength=n), out=self._start[1:])

    @classmethod
    def build(cls, n: int, pair_a: Sequence[np.ndarray], pair_b: Sequence[np.ndarray],
              fixed: Sequence[Tuple[np.ndarray, str]], output_ids: List[np.ndarray],
              deferred: Sequence[tuple], checks: Sequence[Callable] = (),
              ranges: Sequence[Tuple[int, int, int]] = ()) -> "ChannelClasses":
        """Classes of ``n`` channel ids from coupled pairs, fixed ids (with reasons), ids reaching an output, and
        deferred checks ``(source fields, fields, reason[, fallback])``: a size read from another tensor must follow
        the same classes; if it does not, the ``fallback`` pairs ``(a, b)`` are coupled when given (then the classes
        are computed again), else both are fixed. ``checks``: ``check(of, reasons)`` run last, each may fix more
        classes (the size-attribute checks of :mod:`.attribute_sizes`). ``ranges``: more coupled pairs, as blocks
        ``(a0, b0, k)`` of consecutive ids (see :func:`.union_find.connected_components`)."""
        of = connected_components(n, pair_a, pair_b, ranges)
        # each deferred check's ids, read once: (source ids, ids, reason, same classes as far as known)
        checks_ids = [[_ids_of(d[0]), _ids_of(d[1]), d[2], None] for d in deferred]
        extra_a, extra_b = [], []
        for d, c in zip(deferred, checks_ids):
            fallback = d[3] if len(d) > 3 else None
            if fallback is not None:
                c[3] = _same_classes(of, c[0], c[1])
                if not c[3]:
                    pa, pb = np.broadcast_arrays(fallback[0].numpy(), fallback[1].numpy())
                    ok = (pa >= 0) & (pb >= 0)
                    extra_a.append(pa[ok])
                    extra_b.append(pb[ok])
        if extra_a:
            of = connected_components(n, list(pair_a) + extra_a, list(pair_b) + extra_b, ranges)
            for c in checks_ids:  # the new classes are unions of the old: what held the same classes still does
                if c[3] is False:
                    c[3] = None
        reasons = _first_reasons(of, fixed)
        for src_ids, ids, reason, same in checks_ids:
            if not (same if same is not None else _same_classes(of, src_ids, ids)):
                for c in unique_ints(of[np.concatenate([src_ids, ids])]):
                    reasons.setdefault(int(c), reason)
        for check in checks:
            check(of, reasons)
        reasons.setdefault(int(of[0]), "sentinel")
        at_output = np.zeros(n, dtype=bool)
        if output_ids:
            at_output[of[np.concatenate(output_ids)]] = True
        return cls(of, reasons, at_output)

    @classmethod
    def from_trace(cls, tracer, checks: Sequence[Callable] = ()) -> "ChannelClasses":
        """The classes of a finished trace (its couplings; fixed ids reaching an output are kept apart)."""
        fixed, output_ids = [], []
        for ids, reason in tracer.couplings.fixed_as_numpy():
            if reason == OUTPUT_REASON:
                output_ids.append(ids)
            else:
                fixed.append((ids, reason))
        c = tracer.couplings
        return cls.build(tracer.spaces.next_gid, list(c.pair_a), list(c.pair_b), fixed, output_ids, tracer.deferred,
                         checks, ranges=list(c.ranges))

    def members(self, classes: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """The alive channel ids of ``classes`` (class by class)."""
        starts, ends = self._start[classes], self._start[classes + 1]
        lens = ends - starts
        total = int(lens.sum())
        if total == 0:
            return np.empty(0, dtype=np.int64)
        gids = self._order[concat_ranges(starts, lens)]
        return gids[alive[gids]]
