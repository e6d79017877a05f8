"""Torch-Pruning's remaining :class:`~prune_explorer.DependencyGraph` methods, and output-shape change reports.

Code written for Torch-Pruning 1.6 calls these on the graph; they are built on the graph's own machinery
(groups, :meth:`~prune_explorer.DependencyGraph.prune_group`, undo), so they keep its guarantees (validated first,
rolled back on error)::

    >>> import torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> DG = pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 64, 64))
    >>> group = DG.get_pruning_group(model.conv1, pe.prune_conv_out_channels, idxs=[2, 6, 9])
    >>> DG.check_pruning_group(group)
    True
    >>> _ = group.prune()
    >>> DG.pruning_history()
    [['conv1', True, [2, 6, 9]]]
    >>> fresh = torchvision.models.resnet18()
    >>> DG2 = pe.DependencyGraph().build_dependency(fresh, torch.randn(1, 3, 64, 64))
    >>> DG2.load_pruning_history(DG.pruning_history())
    >>> fresh.conv1.out_channels
    61
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np
import torch.nn as nn

from ..errors import DependencyError, PruningError
from ..layers import registry as layer_registry
from ..validation import check_indices
from .model.channel_space import SIDE_IN, SIDE_OUT
from .model.group import Group, GroupItem
from .model.group_members import dependency
from .edit.records import checked_idxs

HistoryEntry = Union[list, tuple, dict]


class TorchPruningGraphAPI:
    """Mixed into :class:`~prune_explorer.DependencyGraph`: the Torch-Pruning method names not defined there."""

    # ---- customised layers -------------------------------------------------------------------------------------
    def register_customized_layer(self, layer_type: type, layer_pruner) -> None:
        """Use ``layer_pruner`` (a :class:`~prune_explorer.layers.BasePruningFunc`) for every layer of
        ``layer_type`` in the next :meth:`build_dependency` (same as its ``customized_pruners=`` argument; the
        layer's own parameters and sub-modules are then left to that pruner)."""
        if not isinstance(layer_type, type):
            raise TypeError(
                f"register_customized_layer expects a layer type (a class), got {layer_type!r}; register "
                "type(layer) to handle every layer of that class"
            )
        if not layer_registry.is_pruner(layer_pruner):
            raise TypeError(
                "the pruner must have prune_out_channels / prune_in_channels / get_out_channels / get_in_channels "
                f"(subclass pe.pruner.BasePruningFunc); got {layer_pruner!r}"
            )
        self.customized_pruners[layer_type] = layer_pruner

    def get_pruner_of_module(self, module):
        """The per-layer pruner (a :class:`~prune_explorer.layers.BasePruningFunc`) that prunes ``module``: the one
        the traced graph uses for it, else a registered customised pruner, else the built-in one; None if none."""
        for s in self.spaces_of(module) if self.state.built else ():
            return s.pruner
        if isinstance(module, nn.Module):
            return layer_registry.DEFAULT_REGISTRY.with_overrides(self.customized_pruners).get(module)
        return None

    # ---- validation ----------------------------------------------------------------------------------------------
    def check_pruning_group(self, group: Group) -> bool:
        """True if ``group.prune()`` would succeed: it belongs to this graph, removes at least one channel and leaves
        every member with at least one channel, and every member's pruner accepts its indices (grouped-conv units,
        multiples of ``num_heads``...). Nothing changes; prune with ``group.prune()``."""
        if getattr(group, "_graph", None) is not self:
            return False
        try:
            items = group.items
        except PruningError:
            return False
        if not items or not items[0].idx_array.size:
            return False
        if group.classes.size and self.classes.never[group.classes].any():
            return False
        for it in items:
            s = it.dep.space
            if it.idx_array.size >= s.current_size:
                return False
            try:
                checked_idxs(s, it)
            except PruningError:
                return False
        return True

    # ---- history ------------------------------------------------------------------------------------------------
    def pruning_history(self) -> List[HistoryEntry]:
        """What this graph pruned, in order, in Torch-Pruning's format: ``[root_name, is_out_channel_pruning,
        root_idxs]`` per group (``root_idxs``: the root layer's channel indices at that time).

        A group built by hand and pruned with ``prune_group(exact=True)`` (e.g. the pruner's attention-head groups)
        cannot be rebuilt from its root alone; it is given as its full record ``{"root", "root_fn", "members"}``.
        :meth:`load_pruning_history` accepts both forms. The list is plain data (JSON-able). For saving a pruned model
        use ``pe.state_dict`` / ``pe.save``, which keep the complete per-layer record."""
        out: List[HistoryEntry] = []
        for rec in self.history:
            if getattr(rec, "exact", False) or not rec.members:
                out.append({**rec.as_dict(), "exact": True})
                continue
            for entry in rec.entries():  # a batched cut: one entry per group
                root = entry["members"][0]
                out.append([entry["root"], root["side"] == SIDE_OUT, list(root["idxs"])])
        return out

    def load_pruning_history(self, pruning_history: Sequence[HistoryEntry]) -> None:
        """Redo a :meth:`pruning_history` on this graph's model (traced unpruned, same architecture).

        Entries are ``[module_name, is_out_channel_pruning, idxs]`` (Torch-Pruning's) or full records
        ``{"root", "root_fn", "members": [{"name", "fn", "side", "idxs"}]}`` (as in ``pe.state_dict``), replayed
        exactly. All or nothing: if an entry does not fit, the entries already replayed are undone and a
        :class:`PruningError` names the entry."""
        self._check_built()
        if isinstance(pruning_history, (str, bytes)) or not hasattr(pruning_history, "__iter__"):
            raise PruningError(f"a pruning history is a list of entries, got {type(pruning_history).__name__}")
        entries = list(pruning_history)
        saved_depth = self.undo_depth
        self.undo_depth = len(self.state.undoable) + len(entries)
        done = []
        try:
            for k, entry in enumerate(entries):
                try:
                    group, exact = self._group_of_entry(entry)
                    done.append(self.prune_group(group, record_history=True, exact=exact))
                except (PruningError, DependencyError) as exc:
                    raise PruningError(f"pruning history entry {k} ({_describe_entry(entry)}) does not fit this "
                                       f"model: {exc}") from None
        except BaseException:
            for rec in reversed(done):
                self.undo(rec)
            raise
        finally:
            self.undo_depth = saved_depth
            while len(self.state.undoable) > max(0, saved_depth):
                self.state.undoable.pop(0)._snapshot = None

    def _space_named(self, name: str, side: str, dim: Optional[int] = None):
        for s in self.spaces:
            if s.name == name and (s.side == side or s.passthrough) and (dim is None or s.dim is None or s.dim == dim):
                return s
        raise DependencyError(f"{name!r} has no {side}-channel space in the traced graph (is it the same model?)")

    def _group_of_entry(self, entry: HistoryEntry):
        if isinstance(entry, dict):
            members = entry.get("members")
            if not isinstance(members, list) or not members:
                raise PruningError("a record needs a non-empty 'members' list")
            first = members[0] if isinstance(members[0], dict) else {}
            root = self._space_named(str(entry.get("root", first.get("name", ""))), first.get("side", SIDE_OUT),
                                     first.get("dim"))
            items = []
            for m in members:
                if not isinstance(m, dict):
                    raise PruningError("each member is a dict {'name', 'fn', 'side', 'idxs'}")
                dim = m.get("dim")
                s = self._space_named(m.get("name", ""), m.get("side", SIDE_OUT), None if dim is None else int(dim))
                arr = check_indices(m.get("idxs"), s.current_size, what=f"{s.label} 'idxs'", of=s.label, min_keep=1)
                items.append(GroupItem(self._dependency(root, s), arr, arr))
            group = Group(self, root, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
            group._set_listing(items, [[int(i)] for i in items[0].idx_array])
            return group, True
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise PruningError("an entry is [module_name, is_out_channel_pruning, idxs] or a record dict")
        name, is_out, idxs = entry
        space = self._space_named(str(name), SIDE_OUT if is_out else SIDE_IN)
        return self._group_on(space, list(idxs)), False

    def _dependency(self, root_space, space):
        return dependency(self, root_space, space)


def _describe_entry(entry) -> str:
    if isinstance(entry, dict):
        return f"root {entry.get('root')!r}"
    if isinstance(entry, (list, tuple)) and entry:
        return f"{entry[0]!r}"
    return repr(entry)[:60]
