"""Tracing → channel labels → coupled groups. See :class:`DependencyGraph`."""

from .model.channel_space import ChannelSpace
from .dependency_graph import DEFAULT_ROOT_TYPES, HISTORY_ATTR, DependencyGraph, PruneRecord, model_history
from .model.group import Dependency, Group, GroupItem, fn_name
from .model.fixed_widths import FixedWidth
from .model.node import Node
from .edit.lint import GraphLintError, lint_after_edits

__all__ = ["GraphLintError", "lint_after_edits", "DependencyGraph", "Group", "GroupItem", "Dependency", "Node", "ChannelSpace", "PruneRecord",
           "DEFAULT_ROOT_TYPES", "fn_name", "model_history", "HISTORY_ATTR", "FixedWidth"]
