"""Building a pruned layer's new tensors and assigning them atomically.

A pruner never modifies a tensor in place: it computes the channels that stay (:func:`keep_array`), builds new
parameters and buffers holding only those entries (:func:`derive_param` keeps ``requires_grad`` and slices
``.grad`` the same way; channels-last layouts are kept), and assigns everything through one :class:`LayerEdit`,
which undoes every assignment if any of them fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._index import long_tensor

__all__ = ["LayerEdit", "keep_array", "keep_indices", "index_tensor", "derive_param", "derive_tensor", "selector"]


def keep_array(n: int, idxs: Iterable[int]) -> np.ndarray:
    """The channels that stay, as a sorted ``int64`` numpy array (the complement of ``idxs`` in ``range(n)``).

    >>> keep_array(5, [1, 3]).tolist()
    [0, 2, 4]
    """
    mask = np.ones(n, dtype=bool)
    drop = getattr(idxs, "array", None)  # CheckedIndices made from an array keep it
    if drop is None:
        drop = idxs if isinstance(idxs, np.ndarray) else np.fromiter(idxs, dtype=np.int64)
    mask[drop[(drop >= 0) & (drop < n)]] = False
    return np.flatnonzero(mask)


def keep_indices(n: int, idxs: Iterable[int]) -> list[int]:
    """The sorted complement of ``idxs`` in ``range(n)``: the channels that stay.

    >>> keep_indices(5, [1, 3])
    [0, 2, 4]
    """
    return keep_array(n, idxs).tolist()


def index_tensor(idxs: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """A ``torch.long`` tensor of ``idxs`` on ``device``."""
    return long_tensor(idxs, device)


def _same_layout(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Give ``new`` the channels-last memory format of ``old`` when ``old`` had it (index_select drops it)."""
    if new.dim() == old.dim() and old.dim() in (4, 5) and not old.is_contiguous():
        fmt = torch.channels_last if old.dim() == 4 else torch.channels_last_3d
        if old.is_contiguous(memory_format=fmt):
            return new.contiguous(memory_format=fmt)
    return new


def derive_param(old: nn.Parameter, fn: Callable[[torch.Tensor], torch.Tensor]) -> nn.Parameter:
    """A new parameter ``fn(old)``, keeping ``requires_grad``; ``.grad`` (if any) is mapped with ``fn`` too.

    ``fn`` must build a new tensor (e.g. with :func:`torch.index_select`), never a view of ``old``.
    """
    with torch.no_grad():
        data = _same_layout(fn(old.detach()), old)
        grad = _same_layout(fn(old.grad.detach()), old.grad) if old.grad is not None else None
    new = nn.Parameter(data, requires_grad=old.requires_grad)
    if grad is not None:
        new.grad = grad
    return new


def derive_tensor(old: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn(old)`` for a buffer (or a parameter: then a new parameter, see :func:`derive_param`)."""
    if isinstance(old, nn.Parameter):
        return derive_param(old, fn)
    with torch.no_grad():
        return _same_layout(fn(old.detach()), old)


def selector(*dims_keeps: tuple[int, Sequence[int]], index: Callable = index_tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function selecting ``keep`` along ``dim`` for each ``(dim, keep)`` pair, applied in order.
    ``index(keep, device)`` makes the index tensors (:func:`index_tensor` by default)."""

    def fn(t: torch.Tensor) -> torch.Tensor:
        for dim, keep in dims_keeps:
            t = torch.index_select(t, dim, index(keep, t.device))
        return t

    return fn


class LayerEdit:
    """Attribute assignments to one or more modules, applied all together or not at all.

    The pruners put every new tensor and attribute value in an edit (each method returns the edit, so calls chain),
    then call :meth:`apply`. If an assignment (or the ``finalize`` callback) raises, every assignment already made is
    undone in reverse order and the exception propagates, so the layer is left as it was.

    >>> import torch.nn as nn
    >>> fc = nn.Linear(4, 3)
    >>> LayerEdit().select(fc, "weight", (0, [0, 2])).select(fc, "bias", (0, [0, 2])).set(fc, "out_features", 2).apply()
    >>> fc
    Linear(in_features=4, out_features=2, bias=True)
    """

    def __init__(self) -> None:
        self._items: list[tuple[Any, str, Any]] = []
        self._index_cache: dict[tuple[int, Any], tuple[Sequence[int], torch.Tensor]] = {}

    def _index(self, keep: Sequence[int], device) -> torch.Tensor:
        """``keep`` as a long tensor on ``device``, converted once per edit (a layer selects the same list often)."""
        key = (id(keep), device)
        hit = self._index_cache.get(key)
        if hit is None or hit[0] is not keep:
            hit = self._index_cache[key] = (keep, index_tensor(keep, device))
        return hit[1]

    def set(self, obj: Any, name: str, value: Any) -> "LayerEdit":
        """Assign ``obj.name = value``."""
        self._items.append((obj, name, value))
        return self

    def select(self, module: nn.Module, name: str, *dims_keeps: tuple[int, Sequence[int]]) -> "LayerEdit":
        """``module.name`` (a parameter or buffer; nothing if it is ``None``) -> the entries ``keep`` along ``dim`` for
        each ``(dim, keep)``."""
        return self.derive(module, name, selector(*dims_keeps, index=self._index))

    def derive(self, module: nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> "LayerEdit":
        """``module.name`` (a parameter or buffer; nothing if it is ``None``) -> ``fn(module.name)``."""
        old = getattr(module, name, None)
        return self if old is None else self.set(module, name, derive_tensor(old, fn))

    def apply(self, finalize: Callable[[], None] | None = None) -> None:
        """Make every assignment, then call ``finalize``; on any error undo them all and re-raise."""
        done: list[tuple[Any, str, Any]] = []
        try:
            for obj, name, value in self._items:
                old = getattr(obj, name)
                setattr(obj, name, value)
                done.append((obj, name, old))
            if finalize is not None:
                finalize()
        except BaseException:
            for obj, name, old in reversed(done):
                try:
                    setattr(obj, name, old)
                except Exception:  # pragma: no cover - best effort; the original error matters more
                    pass
            if finalize is not None:
                try:
                    finalize()
                except Exception:  # pragma: no cover
                    pass
            raise
