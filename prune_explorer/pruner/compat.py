"""Deprecated Torch-Pruning pruner names kept so old code runs."""

from __future__ import annotations

import warnings

from .base_pruner import BasePruner

__all__ = ["MetaPruner"]


class MetaPruner(BasePruner):
    """Deprecated name of :class:`BasePruner` (as in Torch-Pruning 1.6); warns with ``DeprecationWarning``."""

    def __init__(self, *args, **kwargs):
        warnings.warn("pe.pruner.MetaPruner is deprecated; use pe.pruner.BasePruner (or MagnitudePruner)",
                      DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
