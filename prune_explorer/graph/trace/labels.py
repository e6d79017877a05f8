"""Channel labels carried by traced tensors, and the couplings they produce.

Every tensor seen while tracing is a :class:`Value`. A value carries zero or more *label fields*: int64 tensors
that broadcast against the value's shape and hold, at each position, the global id of the channel stored there
(``-1`` where the position belongs to no prunable channel). A field has size 1 along every dimension where its
labels do not vary, so a conv output ``(N, C, H, W)`` carries a field of shape ``(1, C, 1, 1)``.

Shape operations (``view``, ``permute``, ``cat``, ``split``, slicing…) are *replayed* on the fields, which gives the
exact index mapping of any combination of them (channel shuffles, head splits, flatten-before-linear) for free.
Operations that need equal channels on both sides (``add``, ``mul``, a layer reading its input) *couple* labels:
:class:`Couplings` records pairs of ids that must be removed together, and ids that can never be removed
(:data:`~prune_explorer.graph.model.channel_space.FIXED`), each with a human-readable reason.

Example::

    >>> import torch
    >>> c = Couplings()
    >>> a = torch.tensor([[5, 6, 7]]); b = torch.tensor([[9, 6, -1]])
    >>> c.unify(a, b, reason="add")
    >>> [p.tolist() for p in c.pair_a], [p.tolist() for p in c.pair_b]
    ([[5]], [[9]])
    >>> c.fixed[0][0].tolist(), c.fixed[0][1]
    ([7], 'add')
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..._index import unique_ints
from ..model.union_find import range_pairs

Field = torch.Tensor  # int64, ndim == value.ndim, broadcastable to value.shape


class Value:
    """A tensor observed during tracing: its shape, who produced it, and its label fields."""

    __slots__ = ("uid", "shape", "fields", "producer", "__weakref__")

    def __init__(self, uid: int, shape: Tuple[int, ...], producer=None, fields: Optional[List[Field]] = None):
        self.uid = uid
        self.shape = tuple(map(int, shape))
        self.producer = producer
        self.fields: List[Field] = fields or []

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def labeled_dims(self) -> set:
        dims = set()
        for f in self.fields:
            dims |= varying_dims(f)
        return dims

    def field_on(self, dim: int) -> Optional[Field]:
        """The field whose labels vary along ``dim`` (None if the dim carries no channel)."""
        for f in self.fields:
            if f.shape[dim] > 1:
                return f
        return None

    def __repr__(self) -> str:
        return f"Value#{self.uid}{list(self.shape)} labeled={sorted(self.labeled_dims())}"


# ---------------------------------------------------------------------------------------------------------------
# field helpers
# ---------------------------------------------------------------------------------------------------------------


def varying_dims(f: Field) -> set:
    return {d for d, s in enumerate(f.shape) if s > 1}


def compress(f: Field) -> Optional[Field]:
    """Shrink ``f`` to size 1 along every dim where its labels are constant; None if it holds no label at all."""
    n = f.numel()
    if n == 0:
        return None
    if n == 1:
        return None if int(f.reshape(-1)[0]) < 0 else f
    # numpy, on a view (a few small array operations per dim: numpy's per-call cost is a fraction of torch's)
    a = _as_numpy(f)
    # drop each dim's stride-0 (broadcast) positions first
    if 0 in a.strides:
        a = a[tuple(slice(0, 1) if s > 1 and st == 0 else slice(None) for s, st in zip(a.shape, a.strides))]
    if _max(a) < 0:
        return None
    changed = a.shape != tuple(f.shape)
    for d in range(a.ndim):
        if a.shape[d] > 1:
            first = a[(slice(None),) * d + (slice(0, 1),)]
            if not _count(a != first):
                a, changed = first, True
    if not changed and f.is_contiguous():
        return f
    return torch.from_numpy(np.ascontiguousarray(a))


def align(f: Field, ndim: int) -> Field:
    """Left-pad ``f`` with singleton dims to ``ndim`` dims (numpy broadcasting alignment)."""
    if f.ndim == ndim:
        return f
    return f.reshape((1,) * (ndim - f.ndim) + tuple(f.shape))


def full_field(f: Field, shape: Sequence[int]) -> Field:
    """``f`` expanded to the value's full shape (a view, no copy)."""
    return f.expand(tuple(shape))


def new_field(shape: Sequence[int], dim: int, gids: torch.Tensor) -> Field:
    """A field labelling ``dim`` of a tensor of ``shape`` with ``gids`` (len == shape[dim]).

    The view's sizes go to ``reshape`` as separate ints: torch parses those about twice as fast as one list."""
    return gids.reshape(*field_view(len(shape), dim, int(gids.numel())))


def field_view(ndim: int, dim: int, n: int) -> Tuple[int, ...]:
    """The shape of a field of an ``ndim``-d tensor whose ``n`` labels vary along ``dim`` (``0 <= dim < ndim``)."""
    return (1,) * dim + (n,) + (1,) * (ndim - dim - 1)


def collapse(couplings: "Couplings", f: Field, dims: Sequence[int], reason: str) -> Optional[Field]:
    """The labels ``f`` leaves on the result of an op that collapses ``dims`` (a sum, mean or max over them, or a
    contraction) when ``f`` also varies along a dim the op keeps.

    Each kept position of the result combines every position of ``f`` along ``dims``, so those channels can only be
    removed together: they are coupled (a channel combined with a position that holds none is fixed, with
    ``reason``), and the result carries ``f`` narrowed to size 1 along ``dims`` (same ``ndim``: the caller squeezes
    the dims the op drops). Returns None when ``f`` varies along ``dims`` only: every channel is summed away and the
    result no longer depends on which of them exist. Returns ``f`` itself when it does not vary along ``dims``.

    >>> c = Couplings()
    >>> f = torch.tensor([[1, 2, 3], [4, 5, 6]])      # (radix=2, C=3): summed over the radix dim
    >>> collapse(c, f, [0], "sum").tolist()
    [[1, 2, 3]]
    >>> sorted(zip(np.concatenate(c.pair_a).tolist(), np.concatenate(c.pair_b).tolist()))
    [(4, 1), (5, 2), (6, 3)]
    >>> collapse(c, torch.tensor([[7], [8]]), [0], "sum") is None   # only the summed dim holds channels
    True
    """
    collapsed = [d for d in dims if 0 <= d < f.ndim and f.shape[d] > 1]
    if not collapsed:
        return f
    if not varying_dims(f) - set(collapsed):
        return None
    base = f
    for d in collapsed:
        base = base.narrow(d, 0, 1)
    couplings.unify(f, base, reason)
    return base


def merge_fields(fields: List[Field]) -> List[Field]:
    """Keep at most one field per varying dim (callers unify overlapping fields before merging)."""
    if len(fields) <= 1:  # (what the loop below keeps of one field)
        return [f for f in fields if varying_dims(f)]
    out: List[Field] = []
    used: set = set()
    for f in sorted(fields, key=lambda t: -len(varying_dims(t))):
        dims = varying_dims(f)
        if not dims:
            continue  # one label everywhere: a single channel, which can never be pruned (it would leave none)
        if dims & used:
            continue
        used |= dims
        out.append(f)
    return out


class Couplings:
    """Pairs of global ids that must be pruned together, and ids that must never be pruned.

    Fields come in as int64 CPU tensors (the label arithmetic replays torch shape ops) and are kept as numpy arrays:
    the bookkeeping here is many small elementwise operations, which numpy runs several times faster than torch."""

    def __init__(self):
        self.pair_a: List[np.ndarray] = []
        self.pair_b: List[np.ndarray] = []
        self.fixed: List[Tuple[np.ndarray, str]] = []
        #: ``(a0, b0, n)``: ids ``a0 + k`` and ``b0 + k`` coupled for ``k < n`` (two blocks of consecutive ids, a layer
        #: reading another layer's channels as they were made); expanded into pairs by :meth:`as_numpy`
        self.ranges: List[Tuple[int, int, int]] = []

    def pair(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self._pair(_as_numpy(a), _as_numpy(b))

    def _pair(self, a: np.ndarray, b: np.ndarray) -> None:
        stored = max(_stored_numel(a), _stored_numel(b))  # fewer than the broadcast size: positions repeat
        if a.shape != b.shape:
            a, b = np.broadcast_arrays(a, b)
        mask = (a >= 0) & (b >= 0) & (a != b)
        if _count(mask):
            pa, pb = a[mask], b[mask]
            if pa.size > max(stored, 64):  # many positions repeat the same pair; keep each pair once
                key = unique_ints((pa << 32) | pb)  # ids are < 2**31 (one per channel of the model)
                pa, pb = key >> 32, key & 0xFFFFFFFF
            self.pair_a.append(pa.reshape(-1))
            self.pair_b.append(pb.reshape(-1))

    def fix(self, ids: torch.Tensor, reason: str) -> None:
        self._fix(_as_numpy(ids), reason)

    def _fix(self, ids: np.ndarray, reason: str) -> None:
        ids = ids.reshape(-1)
        ids = ids[ids >= 0]
        if ids.size:
            self.fixed.append((unique_ints(ids), reason))

    def unify(self, a: Field, b: Field, reason: str) -> None:
        """Couple ``a`` and ``b`` position by position; a labeled position facing an unlabeled one is fixed."""
        a, b = _as_numpy(a), _as_numpy(b)
        if a.shape == b.shape and a.size and a.flags.c_contiguous and b.flags.c_contiguous \
                and _min(a) >= 0 and _min(b) >= 0:
            # the common case (a layer reading labeled channels): every position labeled on both sides, nothing
            # broadcast; pairs are every position where the ids differ, nothing is fixed
            differ = a != b
            n_differ = _count(differ)
            if n_differ == differ.size:
                self.pair_a.append(a.reshape(-1).copy())
                self.pair_b.append(b.reshape(-1).copy())
            elif n_differ:
                self.pair_a.append(a[differ])
                self.pair_b.append(b[differ])
            return
        self._pair(a, b)
        if a.shape != b.shape:
            a, b = np.broadcast_arrays(a, b)
        self._fix(a[(a >= 0) & (b < 0)], reason)
        self._fix(b[(b >= 0) & (a < 0)], reason)

    def unify_ids(self, ids: torch.Tensor, f: Field, reason: str) -> None:
        """:meth:`unify` of ``new_field(shape, d, ids)`` with ``f`` when ``f`` varies along ``d`` only (``f.numel() ==
        ids.numel()``, the common case of a layer reading labeled channels): the same pairs and fixed ids, compared
        as two 1-d arrays without building the field. ``ids`` are channel ids (all >= 1)."""
        a, b = _as_numpy(ids).reshape(-1), _as_numpy(f).reshape(-1)
        if _min(b) >= 0:  # (what unify's common case and its general case both record then)
            differ = a != b
            n_differ = _count(differ)
            if n_differ == differ.size:
                self.pair_a.append(a.copy())
                self.pair_b.append(b.copy())
            elif n_differ:
                self.pair_a.append(a[differ])
                self.pair_b.append(b[differ])
            return
        labeled = b >= 0
        mask = labeled & (a != b)
        if _count(mask):
            self.pair_a.append(a[mask])
            self.pair_b.append(b[mask])
        self._fix(a[~labeled], reason)

    def tie_along(self, f: Field, dims: Sequence[int]) -> None:
        """Couple labels that differ only in their position along ``dims`` (e.g. the same offset in every group)."""
        base = f
        for d in dims:
            if base.shape[d] > 1:
                base = base.narrow(d, 0, 1)
        self.pair(f, base)

    def pair_range(self, a0: int, b0: int, n: int) -> None:
        """Couple ids ``a0 .. a0 + n - 1`` with ``b0 .. b0 + n - 1`` position by position (``a0 != b0``, all ids
        >= 1): what :meth:`unify_ids` records for two blocks of consecutive ids, kept as three ints until
        :meth:`as_numpy`."""
        self.ranges.append((a0, b0, n))

    def as_numpy(self):
        """``(pair_a, pair_b)``: lists of id arrays, the ranges of :meth:`pair_range` last (as one array each; the
        classes the pairs make do not depend on their order)."""
        a, b = list(self.pair_a), list(self.pair_b)
        if self.ranges:
            ra, rb = range_pairs(self.ranges)
            a.append(ra)
            b.append(rb)
        return a, b

    def fixed_as_numpy(self):
        return list(self.fixed)


# whole-array reductions without the Python wrappers of ``ndarray.min`` / ``.max`` / ``.all`` (a few microseconds
# each on the small label arrays, called several times per traced op)
_count = np.count_nonzero


def _min(a: np.ndarray):
    return np.minimum.reduce(a, axis=None)


def _max(a: np.ndarray):
    return np.maximum.reduce(a, axis=None)


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A label field as a numpy view (no copy; expanded views keep their zero strides)."""
    _check_real(t)
    return t.numpy()


def _stored_numel(a: np.ndarray) -> int:
    """How many distinct elements a (possibly expanded) view reads: the sizes of its dims with a nonzero stride."""
    n = 1
    for size, stride in zip(a.shape, a.strides):
        if stride:
            n *= size
    return n


def _check_real(*tensors) -> None:
    for t in tensors:
        if not t.is_cpu or t.dtype is not torch.long:
            raise RuntimeError(f"internal: a label tensor must be int64 on the CPU, got {t.dtype} on {t.device}")

