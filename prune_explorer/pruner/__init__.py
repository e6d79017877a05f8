"""Pruners: rank channels with an importance criterion and remove them group by group (Torch-Pruning's API).

    >>> import prune_explorer as pe
    >>> pruner = pe.pruner.MagnitudePruner(model, example_inputs, pe.importance.MagnitudeImportance(),
    ...                                    pruning_ratio=0.5, ignored_layers=[model.fc])    # doctest: +SKIP
    >>> pruner.step()                                                                       # doctest: +SKIP

See :mod:`.base_pruner` for what a step does, :mod:`.proposal` for what it proposes per group, :mod:`.config` for
the options, :mod:`.planning` for how a proposal is made, :mod:`.scope` for ranking scopes, :mod:`.guards` for what
is never pruned, :mod:`.units` for channels pruned together (attention heads: :mod:`prune_explorer.attention`),
:mod:`.progressive` for pruning to a speed-up and :mod:`.regularizers` for sparse training.
"""

from . import guards, regularizers, schedulers, scope
from .. import layers as function  # Torch-Pruning's ``tp.pruner.function``: the per-layer pruners and prune_* functions
from ..layers import BasePruningFunc
from .algorithms import BNScalePruner, GroupNormPruner, MagnitudePruner
from .base_pruner import BasePruner
from .compat import MetaPruner
from .config import PrunerConfigError, PrunerOptions
from .growing_reg import GrowingRegPruner
from .. import importance  # Torch-Pruning's ``tp.pruner.importance`` (same module as pe.importance)
from .guards import SkippedGroup
from ..graph.model.explicit import ExplicitGroup
from .progressive import progressive_pruning
from .proposal import Proposal
from .schedulers import linear_scheduler

__all__ = [
    "BasePruner",
    "MagnitudePruner",
    "BNScalePruner",
    "GroupNormPruner",
    "PrunerConfigError",
    "PrunerOptions",
    "Proposal",
    "progressive_pruning",
    "SkippedGroup",
    "AttentionHeads",
    "ExplicitGroup",
    "linear_scheduler",
    "BasePruningFunc",
    "function",
    "GrowingRegPruner",
    "MetaPruner",
    "importance",
    "schedulers",
    "scope",
    "guards",
    "regularizers",
]


def __getattr__(name):
    if name == "AttentionHeads":  # loaded on first use: a model without attention never needs it
        from ..attention.heads import AttentionHeads
        return AttentionHeads
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
