"""The whole state of a :class:`~prune_explorer.graph.dependency_graph.DependencyGraph`, as one documented object.

A graph holds exactly one :class:`DependencyGraphState` (``DG.state``); the facade's public attributes (``DG.model``,
``DG.spaces``, ``DG.history``, ``DG.version``, ``DG.alive_mask`` ...) are read-only views of its fields. Who writes
what:

* **the build** (``DependencyGraph.build_dependency``) sets every field and marks it ``built``; the fields under
  *traced* below never change afterwards;
* **editing** (:mod:`..edit.records`: prune, undo, redo, roll back) changes the fields under *edited*;
* **caches** are filled lazily by their one reader in ``graph/`` and are keyed on ``version`` where they depend on
  the pruning state;
* **settings** are what users set (``DG.undo_depth = N``; ``register_customized_layer``; the build's
  ``ignored_layers``).

Only code in ``prune_explorer/graph/`` writes a field (a structure test enforces it); every other package reads the
facade's views. :meth:`DependencyGraphState.problems` (run by ``DG.lint()``) checks the fields' shapes and their
agreement.

Units: a *gid* (global channel id) indexes every channel position of the traced model (0 is reserved: "no
channel"); ``n_ids`` is their count. Channel spaces are the (layer, side) pairs (see :mod:`.channel_space`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import numpy as np

__all__ = ["DependencyGraphState"]


@dataclass(eq=False)
class DependencyGraphState:
    """Every field of a dependency graph (see the module docstring for who writes which)."""

    # ---- traced: set by the build, fixed afterwards -------------------------------------------------------------
    #: the traced model (the graph edits it in place)
    model: Any = None
    #: graph nodes by qualified name (layers, ops, loose parameters), in trace order
    nodes: Dict[str, Any] = field(default_factory=dict)
    #: module -> its :class:`~.node.Node`
    module2node: Dict[Any, Any] = field(default_factory=dict)
    #: ``id(loose parameter)`` (the tensor traced) -> its node
    param2node: Dict[int, Any] = field(default_factory=dict)
    #: every :class:`~.channel_space.ChannelSpace`; ``spaces[i].index == i``
    spaces: List[Any] = field(default_factory=list)
    #: ``space.index`` -> the node owning that space (same length as ``spaces``)
    space_nodes: Dict[int, Any] = field(default_factory=dict)
    #: the coupled-channel classes (:class:`~.classes.ChannelClasses`; ``classes.of`` has shape ``(n_ids,)``)
    classes: Any = None
    #: shape ``(n_ids,)`` int64: the index of the space holding each gid (-1 for none)
    space_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: shape ``(n_ids,)`` bool: False for the hidden gids of size attributes (never group members)
    visible: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: the hidden spaces of size attributes (``self.hidden_dim`` ...), rewritten by pruning
    attr_spaces: List[Any] = field(default_factory=list)
    #: indices of the loose-parameter spaces that root groups like ``nn.Linear`` outputs
    param_roots: FrozenSet[int] = frozenset()
    #: ``(output name, shape, [per-dim gid arrays])`` for each model output, to report which outputs a pruning changes
    outputs: List[tuple] = field(default_factory=list)
    #: tied parameters (:func:`..edit.tied.tied_parameters`): one ``[((module, attribute), name), ...]`` each
    tied: list = field(default_factory=list)
    #: ``(id(owner), attribute name)`` of the size attributes the traced forward read
    read_attributes: FrozenSet[tuple] = frozenset()
    #: attention head splits ``(grid, head axis, head-dim axis, kind)`` (empty for a model without heads)
    head_splits: List[tuple] = field(default_factory=list)
    #: per class 0 / 1 (head dims) / 2 (whole heads), shape ``(n_classes,)``; None without head splits
    head_kind: Optional[np.ndarray] = None
    #: whether the trace met a product of two activations' channels (``q @ k^T``)
    has_attention_products: bool = False
    #: ``"dims"`` or ``"heads"`` (the build's ``head_pruning``)
    head_pruning: str = "dims"
    #: whether the trace ran on meta stand-ins (no arithmetic)
    traced_on_meta: bool = False
    #: op name -> how many calls of it the trace could not follow
    unknown_ops: Dict[str, int] = field(default_factory=dict)
    #: internal errors the trace met (messages)
    internal_errors: List[str] = field(default_factory=list)
    #: whether the build has run (set last by the build, never unset)
    built: bool = False

    # ---- edited: prune, undo, redo and roll back (:mod:`..edit.records`) ----------------------------------------
    #: shape ``(n_ids,)`` bool: the channel is still in the model (gid 0 is False); each space's ``alive`` is a view
    alive: np.ndarray = field(default_factory=lambda: np.ones(1, dtype=bool))
    #: increases by at least 1 on every prune, undo and roll back (never decreases): a cache key
    version: int = 0
    #: live :class:`~..edit.records.PruneRecord` objects, oldest first
    history: List[Any] = field(default_factory=list)
    #: the newest records that still hold what undo needs (at most ``undo_depth`` outside ``keep_undo``)
    undoable: List[Any] = field(default_factory=list)
    #: > 0 inside ``DG.undoable()``: every pruning keeps what undo needs (nesting depth)
    keep_undo: int = 0
    #: prunings made with ``record_history=False`` (their channels are dead but in no record)
    unrecorded_prunings: int = 0
    #: ``id(tensor)`` -> ``(module, attribute)`` holding a loose parameter (each replacement tensor is added)
    param_attr: Dict[int, Tuple[Any, str]] = field(default_factory=dict)

    # ---- caches (filled lazily in graph/) ---------------------------------------------------------------------
    #: ``(root space index, member space index)`` -> their immutable :class:`~.group.Dependency`
    deps: Dict[tuple, Any] = field(default_factory=dict)
    #: ``(version, bool mask over classes)``: classes no default group root reaches, or None
    unreached_cache: Optional[tuple] = None
    #: modules with q / k projections, looked for at the first sync after a pruning (None: not yet)
    attention_candidates: Optional[list] = None
    #: a Hugging Face model's modules whose widths its config describes (``hf.scan_modules``), scanned at the first
    #: sync after a pruning (None: not yet)
    hf_modules: Optional[Any] = None
    #: ``version`` when ``DG.lint()`` last ran (it checks that the version never goes back); None before
    linted_version: Optional[int] = None

    # ---- settings (users; the pruner's driver sets ``undo_depth``) ----------------------------------------------
    #: how many recent prunings keep what undo needs (0 = no undo, no memory cost)
    undo_depth: int = 0
    #: layer type -> pruner for layers the library does not know (used by the next build)
    customized_pruners: dict = field(default_factory=dict)
    #: layers ``get_all_groups`` never uses (resolved modules)
    ignored_layers: list = field(default_factory=list)

    def shape_problems(self) -> List[str]:
        """The fields every other check reads, as sentences (empty when sound): the state is built and its
        per-channel arrays (``alive``, ``space_of``, ``visible``, ``classes.of``) all have shape ``(n_ids,)``."""
        if not self.built:
            return ["state.built is False: build_dependency did not finish, yet the state holds a model"]
        if not isinstance(self.alive, np.ndarray) or self.alive.ndim != 1 or self.alive.dtype != np.bool_:
            return [f"state.alive must be a 1-d bool array, got {type(self.alive).__name__} "
                    f"{getattr(self.alive, 'shape', '')} {getattr(self.alive, 'dtype', '')}"]
        n = self.alive.shape[0]
        out = []
        for name, a, kind, word in (("space_of", self.space_of, np.integer, "an int"),
                                    ("visible", self.visible, np.bool_, "a bool"),
                                    ("classes.of", getattr(self.classes, "of", None), np.integer, "an int")):
            if not isinstance(a, np.ndarray) or a.shape != (n,) or not np.issubdtype(a.dtype, kind):
                out.append(f"state.{name} must be {word} array of shape ({n},) like state.alive, got "
                           f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
        return out

    def problems(self, last_version: Optional[int] = None) -> List[str]:
        """The fields' own consistency, as sentences (empty when sound): :meth:`shape_problems`, then each space's
        index and mask view, the node of each space, the version has not gone back (``last_version``: the one seen
        by the previous check), and the bookkeeping of undo."""
        out = self.shape_problems()
        if out:
            return out
        for i, s in enumerate(self.spaces):
            if s.index != i:
                out.append(f"state.spaces[{i}] ({s.label}) has index {s.index}")
            elif s.alive.base is not self.alive:
                out.append(f"{s.label}: its alive mask is not a view of state.alive")
        if len(self.space_nodes) != len(self.spaces) or set(self.space_nodes) != set(range(len(self.spaces))):
            out.append(f"state.space_nodes covers {len(self.space_nodes)} spaces, state.spaces has {len(self.spaces)}")
        if not isinstance(self.version, int) or self.version < 0:
            out.append(f"state.version must be a non-negative int, got {self.version!r}")
        elif last_version is not None and self.version < last_version:
            out.append(f"state.version went back from {last_version} to {self.version} (it must only grow)")
        if self.keep_undo < 0:
            out.append(f"state.keep_undo is {self.keep_undo} (< 0: an undoable() block was left twice)")
        live = {id(r) for r in self.history}
        if any(not r.undone and id(r) not in live for r in self.undoable):
            out.append("state.undoable holds a live record that is not in state.history")
        if self.unrecorded_prunings < 0:
            out.append(f"state.unrecorded_prunings is {self.unrecorded_prunings}")
        return out
