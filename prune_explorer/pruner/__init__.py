"""Pruners: rank channels with an importance criterion and remove them group by group (Torch-Pruning's API).

    >>> import prune_explorer as pe
    >>> pruner = pe.pruner.MagnitudePruner(model, example_inputs, pe.importance.MagnitudeImportance(),
    ...                                    pruning_ratio=0.5, ignored_layers=[model.fc])    # doctest: +SKIP
    >>> pruner.step()                                                                       # doctest: +SKIP

See :mod:`.base_pruner` for what a step does, :mod:`.scope` for ranking scopes, :mod:`.guards` for what is never
pruned, :mod:`.heads` for attention heads and :mod:`.regularizers` for sparse training.
"""

from . import guards, heads, regularizers, schedulers, scope
from .. import layers as function  # Torch-Pruning's ``tp.pruner.function``: the per-layer pruners and prune_* functions
from ..layers import BasePruningFunc
from .algorithms import BNScalePruner, GroupNormPruner, MagnitudePruner
from .base_pruner import BasePruner, PlannedExplicitGroup, PlannedGroup, PrunerConfigError
from .guards import SkippedGroup
from .heads import AttentionBlock, ExplicitGroup
from .schedulers import linear_scheduler

__all__ = [
    "BasePruner",
    "MagnitudePruner",
    "BNScalePruner",
    "GroupNormPruner",
    "PrunerConfigError",
    "PlannedGroup",
    "PlannedExplicitGroup",
    "SkippedGroup",
    "AttentionBlock",
    "ExplicitGroup",
    "linear_scheduler",
    "BasePruningFunc",
    "function",
    "schedulers",
    "scope",
    "guards",
    "heads",
    "regularizers",
]
