"""A pruning group: every layer side (and loose parameter) whose channels must be removed together.

A :class:`Group` is list-like, as in Torch-Pruning: ``for dep, idxs in group`` visits each member, ``group[0]`` is
the root (the layer the group was asked for), ``group.prune()`` removes the channels from every member at once and
``group.details()`` prints a table. Each item also carries ``root_idxs``: for every index in ``idxs``, the root
channel it is coupled with (importance criteria use it to add up scores across members).

Units: when a layer's own arithmetic ties several root channels together (a grouped convolution can only lose the
same offset from every group), those root channels form one *unit*; ``group.units`` lists them and pruning any
channel of a unit removes the whole unit.
"""

from __future__ import annotations

import html
import warnings
from typing import Callable, List, Optional, Sequence

import numpy as np

from ... import layers
from ...layers.parameter import ParameterPruner
from .channel_space import SIDE_OUT, ChannelSpace
from .node import Node
from ..edit.output_changes import output_changes_message

#: ``group.kind`` of an attention group whose units are whole heads, and of one whose units are one offset in every
#: head (see :mod:`prune_explorer.attention`); other groups have ``kind`` None
HEADS_KIND, DIMS_KIND = "attention-heads", "attention-dims"


class Dependency:
    """"Pruning ``source`` with ``trigger`` requires pruning ``target`` with ``handler``."""

    __slots__ = ("trigger", "handler", "source", "target", "space")

    def __init__(self, trigger: Callable, handler: Callable, source: Node, target: Node, space: ChannelSpace):
        self.trigger = trigger
        self.handler = handler
        self.source = source
        self.target = target
        self.space = space

    @property
    def layer(self):
        """The module (or loose ``nn.Parameter``) whose channels this dependency removes."""
        return self.space.owner

    @property
    def pruning_fn(self) -> Callable:
        return self.handler

    @property
    def is_out_channels(self) -> bool:
        return self.space.side == SIDE_OUT

    @property
    def side(self) -> str:
        """``"out"`` (output channels, or the single space of a pass-through layer) or ``"in"``."""
        return self.space.side

    def is_triggered_by(self, pruning_fn) -> bool:
        return pruning_fn == self.trigger

    def __call__(self, idxs):
        """Apply ``handler`` to the target layer alone (Torch-Pruning's ``dep(idxs)``; prefer ``group.prune()``,
        which keeps every coupled layer and the graph in step)."""
        return self.handler(self.layer, idxs)

    def __repr__(self) -> str:
        return f"[{self.source.name} ({fn_name(self.trigger)}) => {self.target.name} ({fn_name(self.handler)})]"


class _IndexList:
    """A list-of-ints attribute of :class:`GroupItem` stored in one of two slots: the list, or the same indices as an
    ``int64`` array (the list is made from the array on first use). Setting it keeps the form it is given."""

    def __init__(self, list_slot: str, array_slot: str):
        self.list_slot, self.array_slot = list_slot, array_slot

    def __get__(self, item, owner=None):
        if item is None:
            return self
        value = getattr(item, self.list_slot)
        if value is None:
            value = getattr(item, self.array_slot).tolist()
            setattr(item, self.list_slot, value)
        return value

    def __set__(self, item, value) -> None:
        if isinstance(value, np.ndarray):
            setattr(item, self.list_slot, None)
            setattr(item, self.array_slot, value.astype(np.int64, copy=False).reshape(-1))
        else:
            setattr(item, self.list_slot, value if isinstance(value, list) else list(value))
            setattr(item, self.array_slot, None)


class _IndexArray:
    """The ``int64`` array form of an :class:`_IndexList` (read-only; made from the list on first use)."""

    def __init__(self, list_slot: str, array_slot: str, doc: str):
        self.list_slot, self.array_slot, self.__doc__ = list_slot, array_slot, doc

    def __get__(self, item, owner=None):
        if item is None:
            return self
        arr = getattr(item, self.array_slot)
        if arr is None:
            values = getattr(item, self.list_slot)
            arr = np.fromiter(values, dtype=np.int64, count=len(values))
            setattr(item, self.array_slot, arr)
        return arr


class GroupItem:
    """One member of a group: ``dep``, the current channel indices ``idxs`` it loses, and their ``root_idxs``.

    ``idxs`` and ``root_idxs`` are lists of ints (as in Torch-Pruning); ``idx_array`` and ``root_array`` are the
    same indices as ``int64`` numpy arrays (treat them as read-only), which the pruners and importance criteria use
    (no list round trip). Either form may be given; the other is made on first use."""

    __slots__ = ("dep", "_idxs", "_root_idxs", "_idx_arr", "_root_arr")

    def __init__(self, dep: Dependency, idxs, root_idxs):
        self.dep = dep
        self.idxs = idxs
        self.root_idxs = root_idxs

    @classmethod
    def from_arrays(cls, dep: Dependency, idx: np.ndarray, root: np.ndarray) -> "GroupItem":
        """An item from 1-D ``int64`` arrays, taken as they are (not copied; the graph's group members)."""
        self = object.__new__(cls)
        self.dep = dep
        self._idxs = self._root_idxs = None
        self._idx_arr, self._root_arr = idx, root
        return self

    idxs = _IndexList("_idxs", "_idx_arr")
    root_idxs = _IndexList("_root_idxs", "_root_arr")
    idx_array = _IndexArray("_idxs", "_idx_arr", "``idxs`` as an ``int64`` numpy array.")
    root_array = _IndexArray("_root_idxs", "_root_arr", "``root_idxs`` as an ``int64`` numpy array.")

    # a ``(dep, idxs)`` pair, as Torch-Pruning's group items: ``dep, idxs = item``, ``item[0]``, ``len(item) == 2``
    def __iter__(self):
        yield self.dep
        yield self.idxs

    def __len__(self) -> int:
        return 2

    def __getitem__(self, k):
        return (self.dep, self.idxs)[k]

    def __repr__(self) -> str:
        n = len(self._idxs) if self._idxs is not None else int(self._idx_arr.size)
        return f"GroupItem({self.dep!r}, {n} channels)"


_FN_NAMES = {}


def fn_name(fn) -> str:
    """Torch-Pruning-style name of a pruning function, e.g. ``prune_conv_out_channels``."""
    if not _FN_NAMES:
        for attr in dir(layers):
            if attr.startswith("prune_"):
                f = getattr(layers, attr)
                if callable(f) and hasattr(f, "__self__"):
                    _FN_NAMES.setdefault((id(f.__self__), f.__func__), attr)
    owner = getattr(fn, "__self__", None)
    func = getattr(fn, "__func__", None)
    name = _FN_NAMES.get((id(owner), func))
    if name is not None:
        return name
    if owner is not None:
        if isinstance(owner, ParameterPruner):  # one instance per pruning dim; the dim is recorded separately
            return "prune_parameter_" + getattr(fn, "__name__", "prune_out_channels")[len("prune_"):]
        return f"{type(owner).__name__}.{getattr(fn, '__name__', 'prune')}"
    return getattr(fn, "__name__", repr(fn))


class Group:
    """Coupled channels of several layers, rooted at one layer side; see the module docstring."""

    def __init__(self, graph, root: ChannelSpace, classes: np.ndarray, root_orig: np.ndarray):
        self._graph = graph
        self.root_space = root
        self.classes = classes  # the coupled-channel classes this group removes (stable across pruning)
        self._root_orig = root_orig  # original root indices selected
        self._items: Optional[List[GroupItem]] = None
        self._units: Optional[List[List[int]]] = None
        self._items_version = graph.state.version
        self._layout = None  # the items' flat layout (group_members.MemberLayout), see member_layout

    @property
    def graph(self):
        """The :class:`~prune_explorer.graph.DependencyGraph` this group belongs to."""
        return self._graph

    @property
    def kind(self) -> Optional[str]:
        """``"attention-heads"`` (the units are whole attention heads), ``"attention-dims"`` (one offset in every
        head) or None (other channels): see :meth:`DependencyGraph.attention_kind`."""
        if self.__dict__.get("_kind") is not None:
            return self._kind
        kind_of = getattr(self._graph, "attention_kind", None)
        return kind_of(self.classes) if kind_of is not None else None

    @kind.setter
    def kind(self, value: Optional[str]) -> None:  # groups built by hand (the pruner's explicit groups) say theirs
        self._kind = value

    # ---- list-like access ------------------------------------------------------------------------------------
    @property
    def items(self) -> List[GroupItem]:
        if self._items is None or self._items_version != self._graph.state.version:
            self._set_listing(*self._graph._group_items(self))
        return self._items

    def _set_listing(self, items: List[GroupItem], units, layout=None) -> None:
        """Keep ``items``, ``units`` (the list, or a function that makes it when :attr:`units` is first read) and
        their flat layout (a ``group_members.MemberLayout``; None: made from the items when :attr:`member_layout` is
        read) for the graph as it is now."""
        self._items, self._units, self._layout = items, units, layout
        self._items_version = self._graph.state.version

    def _listed_now(self) -> bool:
        """Whether the items are listed for the graph as it is now, with their flat layout."""
        layout = self._layout
        return (self._items is not None and self._items_version == self._graph.state.version
                and layout is not None and layout.items is self._items)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k):
        return self.items[k]

    @property
    def member_keys(self) -> np.ndarray:
        """One ``int64`` key per member channel, in item order (``items[0]``'s channels first): the member's channel
        space ``offset`` plus the channel's current index. A key names one (channel space, current channel) pair of
        the graph, below ``len(graph.alive_mask)`` (read-only; made once per version of the items)."""
        return self.member_layout.keys

    @property
    def member_layout(self):
        """The members as flat ``int64`` arrays, in item order (a
        :class:`~prune_explorer.graph.model.group_members.MemberLayout`: each member's space index, the bounds of
        its channels, their current indices, root indices and :attr:`member_keys`), to read many members without a
        loop over items. Read-only; made with the items (once per version of them)."""
        items = self.items
        layout = self._layout
        if layout is None or layout.items is not items:
            from .group_members import MemberLayout

            layout = self._layout = MemberLayout.of_items(items)
        return layout

    @property
    def units(self) -> List[List[int]]:
        """Root channel indices that can only be removed together (most units hold one channel)."""
        self.items
        units = self._units
        if not isinstance(units, list):  # made on first read (a selection's: most are never read)
            units = self._units = units()
        return units

    # ---- what the group is about -----------------------------------------------------------------------------
    @property
    def root(self) -> Node:
        return self._graph.space_node(self.root_space)

    @property
    def root_module(self):
        return self.root_space.owner

    @property
    def root_name(self) -> str:
        return self.root_space.name

    @property
    def pruning_fn(self) -> Callable:
        return self.root_space.handler

    @property
    def root_idxs(self) -> List[int]:
        """Current indices, in the root layer, of the channels this group removes."""
        return self.items[0].idxs if self.items else []

    @property
    def root_array(self) -> np.ndarray:
        """``root_idxs`` as an ``int64`` numpy array (treat it as read-only)."""
        items = self.items
        return items[0].idx_array if items else np.empty(0, dtype=np.int64)

    @property
    def num_channels(self) -> int:
        """How many root channels the group covers (its size as a pruning decision)."""
        return len(self.root_idxs)

    def has_dep(self, dep) -> bool:
        return any(it.dep is dep for it in self.items)

    def has_pruning_op(self, dep, idxs) -> bool:
        return any(it.dep.target is dep.target and it.dep.handler == dep.handler and set(idxs) <= set(it.idxs) for it in self.items)

    def layers(self):
        """The distinct modules / parameters this group touches, in order."""
        seen, out = set(), []
        for it in self.items:
            if id(it.dep.layer) not in seen:
                seen.add(id(it.dep.layer))
                out.append(it.dep.layer)
        return out

    # ---- acting on it ----------------------------------------------------------------------------------------
    def select(self, idxs: Sequence[int], validate: bool = True) -> "Group":
        """A group with the same members that removes only root channels ``idxs`` (current indices).

        ``validate=False`` skips checking ``idxs`` (ints, in range, no duplicates): only for indices taken from this
        group's own ``root_idxs``."""
        return self._graph._subgroup(self, idxs, validate=validate)

    def prune(self, idxs: Optional[Sequence[int]] = None, record_history: bool = True):
        """Remove the group's channels (or only root channels ``idxs``) from every member, atomically.

        Indices are validated first; on any error nothing changes. Returns a record with ``undo()``.
        """
        group = self if idxs is None else self.select(idxs)
        return self._graph.prune_group(group, record_history=record_history)

    def __call__(self):
        """``group()`` is ``group.prune()`` (Torch-Pruning's spelling)."""
        return self.prune()

    def exec(self):
        """Deprecated spelling of :meth:`prune` (kept from Torch-Pruning)."""
        warnings.warn("Group.exec() is deprecated; use group.prune()", DeprecationWarning, stacklevel=2)
        return self.prune()

    # ---- printing --------------------------------------------------------------------------------------------
    def details(self, max_idxs: int = 8) -> str:
        items = self.items
        root = self.root_space
        n_units = len(self.units)
        head = (
            f"Group rooted at {root.label} ({self.root.op}): removes {len(self.root_idxs)} of "
            f"{root.current_size} channels"
            + (f" in {n_units} units" if n_units != len(self.root_idxs) else "")
            + f", {len(items)} members"
        )
        rows = [("#", "layer", "type", "side", "channels", "removed idxs", "pruning fn")]
        for k, it in enumerate(items):
            s = it.dep.space
            node = it.dep.target
            side = "in=out" if s.passthrough else s.side
            cur = s.current_size
            ch = f"{cur} -> {cur - len(it.idxs)}"
            shown = ", ".join(str(i) for i in it.idxs[:max_idxs]) + (", ..." if len(it.idxs) > max_idxs else "")
            rows.append((str(k), node.name, node.op, side, ch, f"[{shown}]", fn_name(it.dep.handler)))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = [head, "-" * min(len(head), 120)]
        for r in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        g = self._graph
        if self.classes.size and g.output_class_mask[self.classes].any():
            changed = output_changes_message(g, g.classes.members(self.classes, g.alive_mask))
            lines.append("changes the model's outputs: " + changed)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.details()

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(self.details()) + "</pre>"
