"""DependencyGraph: trace a model once, then list and prune its coupled channel groups.

Example::

    >>> import torch, torchvision
    >>> import prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> DG = pe.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 224, 224))
    >>> group = DG.get_pruning_group(model.conv1, pe.prune_conv_out_channels, idxs=[2, 6, 9])
    >>> group.prune()                     # conv1, bn1, every residual add and reader of those channels
    >>> model.conv1.out_channels
    61

How it works: tracing labels every tensor position with a global channel id and records pairs of ids that must be
removed together (see :mod:`.labels`); a vectorised union-find turns the pairs into *classes*. A group is the set of
classes present in its root layer; its members are every channel of those classes. Pruning marks the classes'
channels dead in a global mask, so the graph stays valid without re-tracing and every later group is computed
against the pruned model. Listing all groups costs time linear in the number of channels.
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch.nn as nn

from ..errors import DependencyError, OutputShapeWarning, PruningError
from ..layers import registry as layer_registry
from ..layers.base import CheckedIndices
from ..layers.family import FAMILIES
from ..inputs import has_meta_tensors
from ..validation import check_indices
from .channel_space import SIDE_IN, SIDE_OUT, ChannelSpace
from .group import Dependency, Group, GroupItem, fn_name
from .node import Node
from .snapshot import restore_modules, snapshot_modules
from .output_changes import output_changes_message
from .tp_api import TorchPruningGraphAPI
from .tracing import OUTPUT_REASON, Tracer, has_user_hooks
from .union_find import connected_components

#: the layer types whose output channels start the groups of ``get_all_groups`` (conv, linear, recurrent)
DEFAULT_ROOT_TYPES = FAMILIES.root_types()


HISTORY_ATTR = "_prune_explorer_history"


def model_history(model: nn.Module) -> List[dict]:
    """The JSON-able pruning history stored on a model (a plain list attribute, not a buffer).

    Each entry: ``{"root": name, "root_fn": fn name, "members": [{"name", "fn", "side", "idxs"}]}`` with the
    channel indices as they were when that group was pruned; replaying the entries in order on a fresh model
    rebuilds the pruned architecture.
    """
    hist = model.__dict__.get(HISTORY_ATTR)
    if hist is None:
        hist = []
        model.__dict__[HISTORY_ATTR] = hist
    return hist


class PruneRecord:
    """What one ``group.prune()`` changed; JSON-able via :meth:`as_dict`, reversible with :meth:`undo`."""

    def __init__(self, graph, group_root: str, root_fn: str, members: List[dict], killed: np.ndarray, snapshot):
        self.graph = graph
        self.root = group_root
        self.root_fn = root_fn
        self.members = members  # [{"name", "fn", "side", "idxs"}] with current indices at pruning time
        self._killed = killed
        self._snapshot = snapshot
        self.undone = False
        self.exact = False  # True for a hand-built group pruned with prune_group(exact=True)

    def as_dict(self) -> dict:
        return {"root": self.root, "root_fn": self.root_fn, "members": self.members}

    @property
    def removed_ids(self) -> np.ndarray:
        """Global channel ids this pruning removed (what :meth:`undo` brings back)."""
        return self._killed

    def undo(self) -> None:
        """Restore the model and the graph exactly as they were before this pruning (last record first)."""
        self.graph.undo(self)

    def __repr__(self):
        n = sum(len(m["idxs"]) for m in self.members)
        return f"PruneRecord(root={self.root}, members={len(self.members)}, channels={n})"


def _in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted, duplicate-free ``sorted_set`` (a binary search: no hashing)."""
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.searchsorted(sorted_set, values)
    return sorted_set[np.minimum(pos, sorted_set.size - 1)] == values


def _units(root_cls: np.ndarray, root_cur: np.ndarray) -> List[List[int]]:
    """Root channels (current indices) grouped by channel class, sorted: the units a group removes whole."""
    if root_cls.size == 0:
        return []
    order = np.argsort(root_cls, kind="stable")
    cls_sorted, cur_sorted = root_cls[order], root_cur[order]
    bounds = np.flatnonzero(np.diff(cls_sorted)) + 1
    if bounds.size + 1 == cur_sorted.size:  # one channel per class: singletons
        return [[c] for c in sorted(cur_sorted.tolist())]
    return sorted(chunk.tolist() for chunk in np.split(cur_sorted, bounds))


class DependencyGraph(TorchPruningGraphAPI):
    """Traced channel dependencies of a model. Build with :meth:`build_dependency`.

    Torch-Pruning's remaining graph methods (``check_pruning_group``, ``pruning_history``, ``register_customized_layer``
    ...) come from :class:`~prune_explorer.graph.tp_api.TorchPruningGraphAPI`."""

    def __init__(self):
        self.model: Optional[nn.Module] = None
        self.nodes: Dict[str, Node] = {}
        self.module2node: Dict[nn.Module, Node] = {}
        self.spaces: List[ChannelSpace] = []
        self.history: List[PruneRecord] = []
        self._undoable: List[PruneRecord] = []  # the last records that still hold what undo() needs (<= undo_depth)
        self.unknown_ops: Dict[str, int] = {}
        self._version = 0
        self._built = False
        #: how many recent prunings keep what ``undo()`` needs (the replaced tensors). 0 = no undo, no memory cost.
        self.undo_depth = 0
        #: pruners for layer types the library does not know (``register_customized_layer``; used by the next build)
        self.customized_pruners: dict = {}
        #: layers ``get_all_groups`` never uses (``build_dependency(ignored_layers=...)``, as Torch-Pruning)
        self.ignored_layers: list = []

    # ------------------------------------------------------------------------------------------------------------
    # building
    # ------------------------------------------------------------------------------------------------------------
    def build_dependency(
        self,
        model: nn.Module,
        example_inputs,
        forward_fn: Optional[Callable] = None,
        output_transform: Optional[Callable] = None,
        unwrapped_parameters=None,
        customized_pruners: Optional[dict] = None,
        verbose: bool = True,
        ignored_params=None,
        ignored_layers=None,
    ) -> "DependencyGraph":
        """Trace ``model`` on ``example_inputs`` (tensor → ``model(x)``, tuple/list → ``model(*x)``,
        dict → ``model(**x)``) and compute every channel coupling. Returns ``self``.

        ``customized_pruners`` maps a layer type to a :class:`~prune_explorer.layers.BasePruningFunc` for layers the
        library does not know. ``unwrapped_parameters`` (``{param: dim}`` or ``[(param, dim)]``) restricts a loose
        ``nn.Parameter`` to one prunable dim (by default every dim of size > 1 is considered).
        ``ignored_layers``: layers :meth:`get_all_groups` never uses (as a root, nor their output channels).
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"build_dependency expects an nn.Module, got {type(model).__name__}")
        customized_pruners = {**self.customized_pruners, **(customized_pruners or {})}
        if customized_pruners:
            for t, p in customized_pruners.items():
                if not isinstance(t, type) or not layer_registry.is_pruner(p):
                    raise TypeError(
                        "customized_pruners must map a layer type to a pruner object with get_out_channels / "
                        f"get_in_channels / prune_out_channels / prune_in_channels (got {t!r}: {p!r})"
                    )
        tracer = None
        if not has_user_hooks(model) and not has_meta_tensors(example_inputs):
            # shapes are all tracing needs: run on meta stand-ins first (no arithmetic at all)
            tracer = Tracer(model, customized_pruners, unwrapped_parameters)
            # a forward pass may cache things on modules (torchvision's anchor generators keep their anchors):
            # whatever the meta run stores is put back, so the model is exactly as it was
            state = snapshot_modules([model])
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    tracer.run(example_inputs, forward_fn=forward_fn, output_transform=output_transform, meta=True)
                if tracer.internal_errors:
                    raise RuntimeError("internal errors on meta")
            except Exception:
                tracer = None  # data-dependent code (e.g. detection post-processing): trace for real
            else:
                for w in caught:
                    if "prune_explorer" in str(w.message):
                        warnings.warn(w.message, w.category, stacklevel=2)
            finally:
                restore_modules(state)
        if tracer is None:
            tracer = Tracer(model, customized_pruners, unwrapped_parameters)
            tracer.run(example_inputs, forward_fn=forward_fn, output_transform=output_transform)
        self.traced_on_meta = tracer.meta
        self.model = model
        self._tracer_registry = tracer
        self.customized_pruners = dict(customized_pruners)
        self.ignored_layers = list(ignored_layers or ())
        self.nodes = tracer.nodes
        self.module2node = {n.module: n for n in tracer.nodes.values() if n.module is not None}
        self.param2node = {id(s.owner): tracer.nodes[s.name] for s in tracer.spaces.spaces if s.dim is not None}
        self.unknown_ops = dict(tracer.unknown_ops)
        self.internal_errors = list(tracer.internal_errors)
        self._table = tracer.spaces
        self.spaces = tracer.spaces.spaces
        self._param_attr = {id(p): (owner, attr) for (_, owner, attr, p) in tracer.loose.values()}
        self._finalise(tracer)
        self._built = True
        return self

    def _finalise(self, tracer: Tracer) -> None:
        n = self._table.next_gid
        a, b = tracer.couplings.as_numpy()
        cls = connected_components(n, a, b)
        n_cls = n
        fixed_reason: Dict[int, str] = {}
        output_ids = []
        for ids, reason in tracer.couplings.fixed_as_numpy():
            if reason == OUTPUT_REASON:  # fixed for the automatic tools only (see OUTPUT_REASON)
                output_ids.append(ids)
                continue
            for c in np.unique(cls[ids]):
                fixed_reason.setdefault(int(c), reason)
        # deferred checks: a reshape size read from another tensor must follow the same channels
        for src_fields, fields, reason in tracer.deferred:
            src = np.unique(np.concatenate([f.reshape(-1).numpy() for f in src_fields]))
            dst = np.unique(np.concatenate([f.reshape(-1).numpy() for f in fields]))
            src, dst = src[src >= 0], dst[dst >= 0]
            if not np.array_equal(np.unique(cls[src]), np.unique(cls[dst])):
                for c in np.unique(np.concatenate([cls[src], cls[dst]])):
                    fixed_reason.setdefault(int(c), reason)
        fixed_reason.setdefault(int(cls[0]), "sentinel")
        self._cls = cls
        # _hard_fixed: never prunable. _fixed: also the classes reaching an output, which only an explicit
        # get_pruning_group prunes (the automatic tools read _fixed)
        self._hard_fixed = np.zeros(n_cls, dtype=bool)
        self._hard_fixed[np.fromiter(fixed_reason.keys(), dtype=np.int64)] = True
        self._output_cls = np.zeros(n_cls, dtype=bool)
        if output_ids:
            self._output_cls[cls[np.concatenate(output_ids)]] = True
        for c in np.flatnonzero(self._output_cls & ~self._hard_fixed):
            fixed_reason[int(c)] = OUTPUT_REASON
        self._fixed = self._hard_fixed | self._output_cls
        self._fixed_reason = fixed_reason
        self._outputs = [(name, shape, [f.numpy() for f in fields]) for name, shape, fields in tracer.outputs]
        self._order = np.argsort(cls, kind="stable")
        sorted_cls = cls[self._order]
        self._cls_start = np.searchsorted(sorted_cls, np.arange(n_cls + 1))
        self._space_of = self._table.space_of_gid_array()
        self._offsets = np.array([s.offset for s in self.spaces] + [n], dtype=np.int64)
        self._alive = self._table.bind_alive()
        self._space_nodes = {s.index: tracer.nodes[s.name] for s in self.spaces}
        self._root_cache: Dict[int, Node] = {}
        self._deps: Dict[tuple, Dependency] = {}  # (root space, member space) -> their Dependency (immutable)

    # ------------------------------------------------------------------------------------------------------------
    # lookups
    # ------------------------------------------------------------------------------------------------------------
    def _check_built(self):
        if not self._built:
            raise DependencyError("the graph is empty: call build_dependency(model, example_inputs) first")

    def space_node(self, space: ChannelSpace) -> Node:
        return self._space_nodes[space.index]

    def _owner_key(self, layer):
        return id(layer)

    def spaces_of(self, layer) -> List[ChannelSpace]:
        """The channel spaces of a module or loose parameter (empty if it has none)."""
        key = id(layer)
        return [s for s in self.spaces if id(s.owner) == key]

    def _space_for(self, layer, pruning_fn) -> ChannelSpace:
        self._check_built()
        spaces = self.spaces_of(layer)
        name = self._name_of(layer)
        if not spaces:
            raise DependencyError(
                f"{name} is not a prunable layer of the traced model (it was not called during tracing, or its type "
                "has no pruner: pass customized_pruners={MyLayer: MyPruner()} to build_dependency)"
            )
        if pruning_fn is None or layer_registry.is_out_channel_pruning_fn(pruning_fn):
            side = SIDE_OUT
        elif layer_registry.is_in_channel_pruning_fn(pruning_fn):
            side = SIDE_IN
        else:
            raise DependencyError(f"{fn_name(pruning_fn)} is not a pruning function (use e.g. pe.prune_conv_out_channels)")
        for s in spaces:
            if s.side == side or s.passthrough:
                return s
        raise DependencyError(f"{name} has no {side}-channel space (its spaces: {', '.join(s.label for s in spaces)})")

    def _name_of(self, layer) -> str:
        node = self.module2node.get(layer) if isinstance(layer, nn.Module) else self.param2node.get(id(layer))
        if node is not None:
            return node.name
        return f"{type(layer).__name__} (not in the traced graph)"

    def get_out_channels(self, layer) -> Optional[int]:
        """Current output-channel count of a layer (module, loose parameter or graph :class:`Node`); None if none."""
        layer = layer.module if isinstance(layer, Node) else layer
        for s in self.spaces_of(layer):
            if s.side == SIDE_OUT:
                return s.current_size
        p = layer_registry.DEFAULT_REGISTRY.get(layer) if isinstance(layer, nn.Module) else None
        return p.get_out_channels(layer) if p else None

    def get_in_channels(self, layer) -> Optional[int]:
        """Current input-channel count of a layer (module, loose parameter or graph :class:`Node`); None if none."""
        layer = layer.module if isinstance(layer, Node) else layer
        for s in self.spaces_of(layer):
            if s.side == SIDE_IN or s.passthrough:
                return s.current_size
        p = layer_registry.DEFAULT_REGISTRY.get(layer) if isinstance(layer, nn.Module) else None
        return p.get_in_channels(layer) if p else None

    @staticmethod
    def is_out_channel_pruning_fn(fn) -> bool:
        return layer_registry.is_out_channel_pruning_fn(fn)

    @staticmethod
    def is_in_channel_pruning_fn(fn) -> bool:
        return layer_registry.is_in_channel_pruning_fn(fn)

    # ---- read-only views for tools built on the graph (explorer, pruner) ----------------------------------------
    @property
    def version(self) -> int:
        """A counter that changes after every prune and undo (use it to cache results per model state)."""
        return self._version

    @property
    def channel_class(self) -> np.ndarray:
        """``channel_class[gid]``: the coupled-channel class of every global channel id (stable across pruning)."""
        return self._cls

    @property
    def fixed_class_mask(self) -> np.ndarray:
        """``fixed_class_mask[c]``: class ``c`` can never be pruned (see :meth:`fixed_reason`)."""
        return self._fixed

    @property
    def output_class_mask(self) -> np.ndarray:
        """``output_class_mask[c]``: class ``c`` reaches a model output. Such classes are in :attr:`fixed_class_mask`
        (the automatic tools keep them) but an explicit :meth:`get_pruning_group` prunes them, with a warning."""
        return self._output_cls

    @property
    def alive_mask(self) -> np.ndarray:
        """``alive_mask[gid]``: that channel is still in the model (read it, do not write it)."""
        return self._alive

    def blocked_class_mask(self, ignored_layers) -> np.ndarray:
        """Classes containing an output channel of one of ``ignored_layers`` (what ``get_all_groups`` skips)."""
        return self._blocked_classes(ignored_layers)

    def fixed_reason(self, layer, idx: int = None, side: str = SIDE_OUT) -> Optional[str]:
        """Why channel ``idx`` (current index) of ``layer``'s ``side`` (``"out"`` or ``"in"``), or its first fixed
        channel, can never be pruned; None if it can."""
        for s in self.spaces_of(layer):
            if not (s.side == side or s.passthrough):
                continue
            idxs = s.alive_idx if idx is None else s.alive_idx[[idx]]
            cls = self._cls[s.gids(idxs)]
            fixed = cls[self._fixed[cls]]
            if fixed.size:
                return self._fixed_reason.get(int(fixed[0]))
        return None

    def prunable_fraction(self, layer) -> float:
        """Fraction of a layer's current output channels that some group can prune (0.0 - 1.0)."""
        for s in self.spaces_of(layer):
            if s.side == SIDE_OUT:
                cls = self._cls[s.gids(s.alive_idx)]
                return float((~self._fixed[cls]).mean()) if cls.size else 0.0
        return 0.0

    # ------------------------------------------------------------------------------------------------------------
    # groups
    # ------------------------------------------------------------------------------------------------------------
    def _members_of(self, classes: np.ndarray) -> np.ndarray:
        starts, ends = self._cls_start[classes], self._cls_start[classes + 1]
        lens = ends - starts
        if lens.sum() == 0:
            return np.empty(0, dtype=np.int64)
        idx = np.repeat(starts - np.cumsum(np.concatenate([[0], lens[:-1]])), lens) + np.arange(lens.sum())
        gids = self._order[idx]
        return gids[self._alive[gids]]

    def _blocked_classes(self, ignored) -> np.ndarray:
        blocked = np.zeros(self._fixed.size, dtype=bool)
        for layer in ignored or ():
            for s in self.spaces_of(layer):
                if s.side == SIDE_OUT:
                    blocked[self._cls[s.gids()]] = True
        return blocked

    def _closure(self, root: ChannelSpace, classes: np.ndarray, root_cls: Optional[np.ndarray] = None) -> Group:
        """The group that removes ``classes`` (sorted, prunable) from ``root``: it selects every alive root channel
        of those classes. ``root_cls``: the classes of the alive root channels, when the caller has them."""
        alive = root.alive_idx
        if root_cls is None:
            root_cls = self._cls[root.gids(alive)]
        return Group(self, root, classes, alive[_in_sorted(root_cls, classes)])

    def _materialise(self, group: Group):
        """``(items, units)`` of a group: its members (root first, then spaces in trace order; indices ascending within
        a space; each with the root channel it is coupled with) and its units."""
        root = group.root_space
        gids = np.sort(self._members_of(group.classes))  # ids are allocated space by space: sorted = grouped by space
        lo, hi = np.searchsorted(gids, (root.offset, root.offset + root.size))
        root_gids = gids[lo:hi]
        if lo:
            gids = np.concatenate([root_gids, gids[:lo], gids[hi:]])
        space_idx = self._space_of[gids]
        root_cur = root.rank[root_gids - root.offset]
        root_cls = self._cls[root_gids]
        rc_cls, first = np.unique(root_cls, return_index=True)
        # every member channel -> the root channel (current index) of its class; the root's own channels map to
        # themselves (also inside tied units)
        pos = np.minimum(np.searchsorted(rc_cls, self._cls[gids]), max(rc_cls.size - 1, 0))
        r_all = root_cur[first[pos]] if rc_cls.size else np.zeros(gids.size, dtype=np.int64)
        r_all[: root_gids.size] = root_cur
        starts = np.flatnonzero(np.diff(space_idx)) + 1
        starts = [0] + starts.tolist() + [gids.size]
        spaces, deps = self.spaces, self._deps
        items: List[GroupItem] = []
        for a, b in zip(starts[:-1], starts[1:]):
            if a == b:
                continue
            s = spaces[space_idx[a]]
            dep = deps.get((root.index, s.index))
            if dep is None:
                dep = deps[(root.index, s.index)] = Dependency(root.handler, s.handler, self.space_node(root),
                                                               self.space_node(s), s)
            items.append(GroupItem(dep, s.rank[gids[a:b] - s.offset], r_all[a:b]))
        return items, _units(root_cls, root_cur)

    def _restricted_items(self, group: Group, sub: Group):
        """``sub``'s items and units cut out of ``group``'s (already materialised, same graph version): every member
        channel whose root channel ``sub`` selects. Same result as :meth:`_materialise`, without the graph walk."""
        root = group.root_space
        keep = np.zeros(root.current_size, dtype=bool)
        keep[root.rank[sub._root_orig]] = True
        items: List[GroupItem] = []
        for it in group._items:
            m = keep[it.root_array]
            if m.any():
                items.append(GroupItem(it.dep, it.idx_array[m], it.root_array[m]))
        units = [u for u in group._units if keep[u[0]]]
        return items, units

    def _subgroup(self, group: Group, idxs: Sequence[int], validate: bool = True) -> Group:
        root = group.root_space
        idxs = self._validate_root_idxs(root, idxs) if validate else np.asarray(idxs, dtype=np.int64)
        orig = root.alive_idx[idxs]
        cls = np.unique(self._cls[root.gids(orig)])
        outside = cls[~_in_sorted(cls, group.classes)]
        if outside.size:
            reason = self._fixed_reason.get(int(outside[0]), "it is not part of this group (ignored or fixed)")
            bad = [int(i) for i, c in zip(idxs, self._cls[root.gids(orig)]) if c in set(outside.tolist())][:5]
            raise PruningError(f"channels {bad} of {root.label} cannot be pruned in this group: {reason}")
        sub = self._closure(root, cls)  # all of them prunable: they are the group's
        if group._items is not None and group._version == self._version and group.root_space is root:
            sub._items, sub._units = self._restricted_items(group, sub)
        return sub

    def _validate_root_idxs(self, root: ChannelSpace, idxs) -> np.ndarray:
        return check_indices(idxs, root.current_size, of=root.label)

    def get_pruning_group(self, module, pruning_fn: Callable, idxs: Sequence[int]) -> Group:
        """The group that removing channels ``idxs`` of ``module`` with ``pruning_fn`` implies (nothing changes yet).

        Channel indices tied by a layer's arithmetic (grouped convs) are added to complete their units. Channels that
        reach a model output may be asked for explicitly (pruning them warns, naming each output whose shape
        changes); channels the model's code cannot follow (literal sizes, unknown ops) raise :class:`PruningError`.
        """
        return self._group_on(self._space_for(module, pruning_fn), idxs)

    def _group_on(self, space: ChannelSpace, idxs: Sequence[int]) -> Group:
        arr = self._validate_root_idxs(space, idxs)
        orig = space.alive_idx[arr]
        cls = self._cls[space.gids(orig)]
        fixed = self._hard_fixed[cls]
        if fixed.any():
            k = int(np.flatnonzero(fixed)[0])
            raise PruningError(
                f"channel {int(arr[k])} of {space.label} can never be pruned: {self._fixed_reason.get(int(cls[k]))}"
            )
        return self._closure(space, np.unique(cls))

    def get_all_groups(self, ignored_layers: Iterable = (), root_module_types=DEFAULT_ROOT_TYPES) -> Iterator[Group]:
        """Yield every prunable group once, in execution order of their root layers.

        A group is skipped when all of its channels were already yielded in an earlier group, are fixed (they reach the
        model output, or an op that cannot follow pruning) or belong to an ``ignored_layers`` layer's outputs.
        """
        self._check_built()
        ignored = list(ignored_layers or ()) + self.ignored_layers
        ignored_ids = {id(m) for m in ignored}
        blocked = self._blocked_classes(ignored)
        covered = np.zeros(self._fixed.size, dtype=bool)
        root_types = tuple(root_module_types) if root_module_types else DEFAULT_ROOT_TYPES
        for s in list(self.spaces):
            if s.side != SIDE_OUT or id(s.owner) in ignored_ids:
                continue
            if not isinstance(s.owner, root_types):
                continue
            alive = s.alive_idx
            if alive.size == 0:
                continue
            root_cls = self._cls[s.gids(alive)]
            classes = np.unique(root_cls)
            classes = classes[~self._fixed[classes] & ~blocked[classes]]
            if classes.size == 0 or covered[classes].all():
                continue
            covered[classes] = True
            yield self._closure(s, classes, root_cls)

    # ------------------------------------------------------------------------------------------------------------
    # pruning
    # ------------------------------------------------------------------------------------------------------------
    def prune_group(self, group: Group, record_history: bool = True, exact: bool = False) -> PruneRecord:
        """Remove the group's channels from every member. Validates everything first; rolls back on any error.

        ``exact=True`` removes exactly the channels the group's items list, and marks exactly those as removed in
        the graph, whatever the graph's coupling says (for groups built by hand, such as the pruner's attention-head
        groups). The caller is then responsible for the model still running."""
        items = group.items
        if not items or not items[0].idx_array.size:
            raise PruningError(f"the group rooted at {group.root_space.label} has no channel to remove")
        listed = [it.dep.space.gids(it.dep.space.alive_idx[it.idx_array]) for it in items] if exact else []
        plan = []
        for it in items:
            s = it.dep.space
            try:
                idxs = self._checked_idxs(s, it)
            except PruningError as exc:
                raise PruningError(f"cannot prune group rooted at {group.root_space.label}: member {s.label}: {exc}") from None
            plan.append((s, idxs if isinstance(idxs, list) else list(idxs)))
        snapshot = self._snapshot([s for s, _ in plan])
        try:
            for s, idxs in plan:
                if s.dim is not None:  # a loose parameter: the pruner returns a new Parameter
                    owner, attr = self._param_attr[id(s.owner)]
                    new = s.handler(s.owner, idxs)
                    old_id = id(s.owner)
                    setattr(owner, attr, new)
                    self._param_attr[id(new)] = (owner, attr)
                    for other in self.spaces:
                        if id(other.owner) == old_id:
                            other.owner = new
                else:
                    s.handler(s.owner, idxs)
        except Exception as exc:
            self._restore(snapshot)
            raise PruningError(
                f"pruning the group rooted at {group.root_space.label} failed ({type(exc).__name__}: {exc}); "
                "the model was restored unchanged"
            ) from exc
        killed = self._members_of(group.classes)
        if exact:
            killed = np.unique(np.concatenate([killed] + listed))
        changed_outputs = output_changes_message(self, killed) if self._output_cls[self._cls[killed]].any() else None
        self._alive[killed] = False
        for s, _ in plan:
            s.invalidate()
        self._version += 1
        members = []
        for s, idxs in plan:
            entry = {"name": s.name, "fn": fn_name(s.handler), "side": s.side, "idxs": list(idxs) if isinstance(idxs, CheckedIndices) else [int(i) for i in idxs]}
            if s.dim is not None:
                entry["dim"] = int(s.dim)  # a loose parameter: the tensor dim that shrank
            members.append(entry)
        rec = PruneRecord(self, group.root_space.name, fn_name(group.root_space.handler), members, killed, snapshot)
        rec.exact = exact
        if record_history:
            self.history.append(rec)
            model_history(self.model).append(rec.as_dict())
        # drop replaced tensors that undo() will not need (they would double the memory of a large model)
        if not record_history or self.undo_depth <= 0:
            rec._snapshot = None
        self._undoable = [r for r in self._undoable if r._snapshot is not None and not r.undone]
        if rec._snapshot is not None:
            self._undoable.append(rec)
        while len(self._undoable) > max(0, self.undo_depth):
            self._undoable.pop(0)._snapshot = None
        if changed_outputs:
            warnings.warn(f"prune_explorer: pruning the group rooted at {group.root_space.label} changes the model's "
                          f"outputs: {changed_outputs}. Code that relies on their sizes must follow.",
                          OutputShapeWarning, stacklevel=3)
        return rec

    @staticmethod
    def _checked_idxs(s: ChannelSpace, item: GroupItem):
        """The member's indices as its pruner validates them (raises :class:`PruningError` if it refuses them)."""
        check = getattr(s.pruner, "check", None)
        if check is None:
            return item.idxs
        try:
            return check(s.owner, item.idx_array, SIDE_IN if s.side == SIDE_IN else SIDE_OUT)
        except PruningError:
            raise
        except Exception:
            if type(s.pruner).__module__.startswith("prune_explorer."):
                raise
            # a user's pruner whose channel count cannot be read (Torch-Pruning never asks for it): the graph's
            # indices are already checked against the traced size
            return item.idxs

    def _snapshot(self, spaces: List[ChannelSpace]):
        params = []
        for s in spaces:
            if s.dim is not None:
                owner, attr = self._param_attr[id(s.owner)]
                params.append((owner, attr, s.owner, [o for o in self.spaces if o.owner is s.owner]))
        return snapshot_modules(s.owner for s in spaces if s.dim is None), params

    def _restore(self, snapshot) -> None:
        mods, params = snapshot
        restore_modules(mods)
        for owner, attr, param, spaces in params:
            setattr(owner, attr, param)
            for s in spaces:
                s.owner = param

    def undo(self, record: Optional[PruneRecord] = None) -> None:
        """Undo the last pruning (or ``record``, which must be the last one)."""
        if not self.history:
            raise PruningError("nothing to undo: no group was pruned with record_history=True")
        if record is None:
            record = self.history[-1]
        if record.undone:
            raise PruningError("this pruning was already undone")
        if record is not self.history[-1]:
            raise PruningError("only the most recent pruning can be undone (undo later ones first)")
        if record._snapshot is None:
            raise PruningError(
                "this pruning cannot be undone: set DG.undo_depth = N (N > 0) before pruning to keep what undo needs"
            )
        self._restore(record._snapshot)
        self._alive[record._killed] = True
        for s in self.spaces:
            s.invalidate()
        self._version += 1
        record.undone = True
        self.history.pop()
        hist = model_history(self.model)
        if hist and hist[-1] == record.as_dict():
            hist.pop()

    # ------------------------------------------------------------------------------------------------------------
    # printing
    # ------------------------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        if not self._built:
            return "DependencyGraph(empty: call build_dependency)"
        layers = sum(1 for n in self.nodes.values() if n.kind == "layer")
        ops = sum(1 for n in self.nodes.values() if n.kind == "op")
        return f"DependencyGraph({type(self.model).__name__}: {layers} layers, {ops} ops, {len(self.spaces)} channel spaces)"

    def summary(self) -> str:
        """One line per node: name, type, channels and inputs (like ``torch.fx.Graph.print_tabular``)."""
        lines = [repr(self)]
        for n in self.nodes.values():
            if n.kind in ("layer", "param"):
                lines.append(n.format())
        return "\n".join(lines)
