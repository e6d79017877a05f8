"""Per-layer pruning functions: one layer family per module (channel counts, ``prune_out`` / ``prune_in``, how
tracing follows its channels, which weights each channel owns).

Each ``prune_*_out_channels`` / ``prune_*_in_channels`` function has Torch-Pruning's name and signature
``fn(layer, idxs) -> layer``; it is a bound method of a singleton pruner (``fn.__self__``), removes the
channels ``idxs`` by building new tensors, updates the layer's attributes, and leaves the layer untouched if
the request is invalid (:class:`~prune_explorer.errors.PruningError`). See :mod:`.base` for the rules and
:mod:`.family` for what a family defines.

Every module of this package other than the shared machinery (``base``, ``batch_cut``, ``edits``, ``family``,
``library_types``, ``registry``, ``slicing``) is a family module: it is imported here, registers its :class:`~.family.LayerFamily`, and the names in
its ``__all__`` become names of this package (and of ``prune_explorer``). Adding a layer family is adding one
module.

    >>> import torch, torch.nn as nn
    >>> import prune_explorer.layers as L
    >>> fc = nn.Linear(8, 4)
    >>> L.prune_linear_out_channels(fc, [0, 1])
    Linear(in_features=8, out_features=2, bias=True)
    >>> L.DEFAULT_REGISTRY.get(fc)
    LinearPruner()
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .base import BasePruningFunc, describe_layer, normalize_indices, normalize_side
from .edits import LayerEdit, keep_indices
from .family import FAMILIES, ChannelMapContext, FamilyRegistry, LayerFamily, register_family
from .slicing import Part

_MACHINERY = {"base", "batch_cut", "edits", "family", "library_types", "registry", "slicing"}

__all__ = [
    "BasePruningFunc", "describe_layer", "keep_indices", "normalize_indices", "normalize_side",
    "LayerFamily", "FamilyRegistry", "FAMILIES", "register_family", "ChannelMapContext", "Part", "LayerEdit",
]

for _info in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name in _MACHINERY or _info.name.startswith("_"):
        continue
    _module = _importlib.import_module(f".{_info.name}", __name__)
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)

# built from the families registered above
from .registry import (  # noqa: E402
    DEFAULT_REGISTRY,
    PRUNER_METHODS,
    PrunerRegistry,
    default_registry,
    is_in_channel_pruning_fn,
    is_out_channel_pruning_fn,
    is_pruner,
    pruner_of,
    pruning_fn_side,
)

__all__ += ["PrunerRegistry", "DEFAULT_REGISTRY", "default_registry", "pruner_of", "is_out_channel_pruning_fn",
            "is_in_channel_pruning_fn", "pruning_fn_side", "is_pruner", "PRUNER_METHODS"]
