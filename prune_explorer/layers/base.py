"""The interface shared by every per-layer pruning function, and the helpers they are built from.

A *pruner* (a :class:`BasePruningFunc` subclass) knows one family of layers: how many channels the layer
has on its output side and on its input side, and how to remove a set of those channels by building new,
smaller tensors and updating the layer's attributes so that the layer still runs and its ``repr`` shows the
new sizes.

Channel spaces
    *Output channels* are the entries of the layer's output feature dimension (``out_channels`` of a conv,
    ``out_features`` of a linear layer, ``num_features`` of a batch norm...). *Input channels* are the entries
    of the feature dimension the layer reads. For some layers (normalisation, PReLU, depthwise convolution,
    multi-head attention) the two are the same space; :meth:`BasePruningFunc.in_out_coupled` says so, and
    both ``prune_out_channels`` and ``prune_in_channels`` then do the same thing: call one, not both.

Atomicity
    Every ``prune_*`` method first validates the request with :meth:`BasePruningFunc.check`, then builds every
    new tensor, and only then assigns them (new :class:`torch.nn.Parameter` objects and new buffers; nothing
    is modified in place). If anything raises, the layer is exactly as it was. A new parameter keeps the
    dtype, device and ``requires_grad`` of the one it replaces; if the old one had a ``.grad``, the new one
    gets the same slice of it (as Torch-Pruning does), so an optimizer step taken right after pruning still
    sees matching gradients.

Indices
    ``idxs`` is a sequence of ints (a list, a tuple, a 1-D integer tensor or array) of the channels to
    *remove*. Indices must lie in ``[0, channels)``; negative indices, duplicates, floats and bools are
    errors. An empty sequence is a no-op.

Example::

    >>> import torch.nn as nn
    >>> from prune_explorer.layers import prune_conv_out_channels
    >>> conv = nn.Conv2d(3, 8, 3)
    >>> prune_conv_out_channels(conv, [0, 5])
    Conv2d(3, 6, kernel_size=(3, 3), stride=(1, 1))
    >>> tuple(conv.weight.shape)
    (6, 3, 3, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._index import long_tensor
from ..errors import PruningError
from ..validation import check_indices, short_list

__all__ = [
    "BasePruningFunc",
    "normalize_side",
    "normalize_indices",
    "keep_indices",
    "keep_array",
    "describe_layer",
]

_SIDE_WORDS = {"out": "output", "in": "input"}


def normalize_side(side: Any) -> str:
    """Return ``"out"`` or ``"in"``.

    Accepts ``"out"``/``"in"`` (also ``"output"``/``"input"``) and, for Torch-Pruning compatibility, the
    boolean ``to_output`` flag of ``BasePruningFunc.check(layer, idxs, to_output)``.

    >>> normalize_side(True), normalize_side("in")
    ('out', 'in')
    """
    if side is True:
        return "out"
    if side is False:
        return "in"
    if isinstance(side, str):
        s = side.strip().lower()
        if s in ("out", "output", "outputs"):
            return "out"
        if s in ("in", "input", "inputs"):
            return "in"
    raise PruningError(f"side must be 'out' or 'in' (got {side!r}).")


def describe_layer(layer: Any) -> str:
    """A short one-line description of a layer for error messages, e.g. ``Conv2d(3, 8, kernel_size=(3, 3))``.

    >>> describe_layer(nn.Linear(4, 2))
    'Linear(in_features=4, out_features=2, bias=True)'
    """
    if isinstance(layer, torch.Tensor):
        kind = "Parameter" if isinstance(layer, nn.Parameter) else "Tensor"
        return f"{kind} of shape {tuple(layer.shape)}"
    name = type(layer).__name__
    try:
        extra = layer.extra_repr() if isinstance(layer, nn.Module) else ""
    except Exception:  # pragma: no cover - a broken extra_repr must not hide the real error
        extra = ""
    if extra and "\n" not in extra and len(extra) <= 160:
        return f"{name}({extra})"
    return name


def normalize_indices(idxs: Any, *, what: str = "channel indices") -> list[int]:
    """Turn ``idxs`` into a sorted list of unique Python ints, or raise :class:`PruningError`.

    Accepts any iterable of integers (list, tuple, range, set, 1-D integer tensor or numpy array).
    Duplicates, bools, floats and non-integers are errors (the rules of :mod:`prune_explorer.validation`); range
    checks are done by the caller, which knows the channel count.

    >>> normalize_indices([3, 1, 2])
    [1, 2, 3]
    """
    return check_indices(idxs, what=what, sort=True).tolist()


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


# --------------------------------------------------------------------------------------------------------
# Building new tensors and assigning them atomically
# --------------------------------------------------------------------------------------------------------


def index_tensor(idxs: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """A ``torch.long`` tensor of ``idxs`` on ``device``."""
    return long_tensor(idxs, device)


def select(t: torch.Tensor, dim: int, keep: Sequence[int]) -> torch.Tensor:
    """A new tensor holding the entries ``keep`` of ``t`` along ``dim`` (``t`` itself is not touched)."""
    with torch.no_grad():
        return torch.index_select(t.detach(), dim, index_tensor(keep, t.device))


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


class CheckedIndices(list):
    """The sorted, unique channel indices :meth:`BasePruningFunc.check` returns, stamped with what they were
    validated for (layer, side, pruner type, channel count), so that checking the same list again for the same
    layer side, as a ``prune_*`` call right after the dependency graph's validation pass does, costs nothing.
    ``array``: the same indices as an ``int64`` numpy array when the caller passed one (else None)."""

    __slots__ = ("key", "array")

    def __init__(self, idxs: Iterable[int], key: tuple, array: np.ndarray | None = None) -> None:
        super().__init__(idxs)
        self.key = key
        self.array = array


class Plan:
    """A list of attribute assignments applied all together, or not at all.

    The pruners put every new tensor and attribute value in a plan, then call :meth:`apply`. If an
    assignment (or the ``finalize`` callback) raises, every assignment already made is undone in reverse
    order and the exception propagates, so the layer is left as it was.
    """

    def __init__(self) -> None:
        self._items: list[tuple[Any, str, Any]] = []
        self._index_cache: dict[tuple[int, Any], tuple[Sequence[int], torch.Tensor]] = {}

    def _index(self, keep: Sequence[int], device) -> torch.Tensor:
        """``keep`` as a long tensor on ``device``, converted once per plan (a layer selects the same list often)."""
        key = (id(keep), device)
        hit = self._index_cache.get(key)
        if hit is None or hit[0] is not keep:
            hit = self._index_cache[key] = (keep, index_tensor(keep, device))
        return hit[1]

    def set(self, obj: Any, name: str, value: Any) -> None:
        self._items.append((obj, name, value))

    def select(self, module: nn.Module, name: str, *dims_keeps: tuple[int, Sequence[int]]) -> None:
        """Plan ``module.name`` (a parameter or buffer, possibly ``None``) -> its selected entries."""
        old = getattr(module, name, None)
        if old is None:
            return
        self.set(module, name, derive_tensor(old, selector(*dims_keeps, index=self._index)))

    def derive(self, module: nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        old = getattr(module, name, None)
        if old is None:
            return
        self.set(module, name, derive_tensor(old, fn))

    def apply(self, finalize: Callable[[], None] | None = None) -> None:
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


# --------------------------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------------------------


class BasePruningFunc:
    """Base class of the per-layer pruners: channel counts, validation, and removal of channels.

    Subclasses set :attr:`TARGET_MODULES` (the layer types they handle, used by the registry) and implement
    :meth:`get_out_channels`, :meth:`get_in_channels`, :meth:`prune_out_channels` and
    :meth:`prune_in_channels`. They may override :meth:`channel_multiple`, :meth:`in_out_coupled` and
    :meth:`check_structure` to express layer-specific constraints.

    The module-level functions (``prune_conv_out_channels`` ...) are bound methods of singleton pruners,
    so ``fn.__self__`` is the pruner and :func:`prune_explorer.layers.pruner_of` finds it.

    A customised pruner for your own layer (Torch-Pruning style)::

        >>> import torch, torch.nn as nn
        >>> class Scale(nn.Module):
        ...     def __init__(self, n):
        ...         super().__init__()
        ...         self.n = n
        ...         self.scale = nn.Parameter(torch.ones(n))
        ...     def forward(self, x):
        ...         return x * self.scale
        >>> class ScalePruner(BasePruningFunc):
        ...     TARGET_MODULES = (Scale,)
        ...     def get_out_channels(self, layer): return layer.n
        ...     def get_in_channels(self, layer): return layer.n
        ...     def in_out_coupled(self, layer): return True
        ...     def prune_out_channels(self, layer, idxs):
        ...         idxs = self.check(layer, idxs, "out")
        ...         keep = keep_indices(layer.n, idxs)
        ...         layer.scale = self._prune_parameter_and_grad(layer.scale, keep, 0)
        ...         layer.n = len(keep)
        ...         return layer
        ...     def prune_in_channels(self, layer, idxs):
        ...         return self.prune_out_channels(layer, idxs)
        >>> ScalePruner().prune_out_channels(Scale(4), [1]).scale.shape
        torch.Size([3])
    """

    #: The layer types this pruner handles (the registry maps each of them to the pruner).
    TARGET_MODULES: tuple[type, ...] = ()

    def __init__(self, pruning_dim: int = 1) -> None:
        # ``pruning_dim`` is kept for Torch-Pruning compatibility (its BasePruningFunc takes it); only the
        # parameter pruner uses it.
        self.pruning_dim = pruning_dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ---- channel counts ---------------------------------------------------------------------------------

    def get_out_channels(self, layer: Any) -> int | None:
        """Size of the layer's output-channel space, or ``None`` if it has no prunable output side."""
        raise NotImplementedError(f"{type(self).__name__}.get_out_channels")

    def get_in_channels(self, layer: Any) -> int | None:
        """Size of the layer's input-channel space, or ``None`` if it has no prunable input side."""
        raise NotImplementedError(f"{type(self).__name__}.get_in_channels")

    def get_channels(self, layer: Any, side: Any) -> int | None:
        """``get_out_channels`` or ``get_in_channels`` according to ``side`` (``"out"``/``"in"``)."""
        return self.get_out_channels(layer) if normalize_side(side) == "out" else self.get_in_channels(layer)

    # ---- structure --------------------------------------------------------------------------------------

    def channel_multiple(self, layer: Any, side: Any) -> int:
        """Removals on ``side`` must remove a multiple of this many channels (so the count stays a multiple
        of it: GroupNorm's ``num_groups``, attention's ``num_heads``, a grouped conv's ``groups``). 1 here."""
        return 1

    def in_out_coupled(self, layer: Any) -> bool:
        """True if input and output channels are the same space, so that pruning one side prunes the other
        (normalisation layers, PReLU, depthwise convs, multi-head attention). Here: True only when the class
        aliases ``prune_in_channels = prune_out_channels`` (Torch-Pruning's way of declaring it)."""
        return type(self).prune_in_channels is type(self).prune_out_channels

    def coupled_indices(self, layer: Any, idxs: Any, from_side: Any) -> list[int]:
        """For a layer whose input and output channels are one space (:meth:`in_out_coupled`), the indices on
        the other side that go with ``idxs`` on ``from_side``: the same indices here (a depthwise conv with a
        channel multiplier maps them). Raises :class:`PruningError` for an uncoupled layer."""
        side = normalize_side(from_side)
        if not self.in_out_coupled(layer):
            raise self.error(layer, side, None, "its input and output channels are not the same space",
                             "prune the two sides of this layer separately")
        return self.check(layer, idxs, side)

    def get_out_channel_groups(self, layer: Any) -> int:
        """Number of equal blocks the output channels are split into (conv ``groups``, ``num_heads``...)."""
        return 1

    def get_in_channel_groups(self, layer: Any) -> int:
        """Number of equal blocks the input channels are split into (conv ``groups``, ``num_heads``...)."""
        return 1

    def specialize(self, layer: Any) -> BasePruningFunc:
        """The pruner to use for this particular layer; ``self`` here. The conv pruner returns the depthwise
        pruner for depthwise convolutions. The registry calls this in ``get``."""
        return self

    def variants(self) -> tuple:
        """Every pruner :meth:`specialize` may return (``self`` here)."""
        return (self,)

    # ---- validation -------------------------------------------------------------------------------------

    def describe(self, layer: Any) -> str:
        """How errors name the layer: its type and constructor arguments (:func:`describe_layer`)."""
        return describe_layer(layer)

    def error(self, layer: Any, side: str | None, idxs: Sequence[int] | None, problem: str, fix: str) -> PruningError:
        """Build the :class:`PruningError` for ``layer``: what was asked, what is wrong, how to fix it.

        The error carries ``.layer``, ``.side`` and ``.idxs`` so callers (the dependency graph) can add the
        layer's qualified name.
        """
        what = f"{self.describe(layer)}: cannot prune"
        if side is not None:
            what += f" {_SIDE_WORDS[side]} channels"
        if idxs is not None:
            what += f" {short_list(idxs)}"
        err = PruningError(f"{what}: {problem}. Fix: {fix}")
        err.layer = layer  # type: ignore[attr-defined]
        err.side = side  # type: ignore[attr-defined]
        err.idxs = list(idxs) if idxs is not None else None  # type: ignore[attr-defined]
        return err

    def check_layer(self, layer: Any, side: str) -> None:
        """Raise if this layer cannot be pruned at all (lazy, parametrised...). Subclasses may extend."""
        if not isinstance(layer, nn.Module):
            return
        modules = list(layer.named_modules())
        for prefix, m in modules:
            for name, p in m._parameters.items():
                if isinstance(p, nn.parameter.UninitializedParameter):
                    full = f"{prefix}.{name}" if prefix else name
                    raise self.error(
                        layer, side, None, f"its parameter {full!r} is not initialised yet (lazy module)",
                        "run one forward pass with example inputs before pruning",
                    )
        # torch.nn.utils.parametrize registers a ``parametrizations`` ModuleDict child on the module it changes
        if any("parametrizations" in m._modules for _, m in modules):
            raise self.error(
                layer, side, None, "it carries parametrizations (weight_norm, spectral_norm, ...)",
                "remove them first with torch.nn.utils.parametrize.remove_parametrizations",
            )

    def check_structure(self, layer: Any, idxs: list[int], side: str) -> None:
        """Layer-specific constraints on the (already range-checked, sorted, unique) indices. Nothing here."""

    def check(self, layer: Any, idxs: Any, side: Any) -> list[int]:
        """Validate a request to remove channels ``idxs`` on ``side`` (``"out"`` or ``"in"``).

        Returns the indices as a sorted list of unique ints. Raises :class:`PruningError` (naming the layer,
        the problem and a fix) if an index is not an int, is out of range or repeated, if the removal would
        leave no channel, if the number removed is not a multiple of :meth:`channel_multiple`, or if a
        layer-specific constraint (:meth:`check_structure`) fails. Nothing is modified.

        >>> from prune_explorer.layers import LinearPruner
        >>> LinearPruner().check(nn.Linear(4, 3), [2, 0], "out")
        [0, 2]
        """
        side = normalize_side(side)
        if type(idxs) is CheckedIndices and idxs.key == (id(layer), side, type(self), self.get_channels(layer, side)):
            return idxs  # this very list was validated for this layer side at its current size
        self.check_layer(layer, side)
        word = _SIDE_WORDS[side]
        n = self.get_channels(layer, side)
        try:
            arr = check_indices(idxs, n, what=f"{word}-channel indices", unit=f"{word} channels", sort=True,
                                min_keep=1)
        except PruningError as e:
            raise self.error(layer, side, None if e.kind in ("type", "duplicate") else e.checked_idxs, e.problem,
                             f"keep at least {max(self.channel_multiple(layer, side), 1)} channel(s)"
                             if e.kind == "empty" else e.fix) from None
        clean = arr.tolist()
        if n is None:
            raise self.error(
                layer, side, clean, f"this layer has no prunable {word} channels",
                f"prune the other side, or leave this layer out of {word}-channel pruning",
            )
        if not clean:
            return CheckedIndices(clean, (id(layer), side, type(self), n))
        m = self.channel_multiple(layer, side)
        if m > 1 and len(clean) % m:
            raise self.error(
                layer, side, clean,
                f"{len(clean)} channels removed, but the {word} channel count ({n}) must stay a multiple of {m}",
                f"remove a multiple of {m} channels (e.g. {len(clean) - len(clean) % m} or "
                f"{len(clean) + m - len(clean) % m})",
            )
        self.check_structure(layer, clean, side)
        return CheckedIndices(clean, (id(layer), side, type(self), n), arr)

    # ---- pruning ----------------------------------------------------------------------------------------

    def prune_out_channels(self, layer: Any, idxs: Sequence[int]) -> Any:
        """Remove output channels ``idxs`` from ``layer`` (in place on the module) and return it."""
        raise NotImplementedError(f"{type(self).__name__}.prune_out_channels")

    def prune_in_channels(self, layer: Any, idxs: Sequence[int]) -> Any:
        """Remove input channels ``idxs`` from ``layer`` (in place on the module) and return it."""
        raise NotImplementedError(f"{type(self).__name__}.prune_in_channels")

    # ---- Torch-Pruning compatibility helpers -------------------------------------------------------------

    @staticmethod
    def _prune_parameter_and_grad(weight: nn.Parameter, keep_idxs: Sequence[int], pruning_dim: int) -> nn.Parameter:
        """A new parameter holding the entries ``keep_idxs`` of ``weight`` along ``pruning_dim`` (and the same
        slice of ``weight.grad``). Same name and meaning as Torch-Pruning's helper, for custom pruners."""
        return derive_param(weight, selector((pruning_dim, list(keep_idxs))))
