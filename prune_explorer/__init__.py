"""prune_explorer: structural pruning of PyTorch models, and a JupyterLab explorer for it.

Mirrors Torch-Pruning's layout so code ports by renaming ``tp`` to ``pe``::

    import prune_explorer as pe
    DG = pe.DependencyGraph().build_dependency(model, example_inputs)
    group = DG.get_pruning_group(model.conv1, pe.prune_conv_out_channels, idxs=[2, 6, 9])
    group.prune()
"""

from ._version import __version__
from .errors import DependencyError, MissingDependencyError, PruneExplorerError, PruningError, TracingError
from .graph import Dependency, DependencyGraph, Group, GroupItem, Node
from . import layers
from . import layers as function  # Torch-Pruning's ``tp.function`` (the per-layer pruners), same module as pe.layers
from .layers import BasePruningFunc

#: every layer family's ``prune_*_out_channels`` / ``prune_*_in_channels`` (Torch-Pruning's ``tp.prune_conv_out_channels``
#: and the rest, plus the families Torch-Pruning lacks: transposed conv, RNN / LSTM / GRU, RNN cells). The other
#: names of the layer families (pruner classes, registries) stay in :mod:`prune_explorer.layers`.
_PRUNE_FUNCTIONS = [n for n in layers.__all__ if n.startswith("prune_")]
globals().update({n: getattr(layers, n) for n in _PRUNE_FUNCTIONS})

#: Torch-Pruning 1.6's top-level names (``tp.X``), each available as ``pe.X``; its index-mapping constants
#: (``INDEX_MAPPING_PLACEHOLDER``, ``MAX_RECURSION_DEPTH``, ``MAX_VALID_DIM``) belong to its tracer and have no
#: counterpart here. The pruners, ``pruner``, ``importance``, ``utils`` and the serialization functions load on first use.
_TORCH_PRUNING_NAMES = [
    "DependencyGraph", "Group", "Dependency", "Node", "BasePruningFunc", "function", "pruner", "importance", "utils",
    "BasePruner", "MagnitudePruner", "BNScalePruner", "GroupNormPruner", "GrowingRegPruner", "MetaPruner",
    "state_dict", "load_state_dict", "save", "load",
] + _PRUNE_FUNCTIONS
#: prune_explorer's own: its version, the layer families, a group member, the errors, the explorer, pruning
#: history files and pruning plans
_OWN_NAMES = [
    "__version__", "layers", "GroupItem",
    "PruneExplorerError", "PruningError", "TracingError", "DependencyError", "MissingDependencyError",
    "Explorer", "save_pruned", "load_pruned", "PruningPlan", "apply_plan",
]
__all__ = _TORCH_PRUNING_NAMES + _OWN_NAMES

# the higher layers load on first use (``pe.pruner``, ``pe.importance``, ``pe.utils``, ``pe.Explorer``…)
import importlib as _importlib

_SUBMODULES = ("importance", "pruner", "utils", "measure", "explorer", "history", "graph", "serialization", "ops")
_LAZY = {"Explorer": ("explorer", "Explorer"), "save_pruned": ("history", "save_pruned"),
         "load_pruned": ("history", "load_pruned"),
         # Torch-Pruning's serialization names, plain data only (see prune_explorer.serialization)
         "state_dict": ("serialization", "state_dict"), "load_state_dict": ("serialization", "load_state_dict"),
         "save": ("serialization", "save"), "load": ("serialization", "load")}
# Torch-Pruning's pruners at the top level (``tp.MagnitudePruner``...), as in ``pe.pruner``
_LAZY.update({n: ("pruner", n) for n in ("BasePruner", "MagnitudePruner", "BNScalePruner", "GroupNormPruner",
                                         "GrowingRegPruner", "MetaPruner")})
_SUBMODULES += ("sensitivity", "plan")  # sensitivity scans, budgets and pruning plans
_SUBMODULES += ("hf", "calibration", "compensation", "depth")  # Hugging Face transformers: config sync and save_pretrained round-trip check
_SUBMODULES += ("stream",)  # plans applied to safetensors checkpoints block by block (models bigger than memory)
_LAZY.update(PruningPlan=("plan", "PruningPlan"), apply_plan=("plan", "apply_plan"))
_LAZY.update(recover=("recovery", "recover"), RecoveryResult=("recovery", "RecoveryResult"))


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(_importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'prune_explorer' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_LAZY))
