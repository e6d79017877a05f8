"""Thin ipywidgets views over :class:`~prune_explorer.explorer.controller.ExplorerController`.

Each view takes the app (for ``app.controller`` and ``app.run``), renders the controller's figures and forwards
user events to it; none keeps state of its own beyond what its widgets show.
"""

from .curves import RatioCurvesView
from .graph import GraphView, GraphWidget
from .group_card import GroupCardView
from .header import HeaderView
from .ignored import IgnoredLayersView
from .progress import ProgressView

__all__ = ["HeaderView", "GraphView", "GraphWidget", "GroupCardView", "RatioCurvesView", "IgnoredLayersView",
           "ProgressView"]
