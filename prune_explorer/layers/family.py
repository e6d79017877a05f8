"""A layer family: everything the library knows about one kind of layer, defined once and registered once.

A :class:`LayerFamily` bundles, for the module types it covers,

* ``pruner``: the :class:`~prune_explorer.layers.base.BasePruningFunc` that counts and removes its channels;
* ``channel_map``: how one call of the layer moves channels from its inputs to its outputs while tracing (which
  input dim it reads, which channel spaces it owns, which positions its own arithmetic ties together), written
  against the small :class:`ChannelMapContext` vocabulary the tracer provides;
* ``parts``: which entries of its parameters each channel owns (what the importance criteria score), built from
  the selectors of :mod:`.slicing`;
* ``root``: whether :meth:`DependencyGraph.get_all_groups` starts groups at its output channels by default;
* ``functional_ops``: the torch functions that run the layer with its own parameters (``F.conv2d(x, conv.weight)``
  called outside ``conv.forward`` is recognised as that conv);
* ``standard_types``: the classes whose ``forward`` the channel map describes (named library classes whose own
  ``forward`` computes the same function count too, e.g. transformers' ``FalconLinear``); any other subclass
  overriding ``forward`` (torchvision's ``LayerNorm2d``) is traced through instead, op by op.

Every consumer (tracing, the pruner registry, importance, the dependency graph's default roots) asks
:data:`FAMILIES`. A new family is one module in this package that defines the pruner, the channel map and the
parts and calls :func:`register_family`; the package imports every module it holds, so nothing else changes.

>>> import torch.nn as nn
>>> FAMILIES.family_of(nn.Conv2d(3, 8, 3)).name, FAMILIES.family_of(nn.ReLU())
('conv', None)
>>> nn.Linear in FAMILIES.root_types()
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional, Protocol, Sequence, Tuple

import torch

from ..errors import PruningError
from .base import BasePruningFunc
from .library_types import LibraryType, TypeTable, matching_class
from .slicing import Part

__all__ = ["LayerFamily", "FamilyRegistry", "FAMILIES", "register_family", "ChannelMapContext"]


class ChannelMapContext(Protocol):
    """What a family's ``channel_map(ctx, module, name, call, x)`` may ask the tracer.

    ``call.inputs`` / ``call.outputs`` are the traced values of the layer call (``.shape``, ``.ndim``), ``x`` is the
    first input (or None). Channel ids are int64 tensors of global channel ids (see
    :mod:`prune_explorer.graph.trace.labels`); a dim is "labelled" when it carries channel ids.
    """

    def channels(self, module: Any, name: str, side: str, passthrough: bool = False) -> torch.Tensor:
        """The ids of ``module``'s channel space on ``side`` (``"out"``/``"in"``); ``passthrough``: one space for
        input and output. Created, with the family's pruner, on first use."""

    def consume(self, x: Any, dim: int, ids: torch.Tensor, layer: str) -> None:
        """The layer reads ``x`` along ``dim``: the channels stored there are its input channels ``ids``."""

    def fix(self, what: Any, reason: str) -> None:
        """``what`` (ids, or every channel a traced value carries) can never be pruned, because ``reason``."""

    def tie_groups(self, ids: torch.Tensor, groups: int) -> None:
        """Split ``ids`` into ``groups`` equal blocks: the same offset must leave every block (grouped layers)."""

    def attention_heads(self, ids: torch.Tensor, heads: int) -> None:
        """``ids`` are ``heads`` attention heads of equal size (``embed_dim`` of ``nn.MultiheadAttention``): keep them
        consistent, whole heads or the same offsets in every head (the graph's ``head_pruning`` option)."""

    def fix_other_dims(self, x: Any, feature_dim: int, keep: set, reason: str) -> None:
        """Fix the channels ``x`` carries along dims other than ``feature_dim`` and ``keep`` (the layer mixes them)."""

    def fix_dims(self, x: Any, dims: set, reason: str) -> None:
        """Fix the channels ``x`` carries along any of ``dims``."""

    def carried(self, x: Any, out: Any, feature_dim: int, keep: set) -> list:
        """The labels of ``x`` that pass through unchanged (varying only along ``keep``, never along ``feature_dim``)."""

    def unsqueezed(self, x: Any, out: Any) -> list:
        """The labels of ``x`` with a new last dim (a lookup that appends a feature dim, like an embedding)."""

    def label(self, out: Any, dim: int, ids: Optional[torch.Tensor], carried: Sequence = ()) -> None:
        """``out`` holds channels ``ids`` along ``dim`` (None: no channel), plus the ``carried`` labels."""

    def unlabel(self, *values: Any) -> None:
        """These outputs carry no channel."""

    def elementwise(self, call: Any, inputs: Sequence) -> None:
        """Map the call as an element-wise op over ``inputs`` (a layer that acts like one, e.g. a shared PReLU)."""


ChannelMap = Callable[[ChannelMapContext, Any, str, Any, Any], None]
PartsFn = Callable[[Any, Any, torch.Tensor], List[Part]]


@dataclass(frozen=True, eq=False)
class LayerFamily:
    """One kind of layer (see the module docstring). ``types`` defaults to the pruner's ``TARGET_MODULES``."""

    name: str
    pruner: BasePruningFunc
    types: Tuple[type, ...] = ()
    channel_map: Optional[ChannelMap] = None
    parts: Optional[PartsFn] = None
    root: bool = False
    functional_ops: Tuple[str, ...] = ()
    standard_types: Tuple[type, ...] = ()
    forwards: frozenset = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self):
        types = tuple(self.types) or tuple(self.pruner.TARGET_MODULES)
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "forwards", frozenset(
            t.forward for t in types + tuple(self.standard_types) if hasattr(t, "forward")))

    def runs_standard_forward(self, module: Any) -> bool:
        """True if ``module``'s ``forward`` is one the channel map describes (not a subclass's own)."""
        forward = type(module).forward
        if forward in self.forwards:
            return True
        for t in self.types + tuple(self.standard_types):  # classes of other libraries, named (:mod:`.library_types`)
            if isinstance(t, type) and issubclass(t, LibraryType):
                k = matching_class(type(module), t.qualnames)
                if k is not None and k.forward is forward:
                    return True
        return False

    def __repr__(self) -> str:
        return f"LayerFamily({self.name}: {', '.join(t.__name__ for t in self.types)})"


class FamilyRegistry:
    """The registered layer families, looked up by module (or type): the nearest class in the MRO wins."""

    def __init__(self) -> None:
        self._families: List[LayerFamily] = []
        self._types = TypeTable()  # layer type -> family

    def register(self, family: LayerFamily) -> LayerFamily:
        if any(f.name == family.name for f in self._families):
            raise PruningError(f"a layer family named {family.name!r} is already registered")
        self._families.append(family)
        for t in family.types:
            self._types[t] = family
        return family

    def family_of(self, module_or_type: Any) -> Optional[LayerFamily]:
        """The family of a module (or module type), or None."""
        return self._types.lookup(module_or_type if isinstance(module_or_type, type) else type(module_or_type))

    def root_types(self) -> Tuple[type, ...]:
        """The module types whose output channels start the default groups."""
        return tuple(t for f in self._families if f.root for t in f.types)

    def functional_ops(self) -> frozenset:
        """Names of the torch functions that run some family's layer with its own parameters."""
        return frozenset(op for f in self._families for op in f.functional_ops)

    def __iter__(self) -> Iterator[LayerFamily]:
        return iter(list(self._families))

    def __len__(self) -> int:
        return len(self._families)

    def __repr__(self) -> str:
        return "FamilyRegistry(" + ", ".join(f.name for f in self._families) + ")"


#: every built-in layer family (each family module of this package registers its own)
FAMILIES = FamilyRegistry()


def register_family(family: LayerFamily) -> LayerFamily:
    """Add ``family`` to :data:`FAMILIES` (and so to the default pruner registry); returns it."""
    return FAMILIES.register(family)
