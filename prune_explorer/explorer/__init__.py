"""The interactive explorer: walk the pruner's groups one by one in JupyterLab.

* :class:`Explorer` (``pe.Explorer``) -- the app (ipywidgets + plotly + graphviz).
* :class:`ExplorerController` -- its plain-Python state machine (no widgets), for scripts and tests
  (:mod:`.controller`, made of :mod:`.session`, :mod:`.walk`, :mod:`.figures` and :mod:`.export`).

Importing this package does not import ipywidgets; ``Explorer`` loads the widgets on first use. The measurement
behind the figures lives in :mod:`prune_explorer.measure.structure` and :mod:`prune_explorer.measure.sweep` (its
names are importable from here too).
"""

from ..measure.structure import ModelStructure
from ..measure.sweep import GroupLayout, SweepResult, kept_channels, uniform_sweep
from .controller import DEFAULT_SWEEP_RATIOS, Decision, ExplorerController, ExplorerError

__all__ = ["Explorer", "ExplorerController", "ExplorerError", "Decision", "ModelStructure", "GroupLayout",
           "SweepResult", "uniform_sweep", "kept_channels", "DEFAULT_SWEEP_RATIOS"]


def __getattr__(name):
    if name == "Explorer":
        from .app import Explorer

        return Explorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
