"""Depth groups in a pruner's walk: the blocks of :func:`~.blocks.find_blocks` as groups of their own kind
(``group.kind == "depth"``), proposed (remove or keep), pruned and undone through the pruner's driver beside the
width groups.

``BasePruner(..., prune_depth=True, depth_pruning_ratio=0.25)`` (Torch-Pruning's style of options, as
``prune_num_heads`` / ``head_pruning_ratio``) adds a :class:`DepthSource` to ``pruner.driver.group_sources``: after
the graph's groups, every block still in the model is a :class:`DepthCandidate` with one "unit" (root index ``0``,
the block itself); its :class:`DepthProposal` removes it (``proposed_idxs == [0]``) when it is among the
``depth_pruning_ratio`` of the initial blocks with the lowest score, else keeps it (``[]``). The score is the block
influence (1 - cos of the block's input and output, :mod:`.influence`) on the pruner's calibration data (or the
example inputs), or ``depth_importance(model, groups) -> one score per group`` (lower goes first).

Removing a block is an edit recorded in the width graph's history (``DG.apply_edit``): undo, redo, a driver's undo
scope (rollback on error, trials, the post-prune check's repair) and ``DG.undo()`` treat it like a channel cut, last
in first out, and the model's stored history gets a ``{"kind": "depth", ...}`` entry that
:func:`prune_explorer.history.apply_history` replays. The width graph keeps the removed block's layers: a width cut
made after the removal prunes them too (they are detached: the model does not run them), so an undo in any order
puts back a block that fits. Names in the stored history are those the graph was traced with.

    >>> import torch, torchvision, prune_explorer as pe
    >>> m = torchvision.models.resnet18()
    >>> p = pe.pruner.BasePruner(m, torch.randn(1, 3, 32, 32), pe.importance.MagnitudeImportance(),
    ...                          pruning_ratio=0.0, prune_depth=True, depth_pruning_ratio=0.2)
    >>> p.step()
    >>> sum(isinstance(b, torch.nn.Identity) for layer in (m.layer1, m.layer2, m.layer3, m.layer4) for b in layer)
    1
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import PruningError
from .blocks import DEPTH_KIND, DepthGroup, find_blocks
from .remove import remove_blocks

__all__ = ["DepthSource", "DepthCandidate", "DepthProposal", "DepthEdit", "remove_block", "attach_depth",
           "DEPTH_SCOPE", "is_depth"]

#: the scope of a depth proposal (``proposal.scope``)
DEPTH_SCOPE = "depth"


def is_depth(group) -> bool:
    """Whether ``group`` (a group, proposal or decision) is a depth group."""
    return getattr(group, "kind", None) == DEPTH_KIND


def remove_block(block: nn.Module, idxs=None) -> None:
    """The "pruning function" a depth group reports (``group.pruning_fn``): removing the whole block. Call
    :meth:`DepthCandidate.prune` instead; this name only identifies the kind of cut in logs and scripts."""
    raise PruningError("remove_block is not called directly: prune the depth group (group.prune()) or use "
                       "pe.depth.remove_blocks")


class _BlockSpace:
    """The root "channel space" of a depth group: one unit, the block (what the walk's bookkeeping reads)."""

    side = "out"
    passthrough = True
    dim = None

    def __init__(self, name: str, present: bool):
        self.name = name
        self.label = f"{name}:depth"
        self.size = 1
        self.alive = np.array([present])
        self.current_size = int(present)
        self.alive_idx = np.flatnonzero(self.alive)
        self.rank = np.cumsum(self.alive) - 1
        self.index = -1
        self.owner = None
        self.handler = remove_block


class _BlockNode:
    """``group.root`` of a depth group: the block's qualified ``name`` and its class name as ``op``."""

    def __init__(self, name: str, module: nn.Module):
        self.name = name
        self.op = type(module).__name__
        self.module = module


class DepthEdit:
    """Removing blocks as an edit of a graph's history (``DG.apply_edit``): ``apply`` / ``revert`` / ``entries``."""

    def __init__(self, model: nn.Module, groups: Sequence[DepthGroup]):
        self.model = model
        self.groups = list(groups)
        self._record = None

    def apply(self) -> None:
        current = [_at_current_place(g) for g in self.groups]
        self._record = remove_blocks(self.model, current)

    def revert(self) -> None:
        rec = self._record
        if rec is not None and not rec.undone:
            rec.undo()

    def entries(self) -> List[dict]:
        return [{"kind": DEPTH_KIND, "root": g.name, "mode": g.mode} for g in self.groups]


def _at_current_place(g: DepthGroup) -> DepthGroup:
    """``g`` with the index its module has in its container now (a layer stack shrinks as layers are deleted)."""
    for k, m in enumerate(g.container):
        if m is g.module:
            return DepthGroup(g.name, g.module, g.container, k, g.mode)
    raise PruningError(f"the block {g.name} is no longer in the model (it was removed already)")


def _present(g: DepthGroup) -> bool:
    return any(m is g.module for m in g.container)


class DepthCandidate:
    """One block as a group of the walk (``kind == "depth"``; module docstring). It has one root index, ``0``: the
    block. ``prune()`` removes it through the graph (an undoable edit); ``select([0])`` is itself, ``select([])``
    an empty cut."""

    kind = DEPTH_KIND
    items: list = []
    exact = False

    def __init__(self, source: "DepthSource", block: DepthGroup):
        self.source = source
        self.block = block
        self.root_name = block.name
        self.root_module = block.module
        self.root = _BlockNode(block.name, block.module)
        self.pruning_fn = remove_block
        self.root_space = _BlockSpace(block.name, _present(block))

    # ---- the group interface the walk and the plans read -------------------------------------------------------
    @property
    def root_idxs(self) -> List[int]:
        return [0] if self.root_space.current_size else []

    @property
    def units(self) -> List[List[int]]:
        return [[0]] if self.root_space.current_size else []

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        return iter(())

    @property
    def num_params(self) -> int:
        """Parameters of the block as it is now."""
        return self.block.num_params

    @property
    def macs(self) -> Optional[int]:
        """MACs of the block on the pruner's example inputs as the model is now (None when they cannot be counted)."""
        return self.source.block_macs(self.block)

    @property
    def score(self) -> float:
        """The block's score now (block influence, or ``depth_importance``'s; lower goes first)."""
        return float(self.source.scores()[self.source.index_of(self.block)])

    def layers(self) -> List[nn.Module]:
        return [self.block.module]

    def layer_names(self) -> List[str]:
        """Qualified names of every module inside the block (for highlighting it in a drawing)."""
        return [f"{self.block.name}.{n}" if n else self.block.name for n, _ in self.block.module.named_modules()]

    def select(self, idxs: Sequence[int], validate: bool = True) -> "DepthCandidate":
        idxs = [int(i) for i in idxs]
        if any(i != 0 for i in idxs):
            raise PruningError(f"a depth group has one index, 0 (the block {self.root_name}); got {idxs}")
        return self if idxs else _NoCut(self)

    def prune(self, idxs=None, record_history: bool = True):
        """Remove the block (an undoable edit of the pruner's graph); returns its record."""
        if idxs is not None and not list(idxs):
            return None
        if not _present(self.block):
            raise PruningError(f"the block {self.root_name} was already removed")
        return self.source.graph.apply_edit(DepthEdit(self.source.model, [self.block]))

    def details(self, max_idxs: int = 8) -> str:
        return (f"Depth group {self.root_name} ({type(self.block.module).__name__}, {self.block.mode}): "
                f"{self.num_params:,} parameters")

    def __repr__(self) -> str:
        return f"DepthCandidate({self.root_name})"


class _NoCut:
    def __init__(self, group):
        self.group = group

    def prune(self, record_history: bool = True):
        return None


class DepthProposal:
    """The pruner's proposal for a depth group: remove the block (``proposed_idxs == [0]``) or keep it (``[]``),
    with its ``importance`` (one score: the block's influence), the ``step``, ``scope`` (``"depth"``) and the
    ``pruning_ratio`` (``depth_pruning_ratio``) behind it. ``prune()`` accepts it (``prune(idxs=[])`` does
    nothing); the attributes of a width :class:`~prune_explorer.pruner.Proposal` that the walk and the driver read
    are here too."""

    #: the driver prunes it through :meth:`prune` (its ``on_pruned`` bookkeeping runs), as a width proposal
    own_bookkeeping = True

    def __init__(self, group: DepthCandidate, step: int, ratio: float, remove: bool, score: float,
                 on_pruned: Optional[Callable] = None, reason: str = ""):
        self.group = group
        self.full_group = group
        self.kind = DEPTH_KIND
        self.step = step
        self.scope = DEPTH_SCOPE
        self.pruning_ratio = ratio
        self.importance = torch.tensor([score], dtype=torch.float32)
        self.candidate_idxs = list(group.root_idxs)
        self.proposed_idxs = [0] if remove and self.candidate_idxs else []
        self.prune_units = [[0]] if self.candidate_idxs else []
        self.n_target = len(self.proposed_idxs)
        self.max_removable = len(self.candidate_idxs)
        self.skip_kind = None if self.proposed_idxs else "target"
        self.skip_reason = None if self.proposed_idxs else (reason or "the block is kept (its score is not among "
                                                            "the lowest depth_pruning_ratio of the blocks)")
        self.on_pruned = on_pruned
        self.record = None
        self.batched = False

    source = property(lambda self: self.group.source)
    root_name = property(lambda self: self.group.root_name)
    root_space = property(lambda self: self.group.root_space)
    root_module = property(lambda self: self.group.root_module)
    root = property(lambda self: self.group.root)
    pruning_fn = property(lambda self: self.group.pruning_fn)
    root_idxs = property(lambda self: list(self.proposed_idxs))
    units = property(lambda self: [[0]] if self.proposed_idxs else [])
    items = property(lambda self: [])
    selection = property(lambda self: self.group.select(self.proposed_idxs))

    def select(self, idxs, validate: bool = True):
        return self.group.select(idxs, validate)

    def prune(self, idxs=None, record_history: bool = True):
        if idxs is None:
            idxs = self.proposed_idxs
        record = self.group.prune(list(idxs)) if list(idxs) else None
        self.record = record
        if self.on_pruned is not None:
            self.on_pruned(self, record)
        return record

    __call__ = prune

    @property
    def was_pruned(self) -> bool:
        return self.record is not None

    def details(self, max_idxs: int = 8) -> str:
        what = "remove" if self.proposed_idxs else "keep"
        return (f"Depth proposal (step {self.step}, ratio {self.pruning_ratio:.3f}): {what} {self.root_name} "
                f"(score {float(self.importance[0]):.4g}, {self.group.num_params:,} parameters)")

    def __repr__(self) -> str:
        return self.details()

    def __len__(self) -> int:
        return 1 if self.proposed_idxs else 0

    def __iter__(self):
        return iter(())


class DepthSource:
    """The depth groups of one pruner (module docstring): a ``group_source`` of its driver.

    Args:
        pruner: the pruner (its model, graph, example inputs and calibration data are used).
        ratio: fraction of the initial blocks the proposals remove (``depth_pruning_ratio``), in [0, 1).
        importance: ``importance(model, groups) -> scores`` (one per group, lower goes first); default: block
            influence on the pruner's calibration data, or on its example inputs when it has none.
        blocks: the blocks to consider (modules), default :func:`~.blocks.find_blocks`.
    """

    def __init__(self, pruner, ratio: float = 0.0, importance: Optional[Callable] = None, blocks=None):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise PruningError(f"depth_pruning_ratio must be a number in [0, 1), got {ratio!r}")
        if importance is not None and not callable(importance):
            raise PruningError("depth_importance must be a callable importance(model, groups) -> one score per group")
        self.pruner = pruner
        self.ratio = float(ratio)
        self.importance = importance
        self.blocks: List[DepthGroup] = find_blocks(pruner.model, pruner.example_inputs, blocks)
        self._scores = None  # (graph version, scores over the present blocks by position in self.blocks)
        self._macs = None  # (graph version, {block name: MACs})

    model = property(lambda self: self.pruner.model)
    graph = property(lambda self: self.pruner.DG)

    def __call__(self):
        """One depth group per block (the driver's ``group_sources`` contract), removed blocks included (they
        have no root index left and are proposed nothing), so that the walk's order never changes."""
        return [DepthCandidate(self, b) for b in self.blocks]

    @property
    def n_target(self) -> int:
        """Blocks the proposals remove in all (``int(ratio * initial blocks)``; a layer stack keeps one)."""
        n = int(self.ratio * len(self.blocks) + 1e-9)
        if any(b.mode == "delete" for b in self.blocks):
            n = min(n, len(self.blocks) - 1)
        return n

    def inside_removed(self, group) -> bool:
        """Whether a width ``group`` is rooted inside a block removed now (its layers no longer run)."""
        if not any(not _present(b) for b in self.blocks):
            return False
        root = getattr(group, "root_module", None)
        return any(not _present(b) and any(m is root for m in b.module.modules()) for b in self.blocks)

    def removed_block_proposal(self, group, step: int):
        """The proposal for a width group rooted inside a removed block: nothing, with the reason (a guard skip)."""
        from ..pruner.proposal import Proposal
        from ..pruner.guards import GUARD

        return Proposal(group, step, None, 0.0, skip_kind=GUARD,
                        skip_reason="its layers are in a block removed by a depth group (they no longer run)")

    def removed_names(self) -> List[str]:
        """Qualified names of the blocks removed now."""
        return [b.name for b in self.blocks if not _present(b)]

    def n_removed(self) -> int:
        return sum(not _present(b) for b in self.blocks)

    def index_of(self, block: DepthGroup) -> int:
        return next(k for k, b in enumerate(self.blocks) if b is block)

    def scores(self) -> torch.Tensor:
        """One score per block of :attr:`blocks` (removed blocks: +inf), computed on the model as it is now."""
        version = self.graph.version
        if self._scores is not None and self._scores[0] == version:
            return self._scores[1]
        present = [b for b in self.blocks if _present(b)]
        out = torch.full((len(self.blocks),), float("inf"))
        if present:
            if self.importance is not None:
                s = torch.as_tensor(self.importance(self.model, present), dtype=torch.float32).reshape(-1)
                if s.numel() != len(present) or bool(torch.isnan(s).any()):
                    raise PruningError(f"depth_importance returned {s.numel()} scores (NaN: "
                                       f"{bool(torch.isnan(s).any())}) for {len(present)} blocks; it must return "
                                       "one finite score per group")
            else:
                from .influence import block_influence
                from ..calibration import as_calibration

                data = self.pruner.calibration
                cal = as_calibration(data) if data is not None else as_calibration([self.pruner.example_inputs])
                s = block_influence(self.model, present, cal)
            k = 0
            for j, b in enumerate(self.blocks):
                if _present(b):
                    out[j] = float(s[k])
                    k += 1
        self._scores = (version, out)
        return out

    def block_macs(self, block: DepthGroup) -> Optional[int]:
        version = self.graph.version
        if self._macs is None or self._macs[0] != version:
            try:
                from ..measure import count_ops_and_params

                _, _, layer_macs, _ = count_ops_and_params(self.model, self.pruner.example_inputs, layer_wise=True,
                                                           layer_keys="name")
                names = {id(m): n for n, m in self.model.named_modules()}
                macs = {b.name: int(layer_macs.get(names.get(id(b.module), ""), 0)) for b in self.blocks
                        if _present(b)}
            except Exception:  # noqa: BLE001 - a model whose MACs cannot be counted: the card says so
                macs = {}
            self._macs = (version, macs)
        return self._macs[1].get(block.name)

    def proposal(self, group: DepthCandidate, step: int, on_pruned=None) -> DepthProposal:
        """Remove ``group`` when its score is among the lowest of the blocks still in the model, within the blocks
        the ratio has left to remove."""
        if not group.root_idxs:
            prop = DepthProposal(group, step, self.ratio, False, float("inf"), on_pruned, "the block was removed")
            prop.skip_kind = "guard"
            return prop
        left = self.n_target - self.n_removed()
        s = self.scores()
        k = self.index_of(group.block)
        order = sorted((j for j in range(len(self.blocks)) if _present(self.blocks[j])),
                       key=lambda j: (float(s[j]), j))
        remove = left > 0 and k in order[:left]
        return DepthProposal(group, step, self.ratio, remove, float(s[k]), on_pruned)


def attach_depth(pruner, ratio: float = 0.0, importance: Optional[Callable] = None, blocks=None) -> DepthSource:
    """Add the depth groups to ``pruner``'s walk (:class:`DepthSource` in ``pruner.driver.group_sources``); returns
    the source (``pruner.depth``)."""
    source = DepthSource(pruner, ratio, importance, blocks)
    pruner.driver.group_sources.append(source)
    return source
