"""Which pruner handles which layer type, and how to recognise a pruning function.

:class:`PrunerRegistry` maps layer types to pruner instances. ``get(module)`` looks up the exact type
first, then walks the type's MRO (so subclasses of ``nn.Linear`` use the linear pruner), then falls back to
``isinstance`` for virtual subclasses; the pruner found may specialise itself for the module (the conv
pruner returns the depthwise pruner for a depthwise conv). Customised pruners (Torch-Pruning's
``customized_pruners`` argument) override the defaults::

    >>> import torch.nn as nn
    >>> reg = DEFAULT_REGISTRY.with_overrides({nn.Linear: MyLinearPruner()})   # doctest: +SKIP

The module-level ``prune_*`` functions are bound methods of pruner instances, so ``fn.__self__`` is the
pruner and the side is the method's name:

    >>> from prune_explorer.layers import prune_conv_out_channels, prune_batchnorm_in_channels
    >>> is_out_channel_pruning_fn(prune_conv_out_channels), is_in_channel_pruning_fn(prune_conv_out_channels)
    (True, False)
    >>> pruner_of(prune_batchnorm_in_channels)
    BatchnormPruner()
    >>> DEFAULT_REGISTRY.get(nn.Conv2d(4, 4, 3, groups=4))
    DepthwiseConvPruner()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import nn

from ..errors import PruningError
from .base import BasePruningFunc
from .family import FAMILIES, FamilyRegistry
from .library_types import TypeTable

__all__ = [
    "PrunerRegistry",
    "DEFAULT_REGISTRY",
    "default_registry",
    "pruner_of",
    "is_out_channel_pruning_fn",
    "is_in_channel_pruning_fn",
    "pruning_fn_side",
    "is_pruner",
    "PRUNER_METHODS",
]


#: the methods every pruner has (a Torch-Pruning-style pruner need not subclass BasePruningFunc)
PRUNER_METHODS = ("get_out_channels", "get_in_channels", "prune_out_channels", "prune_in_channels")


def is_pruner(obj: Any) -> bool:
    """True for a :class:`BasePruningFunc`, or any object with the four pruner methods (:data:`PRUNER_METHODS`)."""
    return isinstance(obj, BasePruningFunc) or all(callable(getattr(obj, m, None)) for m in PRUNER_METHODS)


class PrunerRegistry:
    """A mapping from layer types to pruners (:class:`BasePruningFunc` instances).

    >>> from prune_explorer.layers import LINEAR_PRUNER
    >>> reg = PrunerRegistry()
    >>> reg.register(nn.Linear, LINEAR_PRUNER)
    >>> reg.get(nn.Linear(2, 3)) is LINEAR_PRUNER, reg.get(nn.ReLU())
    (True, None)
    """

    def __init__(self, pruners: Mapping[type, BasePruningFunc | None] | None = None) -> None:
        self._types = TypeTable()  # layer type -> pruner (None: not prunable)
        for t, p in (pruners or {}).items():
            self.register(t, p)

    @classmethod
    def from_families(cls, families: FamilyRegistry) -> PrunerRegistry:
        """A registry mapping every type of each family to the family's pruner."""
        reg = cls()
        for family in families:
            for t in family.types:
                reg.register(t, family.pruner)
        return reg

    @classmethod
    def from_pruners(cls, pruners: Iterable[BasePruningFunc]) -> PrunerRegistry:
        """A registry mapping every type in each pruner's ``TARGET_MODULES`` to that pruner."""
        reg = cls()
        for p in pruners:
            for t in p.TARGET_MODULES:
                reg.register(t, p)
        return reg

    def register(self, layer_type: type, pruner: BasePruningFunc | None) -> None:
        """Map ``layer_type`` (and, through the MRO, its subclasses) to ``pruner``.

        ``pruner=None`` marks the type as not prunable (``get`` returns None for it), which hides a default
        registered for a base class.
        """
        if not isinstance(layer_type, type):
            raise PruningError(f"register() needs a layer type (a class), got {layer_type!r}.")
        if pruner is not None and not is_pruner(pruner):
            raise PruningError(
                f"the pruner registered for {layer_type.__name__} must be a BasePruningFunc instance (or an object "
                f"with {', '.join(PRUNER_METHODS)}), got {type(pruner).__name__}. "
                "Fix: subclass prune_explorer.layers.BasePruningFunc."
            )
        self._types[layer_type] = pruner

    def unregister(self, layer_type: type) -> None:
        self._types.pop(layer_type)

    def lookup_type(self, layer_type: type) -> BasePruningFunc | None:
        """The pruner registered for ``layer_type`` or its nearest registered base class (no specialisation)."""
        return self._types.nearest(layer_type)

    def get(self, module: Any) -> BasePruningFunc | None:
        """The pruner for ``module`` (an ``nn.Module`` or an ``nn.Parameter``), or None if none is registered.

        The nearest registered class of its MRO, else ``isinstance`` (registration order)
        (:class:`~.library_types.TypeTable`); finally the pruner's :meth:`~BasePruningFunc.specialize` picks the
        variant for this module.
        """
        pruner = self._types.lookup(type(module))
        if pruner is None:
            return None
        specialize = getattr(pruner, "specialize", None)  # Torch-Pruning-style pruners may not have it
        return specialize(module) if specialize is not None else pruner

    def with_overrides(self, customized_pruners: Mapping[type, BasePruningFunc | None] | None) -> PrunerRegistry:
        """A copy of this registry with ``customized_pruners`` (type -> pruner) taking precedence."""
        reg = self.copy()
        for t, p in (customized_pruners or {}).items():
            reg.register(t, p)
        return reg

    def copy(self) -> PrunerRegistry:
        reg = PrunerRegistry()
        reg._types = self._types.copy()
        return reg

    def pruners(self) -> list[BasePruningFunc]:
        """Every distinct pruner registered, and the ones they specialise into (the depthwise conv pruner...)."""
        out: list[BasePruningFunc] = []
        for p in self._types.values():
            for v in (p.variants() if hasattr(p, "variants") else (p,)) if p is not None else ():
                if all(v is not q for q in out):
                    out.append(v)
        return out

    def items(self) -> list[tuple[type, BasePruningFunc | None]]:
        return list(self._types.items())

    def __contains__(self, layer_type: type) -> bool:
        return layer_type in self._types

    def __len__(self) -> int:
        return len(self._types)

    def __repr__(self) -> str:
        rows = [f"  {t.__module__}.{t.__qualname__}: {p!r}" for t, p in self._types.items()]
        return "PrunerRegistry(\n" + "\n".join(rows) + "\n)"


def default_registry() -> PrunerRegistry:
    """A fresh registry with the built-in pruners: every registered layer family's (safe to modify)."""
    return PrunerRegistry.from_families(FAMILIES)


#: The registry of built-in pruners. Prefer ``DEFAULT_REGISTRY.with_overrides(...)`` to modifying it.
DEFAULT_REGISTRY = default_registry()


def pruner_of(fn: Callable[..., Any]) -> BasePruningFunc | None:
    """The pruner a pruning function belongs to (``fn.__self__``), or None for anything else.

    >>> from prune_explorer.layers import prune_linear_in_channels
    >>> pruner_of(prune_linear_in_channels)
    LinearPruner()
    """
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, BasePruningFunc) else None


def _is_side(fn: Callable[..., Any], method: str) -> bool:
    pruner = pruner_of(fn)
    if pruner is None:
        return False
    try:
        return fn == getattr(pruner, method)
    except Exception:  # pragma: no cover
        return False


def is_out_channel_pruning_fn(fn: Callable[..., Any]) -> bool:
    """True if ``fn`` is some pruner's ``prune_out_channels`` (bound method).

    A customised pruner that aliases ``prune_in_channels = prune_out_channels`` (a common Torch-Pruning
    idiom for layers whose two sides are one space) makes its function count as both.
    """
    return _is_side(fn, "prune_out_channels")


def is_in_channel_pruning_fn(fn: Callable[..., Any]) -> bool:
    """True if ``fn`` is some pruner's ``prune_in_channels`` (bound method)."""
    return _is_side(fn, "prune_in_channels")


def pruning_fn_side(fn: Callable[..., Any]) -> str | None:
    """``"out"`` or ``"in"`` for a pruning function, None for anything else (``"out"`` for an alias of both)."""
    if is_out_channel_pruning_fn(fn):
        return "out"
    if is_in_channel_pruning_fn(fn):
        return "in"
    return None
