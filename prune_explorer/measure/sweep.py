"""Uniform pruning at any ratio, computed from the group structure: no tracing, no pruning.

:func:`uniform_sweep` answers "what would every group losing ``p`` of its channels remove?" for many ``p`` at once.
:class:`GroupLayout` says which coupled-channel classes each group of the walk owns (and how many root channels it
has); :class:`~.structure.ModelStructure` turns the kept fraction of every channel space into parameters and MACs.

    >>> import torch, torchvision, prune_explorer as pe
    >>> from prune_explorer.measure.structure import ModelStructure
    >>> model = torchvision.models.resnet18()
    >>> DG = pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 64, 64))
    >>> curve = uniform_sweep(ModelStructure(DG), GroupLayout(DG, [model.fc]), [0.0, 0.5])
    >>> curve.params_removed[0], round(curve.params_removed[1], 2)
    (0.0, 0.74)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

from ..graph.model.group_members import in_sorted
from .structure import ModelStructure

__all__ = ["GroupLayout", "SweepResult", "kept_channels", "uniform_sweep"]


@dataclass
class SweepResult:
    """The uniform-pruning curve: for each channel ratio ``p``, the fractions of parameters and MACs removed."""

    ratios: List[float]
    channels_removed: List[float]  # fraction of prunable channels actually removed (after rounding and guards)
    params_removed: List[float]
    macs_removed: List[float]
    params: List[int]
    macs: List[int]

    def as_dict(self) -> dict:
        return {
            "ratios": list(self.ratios),
            "channels_removed": list(self.channels_removed),
            "params_removed": list(self.params_removed),
            "macs_removed": list(self.macs_removed),
            "params": list(self.params),
            "macs": list(self.macs),
        }


def kept_channels(n: int, ratio: float, round_to: Optional[int] = None, max_ratio: float = 1.0) -> int:
    """Channels a group of ``n`` keeps at channel ratio ``ratio`` (Torch-Pruning's rule, with its guards).

    ``int(n * (1 - ratio))`` channels stay, rounded up to a multiple of ``round_to``; the ratio is capped at
    ``max_ratio`` and at least one channel always stays.
    """
    ratio = min(max(float(ratio), 0.0), float(max_ratio))
    keep = int(n * (1.0 - ratio))
    if round_to and round_to > 1 and keep % round_to:
        keep = keep + (round_to - keep % round_to)
    return int(min(max(keep, 1), n))


class GroupLayout:
    """Which coupled-channel classes each group of the walk owns, for a given set of ignored layers.

    The groups are the graph's own (``DG.group_roots``, the walk behind ``DependencyGraph.get_all_groups``): each
    class belongs to the first group that reaches it. Computed on *original* channel ids (``as_built=True``), so it
    describes the model as built, whatever has been pruned since.
    """

    def __init__(self, DG, ignored_layers: Iterable = (), root_module_types=None):
        self.DG = DG
        cls = DG.channel_class
        owner_of = np.full(DG.fixed_class_mask.size, -1, dtype=np.int64)  # per class: the group owning it
        roots: List[int] = []  # space index of each group's root
        root_size: List[int] = []  # root channels of each group (its closure)
        rep_gids: List[np.ndarray] = []  # one root gid per class the group owns
        for g, root in enumerate(DG.group_roots(ignored_layers, root_module_types, as_built=True)):
            owner_of[root.new_classes] = g
            roots.append(root.space.index)
            root_size.append(int(root.idxs.size))
            gids = root.space.gids(root.idxs)
            c, first = np.unique(cls[gids], return_index=True)  # the first root channel of each class
            rep_gids.append(gids[first[in_sorted(c, root.new_classes)]])
        self.owner_of = owner_of
        self.roots = roots
        self.root_size = np.array(root_size, dtype=np.int64)
        self.n_groups = len(roots)
        self.rep = np.concatenate(rep_gids) if rep_gids else np.empty(0, dtype=np.int64)
        # per group: its root space and the rep channels there (original indices); the alive count of each is kept
        # with the space's alive_idx array it was counted against (a pruning or undo of the space replaces that
        # array), so each count is redone only for the root spaces that changed
        self._rep_local = [(DG.spaces[r], g - DG.spaces[r].offset) for r, g in zip(roots, rep_gids)]
        self._rep_alive: List[Optional[tuple]] = [None] * len(self._rep_local)
        self.rep_group = np.concatenate(
            [np.full(r.size, g, dtype=np.int64) for g, r in enumerate(rep_gids)]
        ) if rep_gids else np.empty(0, dtype=np.int64)
        # counts[s, g]: channels of space s that group g owns
        n_sp = len(DG.spaces)
        sp_list, g_list = [], []
        for s in DG.spaces:
            g = owner_of[cls[s.gids()]]
            m = g >= 0
            if m.any():
                sp_list.append(np.full(int(m.sum()), s.index, dtype=np.int64))
                g_list.append(g[m])
        if sp_list and self.n_groups:
            sp = np.concatenate(sp_list)
            gg = np.concatenate(g_list)
            flat = np.bincount(sp * self.n_groups + gg, minlength=n_sp * self.n_groups)
            self.counts = flat.reshape(n_sp, self.n_groups).astype(np.float64)
        else:
            self.counts = np.zeros((n_sp, max(self.n_groups, 1)))

    @property
    def n_prunable(self) -> int:
        """Channels (coupled classes) that some group of the walk can remove."""
        return int(self.rep.size)

    def channels_removed_fraction(self) -> float:
        """Fraction of the prunable classes already removed from the model (0 on the unpruned model)."""
        if not self.rep.size:
            return 0.0
        alive = 0
        for g, (space, local) in enumerate(self._rep_local):
            idx = space.alive_idx
            cached = self._rep_alive[g]
            if cached is None or cached[0] is not idx:
                cached = self._rep_alive[g] = (idx, int(np.count_nonzero(space.alive[local])))
            alive += cached[1]
        return float(1.0 - alive / self.rep.size)

    def removed_fraction(self, ratio: float, round_to=None, max_ratio: float = 1.0) -> np.ndarray:
        """Per group: the fraction of its channels that uniform pruning at ``ratio`` removes."""
        out = np.zeros(self.n_groups)
        for g, n in enumerate(self.root_size.tolist()):
            out[g] = (n - kept_channels(n, ratio, round_to, max_ratio)) / n if n else 0.0
        return out

    def kept_fraction(self, group_removed: np.ndarray, size0: np.ndarray) -> np.ndarray:
        """``k_s`` for every space when each group removes ``group_removed[g]`` of its channels."""
        if not self.n_groups:
            return np.ones(size0.size)
        return 1.0 - (self.counts @ group_removed) / size0


def uniform_sweep(structure: ModelStructure, layout: GroupLayout, ratios: Sequence[float], round_to=None,
                  max_ratio: float = 1.0, progress: Optional[Callable[[int, int], None]] = None) -> SweepResult:
    """Parameters and MACs left when every group removes ``p`` of its channels, for each ``p`` in ``ratios``.

    Evaluated on the laws of :class:`ModelStructure`; nothing is traced or pruned.
    """
    p0 = structure.total_params0
    m0 = structure.total_macs0
    out = SweepResult([], [], [], [], [], [])
    weights = layout.root_size.astype(np.float64)
    claimed = np.bincount(layout.rep_group, minlength=layout.n_groups).astype(np.float64) if layout.n_groups else weights
    for i, p in enumerate(ratios):
        f = layout.removed_fraction(p, round_to, max_ratio)
        k = layout.kept_fraction(f, structure.size0)
        params = structure.params_at(k)
        macs = structure.macs_at(k)
        out.ratios.append(float(p))
        out.channels_removed.append(float((f * claimed).sum() / claimed.sum()) if claimed.sum() else 0.0)
        out.params.append(int(round(params)))
        out.params_removed.append(1.0 - params / p0 if p0 else 0.0)
        out.macs.append(int(round(macs)) if macs is not None else 0)
        out.macs_removed.append(1.0 - macs / m0 if (macs is not None and m0) else float("nan"))
        if progress is not None:
            progress(i + 1, len(ratios))
    return out
