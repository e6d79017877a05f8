"""Per-channel statistics gathered by hooks on calibration data, kept valid while the model is pruned.

Data-driven criteria (:class:`~prune_explorer.importance.ActivationImportance`,
:class:`~prune_explorer.importance.OBDCImportance`) run the model on calibration batches with hooks that add
per-channel sums (``sum |a|``, ``sum z^2``, ``sum g^2`` ...) to a :class:`ChannelStatistics`. The sums are indexed by
the channels the layer had while they were gathered; the first time a group is scored they are re-indexed by the
dependency graph's *original* channel indices, so scores stay attached to the right channels while a pruning step
removes group after group (or after any later pruning). Gathering more data after a pruning adds to the surviving
channels.

>>> import torch, torch.nn as nn
>>> stats = ChannelStatistics()
>>> fc = nn.Linear(4, 3)
>>> stats.add(fc, "out", "z2", torch.tensor([1.0, 4.0, 9.0]), count=2)
>>> stats.add(fc, "out", "z2", torch.tensor([1.0, 0.0, 1.0]), count=2)
>>> stats.mean_of(fc, "out", "z2", [0, 2]).tolist()
[0.5, 2.5]
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..errors import CalibrationError

__all__ = ["ChannelStatistics", "CALIBRATED_TYPES"]

#: the layers the data-driven criteria hook by default: convolutions and ``nn.Linear``
CALIBRATED_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


class _Entry:
    __slots__ = ("layer", "side", "sums", "counts", "space", "rows")

    def __init__(self, layer, side: str):
        self.layer = layer  # kept referenced: entries are keyed by id(layer)
        self.side = side
        self.sums: Dict[str, torch.Tensor] = {}  # float64 CPU, current indices (or original once anchored)
        self.counts: Dict[str, float] = {}
        self.space = None  # the graph's ChannelSpace once anchored (then sums are indexed by original channel)
        self.rows = set()  # names of per-channel row quantities ([n, k]: channels on dim 0 only)


class ChannelStatistics:
    """Running per-channel sums of named quantities for each ``(layer, side)`` (side ``"out"`` or ``"in"``)."""

    def __init__(self):
        self._entries: Dict[Tuple[int, str], _Entry] = {}

    def clear(self) -> None:
        """Forget everything gathered."""
        self._entries = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        layer, side = key
        return (id(layer), side) in self._entries

    def add(self, layer, side: str, name: str, sums: torch.Tensor, count: float, rows: bool = False) -> None:
        """Add per-channel ``sums`` (one value per channel the layer has now, or a ``[n, n]`` matrix indexed by
        channels on both dims, e.g. an input's second moments ``sum x x^T``) of quantity ``name``, gathered over
        ``count`` observations. ``rows=True``: ``sums`` is ``[n, k]``, one row of ``k`` values per channel (e.g. a
        convolution input's sums per kernel tap), indexed by channels on dim 0 only."""
        entry = self._entries.get((id(layer), side))
        if entry is None:
            entry = self._entries[(id(layer), side)] = _Entry(layer, side)
        values = sums.detach().to("cpu", torch.float64)
        if rows:
            if values.dim() != 2:
                raise CalibrationError(f"{name} statistics with rows=True must be [channels, k], got "
                                       f"{tuple(values.shape)}")
            entry.rows.add(name)
        elif not (values.dim() == 2 and values.shape[0] == values.shape[1]):
            values = values.reshape(-1)
        pairwise = values.dim() == 2 and not rows
        if entry.space is not None:  # anchored: indexed by original channel
            alive = entry.space.alive_idx
            if values.shape[0] != alive.size:
                raise CalibrationError(
                    f"{name} statistics for {entry.space.label} have {values.shape[0]} channels but the layer has "
                    f"{alive.size}: the hooks saw a different model; call clear() and gather again"
                )
            values = _embed(values, torch.from_numpy(alive), entry.space.size, pairwise)
        if name in entry.sums:
            if entry.sums[name].shape != values.shape:
                raise CalibrationError(
                    f"{name} statistics of a {type(layer).__name__} changed size from {entry.sums[name].shape[0]} to "
                    f"{values.shape[0]} channels between batches (the layer was pruned without a scoring in between); "
                    "call clear() and gather again"
                )
            entry.sums[name] += values
            entry.counts[name] += float(count)
        else:
            entry.sums[name] = values.clone()
            entry.counts[name] = float(count)

    def anchor(self, graph) -> None:
        """Re-index every entry not yet anchored by ``graph``'s original channel indices (call before pruning)."""
        if graph is None:
            return
        for entry in self._entries.values():
            if entry.space is not None:
                continue
            space = next((s for s in graph.spaces_of(entry.layer) if s.side == entry.side or s.passthrough), None)
            if space is not None:
                self._anchor_entry(entry, space)

    def anchor_space(self, space) -> None:
        """Anchor the entry of ``space``'s layer and side (a group member's ``dep.space``) to its original channel
        indices, if not yet anchored."""
        side = "in" if space.side == "in" or space.passthrough else "out"
        entry = self._entries.get((id(space.owner), side))
        if entry is not None and entry.space is None:
            self._anchor_entry(entry, space)

    @staticmethod
    def _anchor_entry(entry: _Entry, space) -> None:
        alive = torch.from_numpy(space.alive_idx)
        for name, values in entry.sums.items():
            if values.shape[0] != alive.numel():
                raise CalibrationError(
                    f"{name} statistics for {space.label} cover {values.shape[0]} channels but the layer has "
                    f"{alive.numel()} now: it was pruned after the calibration pass and before any scoring. "
                    "Fix: gather the statistics again on the pruned model (imp.clear(), then the calibration pass)"
                )
            entry.sums[name] = _embed(values, alive, space.size, values.dim() == 2 and name not in entry.rows)
        entry.space = space

    def mean_of(self, layer, side: str, name: str, idxs: Sequence[int], space=None) -> Optional[torch.Tensor]:
        """Mean of ``name`` per channel for current channel indices ``idxs`` of ``layer``'s ``side`` (float32; a
        matrix quantity gives the ``[len(idxs), len(idxs)]`` block, a row quantity ``[len(idxs), k]``, float64), or None when nothing was gathered for
        it. ``space``: the member's channel space (checks sizes)."""
        entry = self._entries.get((id(layer), side))
        if entry is None or name not in entry.sums:
            return None
        values = entry.sums[name] / max(entry.counts[name], 1.0)
        idx = np.asarray(idxs, dtype=np.int64).reshape(-1)
        if entry.space is not None:
            idx = entry.space.alive_idx[idx]
        elif space is not None and values.shape[0] != space.current_size:
            raise CalibrationError(
                f"{name} statistics for {space.label} cover {values.shape[0]} channels but it has "
                f"{space.current_size}: gather them again on the model as it is now"
            )
        t = torch.from_numpy(idx)
        if name in entry.rows:
            return values[t]
        if values.dim() == 2:
            return values[t][:, t]
        return values[t].float()

    def current(self, layer, side: str, name: str) -> Optional[torch.Tensor]:
        """Mean of ``name`` for every channel ``layer``'s ``side`` has now (float64; a vector or a matrix), or None
        when nothing was gathered for it (or the layer's size no longer matches what was gathered)."""
        entry = self._entries.get((id(layer), side))
        if entry is None or name not in entry.sums:
            return None
        values = entry.sums[name] / max(entry.counts[name], 1.0)
        if entry.space is None:
            return values
        t = torch.from_numpy(entry.space.alive_idx)
        return values[t][:, t] if values.dim() == 2 and name not in entry.rows else values[t]

    def count(self, layer, side: str, name: str) -> float:
        """How many observations ``name`` was gathered over for ``layer``'s ``side`` (0 when none)."""
        entry = self._entries.get((id(layer), side))
        return 0.0 if entry is None else entry.counts.get(name, 0.0)

    def member_mean(self, item, side: str, name: str) -> Optional[torch.Tensor]:
        """:meth:`mean_of` for a group member on ``side`` (None unless the member is that side of its layer, or
        a layer whose input and output channels are one space)."""
        s = item.dep.space
        if not (s.side == side or s.passthrough):
            return None
        return self.mean_of(s.owner, side, name, item.idx_array, space=s)


def _embed(values: torch.Tensor, alive: torch.Tensor, size: int, pairwise: bool) -> torch.Tensor:
    """``values`` (indexed by the channels alive now) placed at original indices ``alive`` of a zero tensor of
    ``size`` channels (on both dims for a ``pairwise`` matrix; on dim 0 for rows)."""
    if values.dim() == 2 and pairwise:
        full = torch.zeros(size, size, dtype=torch.float64)
        full[alive.unsqueeze(1), alive.unsqueeze(0)] = values
        return full
    full = torch.zeros(size, *values.shape[1:], dtype=torch.float64)
    full[alive] = values
    return full
