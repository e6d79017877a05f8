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

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import PruningError
from ..validation import check_indices, short_list
from .edits import CutSpec, derive_param, keep_array, selector

__all__ = [
    "BasePruningFunc",
    "composes_cuts",
    "CheckedIndices",
    "normalize_side",
    "normalize_indices",
    "describe_layer",
]

_SIDE_WORDS = {"out": "output", "in": "input"}
#: how :meth:`BasePruningFunc.check` words the indices and channels of each side in its errors
_WHAT = {side: (f"{word}-channel indices", f"{word} channels") for side, word in _SIDE_WORDS.items()}
#: parameter types that are not lazy (no ``isinstance`` through Parameter's metaclass needed)
_INITIALISED = (nn.Parameter, type(None))


def normalize_side(side: Any) -> str:
    """Return ``"out"`` or ``"in"``.

    Accepts ``"out"``/``"in"`` (also ``"output"``/``"input"``) and, for Torch-Pruning compatibility, the
    boolean ``to_output`` flag of ``BasePruningFunc.check(layer, idxs, to_output)``.

    >>> normalize_side(True), normalize_side("in")
    ('out', 'in')
    """
    if type(side) is str and side in _SIDE_WORDS:  # "out" / "in" as the library passes them
        return side
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


def composes_cuts(pruner: Any) -> bool:
    """Whether ``pruner``'s own class declares :attr:`BasePruningFunc.COMPOSABLE_CUTS` (a subclass that may
    override how it prunes does not inherit it)."""
    return bool(type(pruner).__dict__.get("COMPOSABLE_CUTS", False))


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
        >>> from prune_explorer.layers import keep_indices
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

    #: True when this very class (not inherited: set it in the class body) prunes only through
    #: :meth:`LayerEdit.select <.edits.LayerEdit.select>`, :meth:`~.edits.LayerEdit.derive` and
    #: :meth:`~.edits.LayerEdit.set`, reading no tensor value otherwise: a batch cutting such a layer on both sides
    #: then copies each of its tensors once (:func:`~.edits.composed_cuts`). See :func:`composes_cuts`. Such a class
    #: also promises that its :meth:`remove` applies :meth:`cut_spec` wherever that returns a spec, and that
    #: :meth:`cut_spec` reads the layer's attributes, not its tensors: a batch then cuts its layers from their specs
    #: (:func:`~.batch_cut.cut_layers`), without calling :meth:`prune_out_channels` / :meth:`prune_in_channels`
    #: when the class keeps this base class's (check, then remove).
    COMPOSABLE_CUTS: bool = False

    def __init__(self, pruning_dim: int = 1) -> None:
        # ``pruning_dim`` is kept for Torch-Pruning compatibility (its BasePruningFunc takes it); only the
        # parameter pruner uses it.
        self.pruning_dim = pruning_dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ---- channel counts ---------------------------------------------------------------------------------

    #: ``(output attribute, input attribute)``: the layer attributes holding its channel counts (``None``: that side
    #: has no prunable channels), read by the default :meth:`get_out_channels` / :meth:`get_in_channels`.
    CHANNEL_ATTRS: tuple[str | None, str | None] | None = None

    def _count(self, layer: Any, side: int, method: str) -> int | None:
        if self.CHANNEL_ATTRS is None:
            raise NotImplementedError(f"{type(self).__name__}.{method}")
        attr = self.CHANNEL_ATTRS[side]
        return None if attr is None else getattr(layer, attr)

    def get_out_channels(self, layer: Any) -> int | None:
        """Size of the layer's output-channel space, or ``None`` if it has no prunable output side."""
        return self._count(layer, 0, "get_out_channels")

    def get_in_channels(self, layer: Any) -> int | None:
        """Size of the layer's input-channel space, or ``None`` if it has no prunable input side."""
        return self._count(layer, 1, "get_in_channels")

    def get_channels(self, layer: Any, side: Any) -> int | None:
        """``get_out_channels`` or ``get_in_channels`` according to ``side`` (``"out"``/``"in"``)."""
        if side == "out" or (side != "in" and normalize_side(side) == "out"):
            return self.get_out_channels(layer)
        return self.get_in_channels(layer)

    # ---- structure --------------------------------------------------------------------------------------

    #: The layer attribute that splits both sides' channels into that many equal blocks, a removal having to take
    #: a multiple of it (GroupNorm's ``"num_groups"``): what :meth:`channel_multiple` and
    #: :meth:`get_out_channel_groups` / :meth:`get_in_channel_groups` return. None: 1 block.
    CHANNEL_BLOCKS_ATTR: str | None = None

    def _channel_blocks(self, layer: Any) -> int:
        return 1 if self.CHANNEL_BLOCKS_ATTR is None else int(getattr(layer, self.CHANNEL_BLOCKS_ATTR))

    def channel_multiple(self, layer: Any, side: Any) -> int:
        """Removals on ``side`` must remove a multiple of this many channels (so the count stays a multiple
        of it: GroupNorm's ``num_groups``, attention's ``num_heads``, a grouped conv's ``groups``). Here: the
        :attr:`CHANNEL_BLOCKS_ATTR` count (1 without one)."""
        return self._channel_blocks(layer)

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
        return self._channel_blocks(layer)

    def get_in_channel_groups(self, layer: Any) -> int:
        """Number of equal blocks the input channels are split into (conv ``groups``, ``num_heads``...)."""
        return self._channel_blocks(layer)

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
        if not layer._modules:  # a leaf: its own parameters only (and no parametrizations child)
            for name, p in layer._parameters.items():
                if type(p) not in _INITIALISED and isinstance(p, nn.parameter.UninitializedParameter):
                    break
            else:
                return
        modules = list(layer.named_modules()) if layer._modules else [("", layer)]
        for prefix, m in modules:
            for name, p in m._parameters.items():
                if type(p) not in _INITIALISED and isinstance(p, nn.parameter.UninitializedParameter):
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
        if type(idxs) is CheckedIndices:
            key = idxs.key
            if key[0] == id(layer) and key[1] == side and key[2] is type(self) and key[3] == self.get_channels(layer, side):
                return idxs  # this very list was validated for this layer side at its current size
        self.check_layer(layer, side)
        word = _SIDE_WORDS[side]
        n = self.get_channels(layer, side)
        what, unit = _WHAT[side]
        try:
            arr = check_indices(idxs, n, what=what, unit=unit, sort=True, min_keep=1)
        except PruningError as e:
            raise self.error(layer, side, None if e.kind in ("type", "duplicate") else e.checked_idxs, e.problem,
                             f"keep at least {max(self.channel_multiple(layer, side), 1)} channel(s)"
                             if e.kind == "empty" else e.fix) from None
        key = (id(layer), side, type(self), n)
        if n is None:
            raise self.error(
                layer, side, arr.tolist(), f"this layer has no prunable {word} channels",
                f"prune the other side, or leave this layer out of {word}-channel pruning",
            )
        if not arr.size:
            return CheckedIndices((), key)
        clean = CheckedIndices(arr.tolist(), key, arr)
        m = self.channel_multiple(layer, side)
        if m > 1 and len(clean) % m:
            raise self.error(
                layer, side, clean,
                f"{len(clean)} channels removed, but the {word} channel count ({n}) must stay a multiple of {m}",
                f"remove a multiple of {m} channels (e.g. {len(clean) - len(clean) % m} or "
                f"{len(clean) + m - len(clean) % m})",
            )
        self.check_structure(layer, clean, side)
        return clean

    def check_sorted(self, layer: Any, idxs: np.ndarray, side: Any) -> list[int]:
        """:meth:`check` of ``idxs``, a 1-D ``int64`` array the caller knows to be sorted and duplicate-free (a batch's
        union of the indices its groups remove from one layer side): the same answer, or the same error, without
        re-reading the indices' type, order and uniqueness. A pruner with its own :meth:`check` is asked that."""
        if type(self).check is not BasePruningFunc.check:
            return self.check(layer, idxs, side)
        side = normalize_side(side)
        n = self.get_channels(layer, side)
        size = idxs.size
        if n is None or not size or size >= n or idxs[0] < 0 or idxs[-1] >= n:
            return self.check(layer, idxs, side)  # its error (or its empty answer)
        self.check_layer(layer, side)
        m = self.channel_multiple(layer, side)
        if m > 1 and size % m:
            return self.check(layer, idxs, side)
        clean = CheckedIndices(idxs.tolist(), (id(layer), side, type(self), n), idxs)
        self.check_structure(layer, clean, side)
        return clean

    # ---- pruning ----------------------------------------------------------------------------------------

    def prune_out_channels(self, layer: Any, idxs: Sequence[int]) -> Any:
        """Remove output channels ``idxs`` from ``layer`` (in place on the module) and return it: the request is
        validated by :meth:`check`, then :meth:`remove` builds and assigns the new tensors."""
        idxs = self.check(layer, idxs, "out")
        if idxs:
            self.remove(layer, idxs, "out")
        return layer

    def prune_in_channels(self, layer: Any, idxs: Sequence[int]) -> Any:
        """Remove input channels ``idxs`` from ``layer`` (in place on the module) and return it (see
        :meth:`prune_out_channels`)."""
        idxs = self.check(layer, idxs, "in")
        if idxs:
            self.remove(layer, idxs, "in")
        return layer

    def pruning_fns(self) -> tuple:
        """``(prune_out_channels, prune_in_channels)``: what a family module publishes under Torch-Pruning's names,
        ``prune_<family>_out_channels, prune_<family>_in_channels = PRUNER.pruning_fns()``."""
        return self.prune_out_channels, self.prune_in_channels

    #: For a layer whose channels are plain slices of its tensors: ``{side: {tensor name: dim}}``. The default
    #: :meth:`remove` keeps the other entries of each tensor along its dim and updates :attr:`CHANNEL_ATTRS`.
    SLICED_TENSORS: dict[str, dict[str, int]] | None = None

    def cut_spec(self, layer: Any, idxs: list[int], side: str) -> CutSpec | None:
        """The removal of channels ``idxs`` (checked: sorted, unique, in range, not empty) on ``side`` (``"out"`` or
        ``"in"``) as data (:class:`~.edits.CutSpec`: the tensors' kept entries, the attributes' new values), or None
        when this pruner's removal is not plain selections. Here: from :attr:`SLICED_TENSORS` and
        :attr:`CHANNEL_ATTRS` (None without them); pruners of other layers override it.

        >>> from prune_explorer.layers import LinearPruner
        >>> [(name, dims) for _, name, dims, _ in LinearPruner().cut_spec(nn.Linear(4, 3), [1], "in").items]
        [('weight', ((1, array([0, 2, 3])),)), ('in_features', None)]
        """
        if self.SLICED_TENSORS is None or self.CHANNEL_ATTRS is None:
            return None
        keep = keep_array(self.get_channels(layer, side), idxs)
        spec = CutSpec()
        for name, dim in self.SLICED_TENSORS[side].items():
            spec.select(layer, name, (dim, keep))
        return spec.set(layer, self.CHANNEL_ATTRS[0 if side == "out" else 1], len(keep))

    def remove(self, layer: Any, idxs: list[int], side: str) -> None:
        """Remove the channels ``idxs`` (checked: sorted, unique, in range, not empty) on ``side`` (``"out"`` or
        ``"in"``): build the new tensors and assign them with one :class:`~.edits.LayerEdit`. Here: what
        :meth:`cut_spec` describes; pruners of other layers override either (a customised pruner may override
        ``prune_out_channels`` / ``prune_in_channels`` instead)."""
        spec = self.cut_spec(layer, idxs, side)
        if spec is None:
            raise NotImplementedError(f"{type(self).__name__}.prune_{side}_channels")
        spec.apply()

    # ---- Torch-Pruning compatibility helpers -------------------------------------------------------------

    @staticmethod
    def _prune_parameter_and_grad(weight: nn.Parameter, keep_idxs: Sequence[int], pruning_dim: int) -> nn.Parameter:
        """A new parameter holding the entries ``keep_idxs`` of ``weight`` along ``pruning_dim`` (and the same
        slice of ``weight.grad``). Same name and meaning as Torch-Pruning's helper, for custom pruners."""
        return derive_param(weight, selector((pruning_dim, list(keep_idxs))))
