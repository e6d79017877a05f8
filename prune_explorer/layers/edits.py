"""Building a pruned layer's new tensors and assigning them atomically.

A pruner never modifies a tensor in place: it computes the channels that stay (:func:`keep_array`), builds new
parameters and buffers holding only those entries (:func:`derive_param` keeps ``requires_grad`` and slices
``.grad`` the same way; channels-last layouts are kept), and assigns everything through one :class:`LayerEdit`,
which undoes every assignment if any of them fails.

A batch that cuts one tensor along several dims (a conv's output channels for one group, its input channels for
another) copies it once: inside :func:`composed_cuts`, :meth:`LayerEdit.select` on the layers it names installs a
placeholder of the cut shape and records the selection on the original tensor; a later selection of the
placeholder composes with it, and :meth:`ComposedCuts.flush` copies each original once (the leading dim first, then
the others, each with ``index_select``) into its placeholder's ``.data`` (the same parameter object stays installed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as _module_mod

from .._atomic import finish
from .._index import long_array, long_tensor

__all__ = ["LayerEdit", "CutSpec", "keep_array", "keep_indices", "index_tensor", "derive_param", "derive_tensor",
           "selector", "ComposedCuts", "composed_cuts"]


def index_array(idxs: Iterable[int]) -> np.ndarray:
    """Channel indices as a 1-D ``int64`` numpy array: the array a checked index list
    (:class:`~.base.CheckedIndices`) carries when it has one, else :func:`~prune_explorer._index.long_array`."""
    array = getattr(idxs, "array", None)
    return long_array(idxs if array is None else array)


def keep_array(n: int, idxs: Iterable[int]) -> np.ndarray:
    """The channels that stay, as a sorted ``int64`` numpy array (the complement of ``idxs`` in ``range(n)``).

    >>> keep_array(5, [1, 3]).tolist()
    [0, 2, 4]
    """
    mask = np.empty(n, dtype=bool)
    mask.fill(True)  # (np.ones: three times the cost on a few hundred entries)
    drop = getattr(idxs, "array", None)  # CheckedIndices made from an array keep it (sorted: in range if its ends are)
    if drop is None or not isinstance(drop, np.ndarray) or (drop.size and (drop[0] < 0 or drop[-1] >= n)):
        drop = idxs if isinstance(idxs, np.ndarray) else np.fromiter(idxs, dtype=np.int64)
        drop = drop[(drop >= 0) & (drop < n)]
    mask[drop] = False
    return mask.nonzero()[0]


def keep_indices(n: int, idxs: Iterable[int]) -> list[int]:
    """The sorted complement of ``idxs`` in ``range(n)``: the channels that stay.

    >>> keep_indices(5, [1, 3])
    [0, 2, 4]
    """
    return keep_array(n, idxs).tolist()


def index_tensor(idxs: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """A ``torch.long`` tensor of ``idxs`` on ``device``."""
    return long_tensor(idxs, device)


def _channels_last(old: torch.Tensor) -> Optional[torch.memory_format]:
    """The channels-last memory format ``old`` is laid out in, if any."""
    if old.dim() in (4, 5) and not old.is_contiguous():
        fmt = torch.channels_last if old.dim() == 4 else torch.channels_last_3d
        if old.is_contiguous(memory_format=fmt):
            return fmt
    return None


def _same_layout(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Give ``new`` the channels-last memory format of ``old`` when ``old`` had it (index_select drops it)."""
    if new.dim() == old.dim():
        fmt = _channels_last(old)
        if fmt is not None:
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
    if _is_param(old):
        return derive_param(old, fn)
    with torch.no_grad():
        return _same_layout(fn(old.detach()), old)


def _is_param(t: torch.Tensor) -> bool:
    """``isinstance(t, nn.Parameter)``, without the Python ``__instancecheck__`` of Parameter's metaclass for a plain
    tensor."""
    tp = type(t)
    return tp is nn.Parameter or (tp is not torch.Tensor and isinstance(t, nn.Parameter))


def _selected(old: torch.Tensor, dims_keeps: Sequence[tuple[int, Sequence[int]]], index: Callable) -> torch.Tensor:
    """What ``derive_tensor(old, selector(*dims_keeps, index=index))`` returns, without a ``no_grad`` block per
    tensor: the selections read ``old.detach()`` (and its ``.grad`` detached), so no autograd graph is recorded.
    The index tensors (``index(keep, device)``) are made once for the data and its gradient."""
    data = old.detach()
    if len(dims_keeps) == 1:
        dim, keep = dims_keeps[0]
        sel = ((dim, index(keep, data.device)),)
        data = torch.index_select(data, dim, sel[0][1])
    else:
        sel = [(dim, index(keep, data.device)) for dim, keep in dims_keeps]
        for dim, i in sel:
            data = torch.index_select(data, dim, i)
    if old.dim() >= 4:
        data = _same_layout(data, old)
    if not _is_param(old):
        return data
    new = nn.Parameter(data, requires_grad=old.requires_grad)
    grad = old.grad
    if grad is not None:
        g = grad.detach()
        for dim, i in sel:
            g = torch.index_select(g, dim, i)
        new.grad = _same_layout(g, grad)
    return new


def selector(*dims_keeps: tuple[int, Sequence[int]], index: Callable = index_tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function selecting ``keep`` along ``dim`` for each ``(dim, keep)`` pair, applied in order.
    ``index(keep, device)`` makes the index tensors (:func:`index_tensor` by default)."""

    def fn(t: torch.Tensor) -> torch.Tensor:
        for dim, keep in dims_keeps:
            t = torch.index_select(t, dim, index(keep, t.device))
        return t

    return fn


class _Pending:
    """A placeholder installed in place of a cut tensor, and what it stands for: ``source`` with the entries
    ``keeps[dim]`` (int64 arrays, positions on ``source``) kept along each dim."""

    __slots__ = ("placeholder", "source", "keeps")

    def __init__(self, placeholder: torch.Tensor, source: torch.Tensor, keeps: Dict[int, np.ndarray]):
        self.placeholder, self.source, self.keeps = placeholder, source, keeps


def _gather(t: torch.Tensor, keeps: Dict[int, np.ndarray]) -> torch.Tensor:
    """``t`` with the entries ``keeps[dim]`` along each dim: the leading dim first (whole rows, the cheapest copy,
    which also shrinks what the later ones read), then the others; a dim keeping every entry in order is skipped.
    Always a new tensor (a clone when nothing is cut)."""
    out = None
    for dim in sorted(keeps):
        keep = keeps[dim]
        if keep.size == t.shape[dim] and np.array_equal(keep, np.arange(keep.size)):
            continue  # every entry, in order
        out = torch.index_select(out if out is not None else t, dim, index_tensor(keep, t.device))
    return out if out is not None else t.clone()


class ComposedCuts:
    """The selections of one batch of cuts, composed per tensor and copied once (see the module docstring).

    ``modules``: the ids of the layers whose :meth:`LayerEdit.select` calls are composed (the caller names the
    layers whose pruners only select entries through :class:`LayerEdit`; any other read of a placeholder would see
    uninitialised values). :meth:`flush` before anything reads the values of the cut tensors."""

    def __init__(self, modules: Iterable[int]):
        self.modules = set(modules)
        self.open = True  # False once flushed or left: nothing more is composed
        self._pending: Dict[int, _Pending] = {}  # id(placeholder) -> what it stands for

    def composes(self, module: Any) -> bool:
        return self.open and id(module) in self.modules

    def close(self) -> None:
        """Compose nothing more (the placeholders still pending are dropped with the batch that failed)."""
        self.open = False

    def select(self, old: torch.Tensor, dims_keeps: Sequence[tuple[int, Sequence[int]]]) -> torch.Tensor:
        """A placeholder for ``old`` with ``keep`` along each ``dim`` (``old`` may itself be a placeholder)."""
        entry = self._pending.get(id(old))
        if entry is not None and entry.placeholder is old:  # composed: the older placeholder is never copied (a
            del self._pending[id(old)]  # failed edit fails the whole batch, which puts the original tensors back)
            source, keeps = entry.source, dict(entry.keeps)
        else:
            source, keeps = old, {}
        for dim, keep in dims_keeps:
            d = dim % old.dim()
            k = index_array(keep)
            keeps[d] = keeps[d][k] if d in keeps else k
        shape = [int(keeps[d].size) if d in keeps else n for d, n in enumerate(source.shape)]
        fmt = _channels_last(source)
        empty = torch.empty(shape, dtype=source.dtype, device=source.device,
                            memory_format=fmt if fmt is not None else torch.contiguous_format)
        new = nn.Parameter(empty, requires_grad=source.requires_grad) if _is_param(source) else empty
        self._pending[id(new)] = _Pending(new, source, keeps)
        return new

    def flush(self, t: Optional[torch.Tensor] = None) -> None:
        """Copy the kept entries into the placeholders (only ``t``'s, when given and a placeholder)."""
        if t is not None:
            entry = self._pending.get(id(t))
            if entry is None or entry.placeholder is not t:
                return
            entries = [self._pending.pop(id(t))]
        else:
            self.open = False
            entries = list(self._pending.values())
            self._pending.clear()
        with torch.no_grad():
            for e in entries:
                src = e.source
                e.placeholder.data = _same_layout(_gather(src.detach(), e.keeps), src)
                if _is_param(src) and src.grad is not None:
                    e.placeholder.grad = _same_layout(_gather(src.grad.detach(), e.keeps), src.grad)


_COMPOSED: ContextVar[Optional[ComposedCuts]] = ContextVar("prune_explorer_composed_cuts", default=None)


@contextlib.contextmanager
def composed_cuts(cuts: ComposedCuts | Iterable[int]) -> Iterator[ComposedCuts]:
    """Compose the :meth:`LayerEdit.select` calls on the layers of ``cuts`` (a :class:`ComposedCuts`, or the layers'
    ids) until :meth:`ComposedCuts.flush` (call it before leaving: placeholders left unflushed hold uninitialised
    values). Leaving closes ``cuts``; a caller that must survive an interrupt landing in the very exit also closes
    it in its own rollback (a closed one composes nothing, even while it is still the active one)."""
    if not isinstance(cuts, ComposedCuts):
        cuts = ComposedCuts(cuts)
    prev = _COMPOSED.get()
    try:
        _COMPOSED.set(cuts)
        yield cuts
    finally:
        finish(_leave, cuts, prev)


def _leave(cuts: ComposedCuts, prev: Optional[ComposedCuts]) -> None:
    cuts.close()
    if _COMPOSED.get() is cuts:
        _COMPOSED.set(prev)


# ---- reading and assigning a module's tensors and attributes ----------------------------------------------------

#: ``(module type, name) -> bool``: whether ``getattr`` / ``setattr`` of ``name`` on that type follow ``nn.Module``'s
#: own rules alone (no ``__getattribute__`` / ``__getattr__`` / ``__setattr__`` override, no class attribute or
#: descriptor of that name), so the module's dicts may be read and written directly
_PLAIN_ACCESS: Dict[tuple, bool] = {}
_MODULE_GETATTRIBUTE = nn.Module.__getattribute__


def _plain_access(tp: type, name: str) -> bool:
    key = (tp, name)
    ok = _PLAIN_ACCESS.get(key)
    if ok is None:
        ok = _PLAIN_ACCESS[key] = (issubclass(tp, nn.Module) and tp.__getattribute__ is _MODULE_GETATTRIBUTE
                                   and tp.__getattr__ is nn.Module.__getattr__
                                   and tp.__setattr__ is nn.Module.__setattr__
                                   and tp.register_buffer is nn.Module.register_buffer and not hasattr(tp, name))
    return ok


_RAISE = object()


def _hooked(kind: str) -> bool:
    """Whether torch's global ``kind`` ("parameter" / "buffer") registration hooks are installed, or this torch keeps
    them somewhere unknown (then ``setattr`` runs, which calls them)."""
    return getattr(_module_mod, _HOOK_DICTS[kind], True) != {}


#: where torch keeps its global registration hooks of each kind
_HOOK_DICTS = {kind: f"_global_{kind}_registration_hooks" for kind in ("parameter", "buffer")}


def read(obj: Any, name: str, default: Any = None) -> Any:
    """``getattr(obj, name, default)`` (``getattr(obj, name)`` when ``default`` is :data:`_RAISE`); for a module's
    parameter, buffer or attribute straight from its dicts (what ``getattr`` returns there, without
    ``nn.Module.__getattr__``'s Python call)."""
    if _plain_access(type(obj), name):
        d = obj.__dict__
        if name in d:
            return d[name]
        params = d["_parameters"]
        if name in params:
            return params[name]
        buffers = d["_buffers"]
        if name in buffers:
            return buffers[name]
    return getattr(obj, name) if default is _RAISE else getattr(obj, name, default)


def assign(obj: Any, name: str, value: Any) -> None:
    """``setattr(obj, name, value)``. Where ``nn.Module.__setattr__`` would only store ``value`` in one of the
    module's dicts (a new leaf ``nn.Parameter`` replacing a parameter, a plain tensor replacing a buffer of the same
    persistence, a plain value replacing an instance attribute; no registration hook installed), it is stored there
    directly: the same dict entry, in the same place, as ``setattr`` leaves."""
    if _plain_access(type(obj), name):
        d = obj.__dict__
        params, buffers = d["_parameters"], d["_buffers"]
        if name in d:
            if (name not in params and name not in buffers and name not in d["_modules"]
                    and not isinstance(value, (torch.Tensor, nn.Module))):
                d[name] = value
                return
        elif name in params:
            if type(value) is nn.Parameter and value.grad_fn is None and not _hooked("parameter"):
                params[name] = value
                return
        elif name in buffers:
            if type(value) is torch.Tensor and not _hooked("buffer"):
                buffers[name] = value
                return
    setattr(obj, name, value)


def exchange(obj: Any, name: str, value: Any) -> Any:
    """``assign(obj, name, value)``, returning what ``read(obj, name, _RAISE)`` gave before: one lookup for a module's
    parameter or buffer replaced by a new one."""
    if _plain_access(type(obj), name):
        d = obj.__dict__
        if name not in d:
            params = d["_parameters"]
            if name in params:
                if type(value) is nn.Parameter and value.grad_fn is None and not _hooked("parameter"):
                    old = params[name]
                    params[name] = value
                    return old
            else:
                buffers = d["_buffers"]
                if name in buffers and type(value) is torch.Tensor and not _hooked("buffer"):
                    old = buffers[name]
                    buffers[name] = value
                    return old
    old = read(obj, name, _RAISE)
    assign(obj, name, value)
    return old


class CutSpec:
    """A layer cut as data: the tensors it selects entries of and the attributes it sets, in order, not applied yet
    (what a pruner's :meth:`~.base.BasePruningFunc.cut_spec` returns). :meth:`apply` makes them with one
    :class:`LayerEdit`; a batch cutting many layers composes the selections of every cut of one tensor and copies it
    once (:func:`~.batch_cut.cut_layers`).

    ``items``: ``(obj, name, dims_keeps, value)`` per step: ``dims_keeps`` is a tuple of ``(dim, keep)`` for
    :meth:`select` (``keep``: the entries kept along ``dim``), None for :meth:`set` (then ``value`` is assigned).

    >>> import torch.nn as nn
    >>> fc = nn.Linear(4, 3)
    >>> CutSpec().select(fc, "weight", (0, [0, 2])).select(fc, "bias", (0, [0, 2])).set(fc, "out_features", 2).apply()
    >>> fc
    Linear(in_features=4, out_features=2, bias=True)
    """

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[Any, str, Any, Any]] = []

    def select(self, module: nn.Module, name: str, *dims_keeps: tuple[int, Sequence[int]]) -> "CutSpec":
        """``module.name`` (a parameter or buffer; nothing if it is ``None``) -> its entries ``keep`` along ``dim`` for
        each ``(dim, keep)`` (as :meth:`LayerEdit.select`)."""
        self.items.append((module, name, dims_keeps, None))
        return self

    def set(self, obj: Any, name: str, value: Any) -> "CutSpec":
        """Assign ``obj.name = value``."""
        self.items.append((obj, name, None, value))
        return self

    def edit(self) -> "LayerEdit":
        """The :class:`LayerEdit` making these steps (its selections are composed inside :func:`composed_cuts`)."""
        edit = LayerEdit()
        for obj, name, dims_keeps, value in self.items:
            if dims_keeps is None:
                edit.set(obj, name, value)
            else:
                edit.select(obj, name, *dims_keeps)
        return edit

    def apply(self) -> None:
        """Make every step, all of them or (on any error) none."""
        self.edit().apply()


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
        each ``(dim, keep)``. Inside :func:`composed_cuts` naming ``module``: a placeholder, copied at the flush."""
        old = read(module, name)
        if old is None:
            return self
        cuts = _COMPOSED.get()
        if cuts is not None:
            if cuts.composes(module):
                return self.set(module, name, cuts.select(old, dims_keeps))
            cuts.flush(old)  # a pending cut of ``old`` is copied first
        self._items.append((module, name, _selected(old, dims_keeps, self._index)))
        return self

    def derive(self, module: nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> "LayerEdit":
        """``module.name`` (a parameter or buffer; nothing if it is ``None``) -> ``fn(module.name)``."""
        old = read(module, name)
        if old is None:
            return self
        cuts = _COMPOSED.get()
        if cuts is not None:
            cuts.flush(old)  # fn reads the values: a pending cut of ``old`` is copied first
        return self.set(module, name, derive_tensor(old, fn))

    def apply(self, finalize: Callable[[], None] | None = None) -> None:
        """Make every assignment, then call ``finalize``; on any error undo them all and re-raise."""
        done: list[tuple[Any, str, Any]] = []
        try:
            for obj, name, value in self._items:
                done.append((obj, name, exchange(obj, name, value)))
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
