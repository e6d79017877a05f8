"""Tracing → channel labels → coupled groups. See :class:`DependencyGraph`."""

from .channel_space import ChannelSpace
from .dependency_graph import DEFAULT_ROOT_TYPES, DependencyGraph, PruneRecord
from .group import Dependency, Group, GroupItem, fn_name
from .node import Node

__all__ = ["DependencyGraph", "Group", "GroupItem", "Dependency", "Node", "ChannelSpace", "PruneRecord",
           "DEFAULT_ROOT_TYPES", "fn_name"]
