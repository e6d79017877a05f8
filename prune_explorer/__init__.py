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
from .layers import *  # noqa: F401,F403  (the prune_* functions and pruner classes, Torch-Pruning names)
from .layers import BasePruningFunc

from .layers import __all__ as _layer_names

__all__ = [
    "__version__", "DependencyGraph", "Group", "GroupItem", "Dependency", "Node", "BasePruningFunc", "layers", "function",
    "PruneExplorerError", "PruningError", "TracingError", "DependencyError", "MissingDependencyError",
] + list(_layer_names)

# the higher layers load on first use (``pe.pruner``, ``pe.importance``, ``pe.utils``, ``pe.Explorer``…)
import importlib as _importlib

_SUBMODULES = ("importance", "pruner", "utils", "measure", "explorer", "history", "graph", "serialization", "ops")
_LAZY = {"Explorer": ("explorer", "Explorer"), "save_pruned": ("history", "save_pruned"),
         "load_pruned": ("history", "load_pruned"),
         # Torch-Pruning's serialization names, plain data only (see prune_explorer.serialization)
         "state_dict": ("serialization", "state_dict"), "load_state_dict": ("serialization", "load_state_dict"),
         "save": ("serialization", "save"), "load": ("serialization", "load")}
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
