"""The interactive explorer: walk the pruner's groups one by one in JupyterLab.

* :class:`Explorer` (``pe.Explorer``) -- the app (ipywidgets + plotly + graphviz).
* :class:`ExplorerController` -- its plain-Python state machine (no widgets), for scripts and tests.

Importing this package does not import ipywidgets; ``Explorer`` loads the widgets on first use.
"""

from .controller import DEFAULT_SWEEP_RATIOS, Decision, ExplorerController, ExplorerError
from .structure import GroupLayout, ModelStructure, SweepResult, kept_channels, uniform_sweep

__all__ = ["Explorer", "ExplorerController", "ExplorerError", "Decision", "ModelStructure", "GroupLayout",
           "SweepResult", "uniform_sweep", "kept_channels", "DEFAULT_SWEEP_RATIOS"]


def __getattr__(name):
    if name == "Explorer":
        from .app import Explorer

        return Explorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
