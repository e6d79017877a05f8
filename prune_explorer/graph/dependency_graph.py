"""DependencyGraph: trace a model once, then list and prune its coupled channel groups.

Example::

    >>> import torch, torchvision
    >>> import prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> DG = pe.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 224, 224))
    >>> group = DG.get_pruning_group(model.conv1, pe.prune_conv_out_channels, idxs=[2, 6, 9])
    >>> group.prune()                     # conv1, bn1, every residual add and reader of those channels
    PruneRecord(root=conv1, members=10, channels=30)
    >>> model.conv1.out_channels
    61

How it works: tracing labels every tensor position with a global channel id and records pairs of ids that must be
removed together (see :mod:`.labels`); a vectorised union-find turns the pairs into *classes*. A group is the set of
classes present in its root layer; its members are every channel of those classes. Pruning marks the classes'
channels dead in a global mask, so the graph stays valid without re-tracing and every later group is computed
against the pruned model. Listing all groups costs time linear in the number of channels.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch.nn as nn

from .._gc import gc_paused
from .._index import unique_ints
from ..errors import DependencyError, PruningError
from ..layers import registry as layer_registry
from ..layers.family import FAMILIES
from ..validation import check_indices, resolve_layers
from .model import fixed_widths, group_members
from .edit import records
from .trace.attributes import own_configs
from .edit.attribute_sizes import attribute_spaces, check_attribute_ratios, check_attribute_scales
from .trace.build import check_customized_pruners, trace_model
from .trace.tracing import named_modules_of
from .model.channel_space import SIDE_IN, SIDE_OUT, ChannelSpace
from .model.classes import ChannelClasses
from .model.group import Group, fn_name
from .model.node import Node
from .model.state import DependencyGraphState
from .edit.records import HISTORY_ATTR, PruneRecord, model_history
from .edit.tied import couple_tied_spaces, tied_parameters
from .tp_api import TorchPruningGraphAPI

__all__ = ["DependencyGraph", "DEFAULT_ROOT_TYPES", "HISTORY_ATTR", "PruneRecord", "model_history"]

#: the layer types whose output channels start the groups of ``get_all_groups`` (conv, linear, recurrent)
DEFAULT_ROOT_TYPES = FAMILIES.root_types()


class DependencyGraph(TorchPruningGraphAPI):
    """Traced channel dependencies of a model. Build with :meth:`build_dependency`.

    Torch-Pruning's remaining graph methods (``check_pruning_group``, ``pruning_history``, ``register_customized_layer``
    ...) come from :class:`~prune_explorer.graph.tp_api.TorchPruningGraphAPI`.

    State: one documented object, :attr:`state` (a :class:`~.model.state.DependencyGraphState`), written only by ``graph/``
    (the build; :mod:`.edit.records` for prune / undo) and read everywhere else through the public views:
    ``model``, ``nodes``, ``spaces`` (channel spaces) and ``classes`` (coupled-channel classes), fixed once built;
    :attr:`alive_mask` and :attr:`version`, changed by every prune and undo; ``history`` (live :class:`PruneRecord`
    objects, newest last) with ``undo_depth`` / :meth:`undoable` deciding which keep what undo needs; :attr:`tied`
    (shared parameters), :attr:`read_attributes` (size attributes the forward reads), :attr:`head_splits`
    (attention), :meth:`param_holder` (loose parameters). :meth:`lint` checks that all of it still agrees with the
    model and with itself."""

    def __init__(self):
        #: everything the graph knows, one documented object (:class:`~.model.state.DependencyGraphState`); only ``graph/``
        #: writes it, every other reader goes through the views below
        self.state = DependencyGraphState()

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
        head_pruning: str = "dims",
    ) -> "DependencyGraph":
        """Trace ``model`` on ``example_inputs`` (tensor → ``model(x)``, tuple/list → ``model(*x)``,
        dict → ``model(**x)``) and compute every channel coupling. Returns ``self``.

        ``customized_pruners`` maps a layer type to a :class:`~prune_explorer.layers.BasePruningFunc` for layers the
        library does not know. ``unwrapped_parameters`` (``{param: dim}`` or ``[(param, dim)]``) restricts a loose
        ``nn.Parameter`` to one prunable dim (by default every dim of size > 1 is considered).
        ``ignored_layers``: layers (modules or qualified names) :meth:`get_all_groups` never uses (as a root, nor
        their output channels).
        ``head_pruning``: where a channel dim is split into heads whose count and size could both follow the
        pruning (``view(B, N, self.num_heads, self.head_dim)``), ``"dims"`` (default) removes the same offsets from
        every head (heads get narrower) and ``"heads"`` removes whole heads; a head count or size written as a literal
        leaves only the other choice.
        """
        if head_pruning not in ("dims", "heads"):
            raise ValueError(f"head_pruning must be 'dims' (narrower heads) or 'heads' (fewer heads), got {head_pruning!r}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"build_dependency expects an nn.Module, got {type(model).__name__}")
        customized_pruners = {**self.customized_pruners, **(customized_pruners or {})}
        check_customized_pruners(customized_pruners)
        with gc_paused():  # the trace makes many small objects: no full collector passes over the heap meanwhile
            self._build(model, example_inputs, forward_fn, output_transform, unwrapped_parameters,
                        customized_pruners, ignored_layers, head_pruning)
        return self

    def _build(self, model, example_inputs, forward_fn, output_transform, unwrapped_parameters, customized_pruners,
               ignored_layers, head_pruning) -> None:
        named = named_modules_of(model)  # the one walk of the module tree, for the configs and the tracer
        own_configs(model, [m for _, m in named])  # pruning rewrites config fields: never those of a shared config
        tracer = trace_model(model, example_inputs, forward_fn, output_transform, customized_pruners,
                             unwrapped_parameters, head_pruning, named_modules=named)
        st = self.state
        st.tied = tied_parameters(model, named)  # their users' channels are coupled; pruning keeps each one a single tensor
        couple_tied_spaces(tracer, st.tied)
        st.traced_on_meta = tracer.meta
        st.head_pruning = head_pruning
        st.model = model
        st.attention_candidates = None
        st.hf_modules = None
        st.customized_pruners = customized_pruners
        st.ignored_layers = resolve_layers(model, ignored_layers, error=DependencyError)
        st.nodes = tracer.nodes
        st.module2node = {n.module: n for n in tracer.nodes.values() if n.module is not None}
        st.param2node = {id(s.owner): tracer.nodes[s.name] for s in tracer.spaces.spaces if s.dim is not None}
        st.unknown_ops = dict(tracer.unknown_ops)
        st.internal_errors = list(tracer.internal_errors)
        st.spaces = tracer.spaces.spaces
        st.param_attr = {id(p): (owner, attr) for (_, owner, attr, p) in tracer.loose_params.values()}
        st.attr_spaces = attr_spaces = attribute_spaces(st.spaces)
        ratios = tracer.constant_ratios
        st.classes = ChannelClasses.from_trace(tracer, checks=(
            lambda of, reasons: check_attribute_scales(of, reasons, attr_spaces),
            lambda of, reasons: check_attribute_ratios(of, reasons, attr_spaces, ratios)))
        st.outputs = [(name, shape, [f.numpy() for f in fields]) for name, shape, fields in tracer.outputs]
        st.space_of = tracer.spaces.space_of_gid_array()
        st.param_roots = frozenset(self._param_root_spaces(tracer))
        st.alive = tracer.spaces.bind_alive()
        st.space_nodes = {s.index: tracer.nodes[s.name] for s in st.spaces}
        st.deps = {}
        st.unreached_cache = None
        st.read_attributes = frozenset(tracer.read_attributes)
        st.visible = np.ones(tracer.spaces.next_gid, dtype=bool)
        for s in st.attr_spaces:
            st.visible[s.offset:s.offset + s.size] = False
        # a model without a head split never loads :mod:`prune_explorer.attention`
        st.head_splits, st.head_kind = [], None
        st.has_attention_products = bool(tracer.contracted_ids)
        if tracer.head_splits:
            from ..attention.heads import find_attention
            st.head_splits, st.head_kind = find_attention(self, tracer)
        tracer.close()  # nothing keeps the trace (nor, after a real forward pass, its activations) alive
        st.built = True

    def _param_root_spaces(self, tracer) -> List[int]:
        if not tracer.weight_out_ids:
            return []
        ids = unique_ints(np.concatenate([t.numpy().reshape(-1) for t in tracer.weight_out_ids]))
        spaces = unique_ints(self.state.space_of[ids[ids >= 0]])
        return [int(i) for i in spaces if i >= 0 and self.spaces[i].dim is not None]

    # ------------------------------------------------------------------------------------------------------------
    # lookups
    # ------------------------------------------------------------------------------------------------------------
    def _check_built(self):
        if not self.state.built:
            raise DependencyError("the graph is empty: call build_dependency(model, example_inputs) first")

    def space_node(self, space: ChannelSpace) -> Node:
        return self.state.space_nodes[space.index]

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

    # ---- read-only views of :attr:`state` (the build sets them; see :class:`~.model.state.DependencyGraphState`) -----------
    model = property(lambda self: self.state.model, doc="The traced model (pruning edits it in place).")
    nodes = property(lambda self: self.state.nodes, doc="Graph nodes by qualified name, in trace order.")
    module2node = property(lambda self: self.state.module2node, doc="Module -> its graph :class:`Node`.")
    param2node = property(lambda self: self.state.param2node, doc="``id(loose parameter)`` -> its graph node.")
    spaces = property(lambda self: self.state.spaces, doc="Every :class:`ChannelSpace` (``spaces[i].index == i``).")
    classes = property(lambda self: self.state.classes, doc="The coupled-channel classes (see :mod:`.model.classes`).")
    history = property(lambda self: self.state.history,
                       doc="Live :class:`PruneRecord` objects, oldest first (``undo`` pops the newest).")
    unrecorded_prunings = property(
        lambda self: self.state.unrecorded_prunings,
        doc="Prunings made with ``record_history=False`` (their channels are dead but in no record; see :meth:`lint`).")
    unknown_ops = property(lambda self: self.state.unknown_ops,
                           doc="Op name -> how many of its calls the trace could not follow.")
    internal_errors = property(lambda self: self.state.internal_errors, doc="Internal errors the trace met.")
    traced_on_meta = property(lambda self: self.state.traced_on_meta,
                              doc="Whether the trace ran on meta stand-ins (no arithmetic).")
    head_pruning = property(lambda self: self.state.head_pruning,
                            doc="``\"dims\"`` or ``\"heads\"``, as given to :meth:`build_dependency`.")
    param_roots = property(
        lambda self: self.state.param_roots,
        doc="Loose parameter spaces that act as a linear layer's outputs (a weight's output dim in ``F.linear`` or "
            "an experts' ``grouped_mm``): they root groups like ``nn.Linear`` outputs.")
    has_attention_products = property(
        lambda self: self.state.has_attention_products,
        doc="Whether the trace met a product of two activations' channels (``q @ k^T``, "
            "``scaled_dot_product_attention``).")
    customized_pruners = property(
        lambda self: self.state.customized_pruners,
        doc="Pruners for layer types the library does not know (``register_customized_layer``; used by the next "
            "build).")
    ignored_layers = property(lambda self: self.state.ignored_layers,
                              doc="Layers ``get_all_groups`` never uses (``build_dependency(ignored_layers=...)``).")

    @property
    def undo_depth(self) -> int:
        """How many recent prunings keep what :meth:`undo` needs (the replaced tensors). 0 = no undo, no memory cost.
        Settable (``DG.undo_depth = N``); :meth:`undoable` keeps everything inside a block."""
        return self.state.undo_depth

    @undo_depth.setter
    def undo_depth(self, n: int) -> None:
        self.state.undo_depth = n

    # ---- read-only views for tools built on the graph (explorer, pruner) ----------------------------------------
    @property
    def version(self) -> int:
        """A counter that changes after every prune and undo (use it to cache results per model state)."""
        return self.state.version

    @property
    def channel_class(self) -> np.ndarray:
        """``channel_class[gid]``: the coupled-channel class of every global channel id (stable across pruning)."""
        return self.classes.of

    @property
    def fixed_class_mask(self) -> np.ndarray:
        """``fixed_class_mask[c]``: class ``c`` is left alone by the automatic tools (see :meth:`fixed_reason`)."""
        return self.classes.kept

    @property
    def output_class_mask(self) -> np.ndarray:
        """``output_class_mask[c]``: class ``c`` reaches a model output. Such classes are in :attr:`fixed_class_mask`
        (the automatic tools keep them) but an explicit :meth:`get_pruning_group` prunes them, with a warning."""
        return self.classes.at_output

    @property
    def alive_mask(self) -> np.ndarray:
        """``alive_mask[gid]``: that channel is still in the model (read it, do not write it)."""
        return self.state.alive

    def blocked_class_mask(self, ignored_layers) -> np.ndarray:
        """Classes containing an output channel of one of ``ignored_layers`` (modules or qualified names; what
        ``get_all_groups`` skips)."""
        return self._blocked_classes(resolve_layers(self.model, ignored_layers, error=DependencyError))

    def fixed_reason(self, layer, idx: int = None, side: str = SIDE_OUT) -> Optional[str]:
        """Why channel ``idx`` (current index) of ``layer``'s ``side`` (``"out"`` or ``"in"``), or its first fixed
        channel, is left alone by the automatic tools (fixed, reaching an output, or reached by no group root; a
        layer the trace did not see has a reason too); None if a group prunes it."""
        spaces = self.spaces_of(layer)
        if not spaces:
            return fixed_widths.untraced_reason(self, layer)
        for s in spaces:
            if not (s.side == side or s.passthrough):
                continue
            idxs = s.alive_idx if idx is None else s.alive_idx[[idx]]
            cls = self.classes.of[s.gids(idxs)]
            fixed = cls[self.classes.kept[cls]]
            if fixed.size:
                return self.classes.reasons.get(int(fixed[0]))
            if self._unreached()[cls].any():
                return fixed_widths.UNREACHED_REASON
        return None

    def _unreached(self) -> np.ndarray:
        """:func:`.fixed_widths.unreached_mask` with the default roots, cached per graph version."""
        if self.state.unreached_cache is None or self.state.unreached_cache[0] != self.state.version:
            self.state.unreached_cache = (self.state.version, fixed_widths.unreached_mask(self))
        return self.state.unreached_cache[1]

    def fixed_widths(self, ignored_layers: Iterable = (), root_module_types=None) -> List["fixed_widths.FixedWidth"]:
        """Every layer side (as built) with channels that no group of :meth:`get_all_groups` (same
        ``ignored_layers`` / ``root_module_types``) prunes, one :class:`~.fixed_widths.FixedWidth` per reason, then
        the known layers the trace did not see (see :mod:`.fixed_widths`)."""
        self._check_built()
        return fixed_widths.fixed_widths(self, ignored_layers, root_module_types)

    def prunable_fraction(self, layer) -> float:
        """Fraction of a layer's current output channels that some group can prune (0.0 - 1.0)."""
        for s in self.spaces_of(layer):
            if s.side == SIDE_OUT:
                cls = self.classes.of[s.gids(s.alive_idx)]
                return float((~self.classes.kept[cls]).mean()) if cls.size else 0.0
        return 0.0

    def attention_kind(self, classes: np.ndarray) -> Optional[str]:
        """``"attention-heads"`` when ``classes`` include whole attention heads, ``"attention-dims"`` when they include
        head dims (one offset in every head), None for other channels."""
        if self.state.head_kind is None:
            return None
        from ..attention.heads import attention_kind
        return attention_kind(self.state.head_kind, classes)

    @property
    def head_splits(self) -> List[tuple]:
        """The attention head splits the graph found, ``(grid, head axis, head-dim axis, kind)`` each: ``grid`` holds
        the global channel ids of the split (0 where none), ``kind`` is 2 for whole heads, 1 for head dims."""
        return self.state.head_splits

    def space_of_channel(self, gid: int) -> ChannelSpace:
        """The channel space holding global channel id ``gid``."""
        return self.spaces[int(self.state.space_of[gid])]

    def attention_blocks(self) -> List["AttentionHeads"]:
        """Every attention block the graph found, as the model is now: its heads, key-value heads and head size,
        what they were when the graph was built, and which heads / head dims were removed (see
        :class:`~prune_explorer.attention.heads.AttentionHeads`). A pruning plan records these per block."""
        if not self.state.head_splits:
            return []
        from ..attention.heads import attention_blocks
        return attention_blocks(self)

    def attention_products(self) -> List["AttentionProducts"]:
        """Per attention block, the channel spaces its ``q @ k^T`` and ``attn @ v`` products follow (their MACs
        scale with them; see :func:`~prune_explorer.attention.heads.attention_products`)."""
        self._check_built()
        if not self.head_splits:
            return []
        from ..attention.heads import attention_products
        return attention_products(self)

    # ------------------------------------------------------------------------------------------------------------
    # groups
    # ------------------------------------------------------------------------------------------------------------
    def _blocked_classes(self, ignored) -> np.ndarray:
        blocked = np.zeros(self.classes.of.size, dtype=bool)
        for layer in ignored or ():
            for s in self.spaces_of(layer):
                if s.side == SIDE_OUT:
                    blocked[self.classes.of[s.gids()]] = True
        return blocked

    # the group computations live in group_members; Group asks its graph for them
    def _group_items(self, group: Group):
        return group_members.group_items(self, group)

    def _subgroup(self, group: Group, idxs: Sequence[int], validate: bool = True) -> Group:
        return group_members.subgroup(self, group, idxs, validate)

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
        cls = self.classes.of[space.gids(orig)]
        fixed = self.classes.never[cls]
        if fixed.any():
            k = int(np.flatnonzero(fixed)[0])
            raise PruningError(
                f"channel {int(arr[k])} of {space.label} can never be pruned: {self.classes.reasons.get(int(cls[k]))}"
            )
        return group_members.closure(self, space, unique_ints(np.asarray(cls, dtype=np.int64).reshape(-1)))

    def get_all_groups(self, ignored_layers: Iterable = (), root_module_types=DEFAULT_ROOT_TYPES) -> Iterator[Group]:
        """Yield every prunable group once, in execution order of their root layers.

        A group is skipped when all of its channels were already yielded in an earlier group, are fixed (they reach the
        model output, or an op that cannot follow pruning) or belong to an ``ignored_layers`` layer's outputs (modules
        or qualified names, e.g. ``["fc"]``; an unknown name raises with close-name suggestions).
        """
        for root in self.group_roots(ignored_layers, root_module_types):
            yield Group(self, root.space, root.classes, root.idxs)

    def group_roots(self, ignored_layers: Iterable = (), root_module_types=DEFAULT_ROOT_TYPES,
                    as_built: bool = False) -> Iterator[group_members.GroupRoot]:
        """Where each group of :meth:`get_all_groups` starts, without materialising it: its root space, selected
        root channels (original indices), classes, and the classes no earlier group reached. ``as_built=True``
        walks every channel the model was built with, whatever has been pruned since."""
        self._check_built()
        root_types = tuple(root_module_types) if root_module_types else DEFAULT_ROOT_TYPES
        ignored = resolve_layers(self.model, ignored_layers, error=DependencyError) if ignored_layers else []
        return group_members.group_roots(self, ignored + self.ignored_layers, root_types, as_built)

    def member_labels(self, classes: np.ndarray) -> List[str]:
        """The layer sides (labels such as ``"layer1.0.conv1.out"``, in trace order) holding channels of ``classes``
        as built: the members of the group of a :meth:`group_roots` entry (``root.classes``)."""
        self._check_built()
        return group_members.member_labels(self, classes)

    # ------------------------------------------------------------------------------------------------------------
    # pruning
    # ------------------------------------------------------------------------------------------------------------
    def prune_group(self, group: Group, record_history: bool = True, exact: bool = False,
                    attributes: Optional[List[tuple]] = None) -> PruneRecord:
        """Remove the group's channels from every member. Validates everything first; atomic: on any exception,
        ``KeyboardInterrupt`` included, the model and the graph are put back exactly as they were, then the exception
        propagates (a layer's own error as :class:`PruningError`).

        ``exact=True`` removes exactly the channels the group's items list, and marks exactly those as removed in
        the graph, whatever the graph's coupling says (for groups built by hand, such as the pruner's attention-head
        groups). The caller is then responsible for the model still running; ``attributes``: ``(AttributeRef, old,
        new)`` size attributes such a group rewrites too (applied and recorded with it). See :mod:`.records`."""
        return records.prune_group(self, group, record_history, exact, attributes)

    def prune_groups(self, groups: Sequence[Group]) -> PruneRecord:
        """Remove the channels of several groups at once, with one cut per member (a layer several groups share,
        such as the input of a layer after a concatenation, is copied once, not once per group). The groups' indices
        are read on the model as it is now, so decide them all first; they must not share channels. Validated
        first and atomic like :meth:`prune_group`; the result is ONE record (one :meth:`undo` restores all the
        groups bit-exactly) whose :meth:`~PruneRecord.entries` are the groups' history entries as if they had been
        pruned one after another. See :mod:`.edit.records`."""
        self._check_built()
        return records.prune_groups(self, list(groups))

    def split_record(self, record: PruneRecord) -> List[PruneRecord]:
        """The last record, a batched cut of :meth:`prune_groups`, as one record per group (undone and re-applied
        group by group: same channels, same model); ``[record]`` for a record of one group."""
        return records.split_record(self, record)

    def apply_edit(self, edit):
        """Apply a model edit that is not a channel cut (an object with ``apply()``, ``revert()`` and ``entries()``,
        e.g. a depth removal of :mod:`prune_explorer.depth`) and record it in :attr:`history` like a pruning, so
        :meth:`undo`, :meth:`redo` and undo scopes treat it the same way (see :mod:`.edit.model_edits`). Returns its
        :class:`~.edit.model_edits.EditRecord`."""
        self._check_built()
        return records.apply_edit(self, edit)

    def undo(self, record: Optional[PruneRecord] = None) -> None:
        """Undo the last pruning (or ``record``, which must be the last one)."""
        records.undo(self, record)

    def redo(self, record: PruneRecord) -> PruneRecord:
        """Prune again exactly the channels an undone ``record`` removed (same members, same channels); returns the
        new record, appended to the history like any pruning. Atomic, like :meth:`prune_group`."""
        self._check_built()
        return records.redo(self, record)

    def undoable(self, keep: bool = True):
        """``with DG.undoable():`` every pruning inside keeps what :meth:`undo` needs, whatever ``undo_depth`` says
        (a pruner's step holds it to roll back exactly); on leaving, prunings beyond ``undo_depth`` drop it again.
        ``keep=False`` changes nothing."""
        return records.keep_undoable(self, keep)

    def lint(self) -> None:
        """Check that the graph and its model still agree; raise :class:`~.edit.lint.GraphLintError` listing every
        broken invariant. Checked: each channel space's alive count equals its layer's live width (and a loose
        parameter is still the tensor its module holds); the history's records are live, removed disjoint channel
        ids that are exactly the dead ones, and match the model's stored history (so it replays to the model);
        tied parameters are one shared tensor; attention modules' head counts and a Hugging Face config hold the
        widths the modules have; :attr:`state` agrees with itself (array shapes, mask views, a version that never
        goes back). Cheap (no forward pass): ``pe.graph.lint_after_edits()`` runs it after every
        prune and undo (the test suite does). See :mod:`prune_explorer.graph.edit.lint`."""
        from .edit.lint import lint

        lint(self)

    # ---- the state pruning reads and writes (public views; only graph/ writes it) -------------------------------
    @property
    def built(self) -> bool:
        """Whether :meth:`build_dependency` has run."""
        return self.state.built

    @property
    def tied(self) -> list:
        """Tied parameters (:func:`~.edit.tied.tied_parameters`): one ``[((module, attribute), name), ...]`` per
        parameter registered on several modules when the graph was built."""
        return self.state.tied

    @property
    def read_attributes(self) -> frozenset:
        """``(id(owner), name)`` of the size attributes the traced forward read (kept current by pruning)."""
        return self.state.read_attributes

    def param_holder(self, tensor):
        """The tensor a loose parameter space's module holds now in the place of ``tensor`` (the space's owner), or
        None for a tensor that is not a traced loose parameter."""
        where = self.state.param_attr.get(id(tensor))
        return None if where is None else getattr(*where)

    # ------------------------------------------------------------------------------------------------------------
    # printing
    # ------------------------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        if not self.state.built:
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
