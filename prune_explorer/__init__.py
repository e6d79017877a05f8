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
from .layers import *  # noqa: F401,F403  (the prune_* functions and pruner classes, Torch-Pruning names)
from .layers import BasePruningFunc

from .layers import __all__ as _layer_names

__all__ = [
    "__version__", "DependencyGraph", "Group", "GroupItem", "Dependency", "Node", "BasePruningFunc", "layers",
    "PruneExplorerError", "PruningError", "TracingError", "DependencyError", "MissingDependencyError",
] + list(_layer_names)

# optional submodules (importance, pruner, utils, explorer) are attached as they are imported below
import importlib as _importlib

for _name in ("importance", "pruner", "utils", "measure"):
    try:
        globals()[_name] = _importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as _exc:  # a submodule not written yet
        if _exc.name != f"{__name__}.{_name}":
            raise
