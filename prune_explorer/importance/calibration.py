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

import contextlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .gradient import ImportanceError

__all__ = ["ChannelStatistics", "HookedCalibration", "CALIBRATED_TYPES"]

#: the layers the data-driven criteria hook by default: convolutions and ``nn.Linear``
CALIBRATED_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


class _Entry:
    __slots__ = ("layer", "side", "sums", "counts", "space")

    def __init__(self, layer, side: str):
        self.layer = layer  # kept referenced: entries are keyed by id(layer)
        self.side = side
        self.sums: Dict[str, torch.Tensor] = {}  # float64 CPU, current indices (or original once anchored)
        self.counts: Dict[str, float] = {}
        self.space = None  # the graph's ChannelSpace once anchored (then sums are indexed by original channel)


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

    def add(self, layer, side: str, name: str, sums: torch.Tensor, count: float) -> None:
        """Add per-channel ``sums`` (one value per channel the layer has now) of quantity ``name``, gathered over
        ``count`` observations."""
        entry = self._entries.get((id(layer), side))
        if entry is None:
            entry = self._entries[(id(layer), side)] = _Entry(layer, side)
        values = sums.detach().to("cpu", torch.float64).reshape(-1)
        if entry.space is not None:  # anchored: indexed by original channel
            alive = entry.space.alive_idx
            if values.numel() != alive.size:
                raise ImportanceError(
                    f"{name} statistics for {entry.space.label} have {values.numel()} channels but the layer has "
                    f"{alive.size}: the hooks saw a different model; call clear() and gather again"
                )
            full = torch.zeros(entry.space.size, dtype=torch.float64)
            full[torch.from_numpy(alive)] = values
            values = full
        if name in entry.sums:
            if entry.sums[name].numel() != values.numel():
                raise ImportanceError(
                    f"{name} statistics of a {type(layer).__name__} changed size from {entry.sums[name].numel()} to "
                    f"{values.numel()} channels between batches (the layer was pruned without a scoring in between); "
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
            if space is None:
                continue
            alive = torch.from_numpy(space.alive_idx)
            for name, values in entry.sums.items():
                if values.numel() != alive.numel():
                    raise ImportanceError(
                        f"{name} statistics for {space.label} cover {values.numel()} channels but the layer has "
                        f"{alive.numel()} now: it was pruned after the calibration pass and before any scoring. "
                        "Fix: gather the statistics again on the pruned model (imp.clear(), then the calibration pass)"
                    )
                full = torch.zeros(space.size, dtype=torch.float64)
                full[alive] = values
                entry.sums[name] = full
            entry.space = space

    def mean_of(self, layer, side: str, name: str, idxs: Sequence[int], space=None) -> Optional[torch.Tensor]:
        """Mean of ``name`` per channel for current channel indices ``idxs`` of ``layer``'s ``side`` (float32), or
        None when nothing was gathered for it. ``space``: the member's channel space (checks sizes)."""
        entry = self._entries.get((id(layer), side))
        if entry is None or name not in entry.sums:
            return None
        values = entry.sums[name] / max(entry.counts[name], 1.0)
        idx = np.asarray(idxs, dtype=np.int64).reshape(-1)
        if entry.space is not None:
            idx = entry.space.alive_idx[idx]
        elif space is not None and values.numel() != space.current_size:
            raise ImportanceError(
                f"{name} statistics for {space.label} cover {values.numel()} channels but it has "
                f"{space.current_size}: gather them again on the model as it is now"
            )
        return values[torch.from_numpy(idx)].float()

    def member_mean(self, item, side: str, name: str) -> Optional[torch.Tensor]:
        """:meth:`mean_of` for a group member on ``side`` (None unless the member is that side of its layer, or
        a layer whose input and output channels are one space)."""
        s = item.dep.space
        if not (s.side == side or s.passthrough):
            return None
        return self.mean_of(s.owner, side, name, item.idx_array, space=s)


class HookedCalibration:
    """The gathering half of a data-driven criterion: a forward hook on every target layer adds to ``self.stats``.

    A criterion derived from it calls :meth:`_start_gathering` in ``__init__`` and defines
    ``_forward_hook(module, inputs, output)``; :meth:`_hooks` says which layers get one (default: every
    ``target_types`` layer) and ``TARGET_HINT`` ends the error raised when none does. Scoring reads the statistics
    (anchored to the graph's original channels), not the weights; ``GATHERED`` and ``GATHER_FIX`` word the error
    raised when nothing was gathered yet.
    """

    TARGET_HINT = "the layers to score"
    GATHERED = "statistics"
    GATHER_FIX = "run the model on calibration data inside `with imp.collect(model): ...`"

    def _start_gathering(self) -> None:
        self.stats = ChannelStatistics()
        self._handles = []

    def _hooks(self, module: nn.Module) -> bool:
        return isinstance(module, self.target_types)

    def clear(self) -> None:
        """Forget the gathered statistics."""
        self.stats.clear()

    def attach(self, model: nn.Module) -> None:
        """Start gathering: hooks on every target layer of ``model`` (remove them with :meth:`detach`)."""
        self.detach()
        for m in model.modules():
            if self._hooks(m):
                self._handles.append(m.register_forward_hook(self._forward_hook))
        if not self._handles:
            raise ImportanceError(
                f"{type(self).__name__} found no layer of types {[t.__name__ for t in self.target_types]} in "
                f"{type(model).__name__}; pass target_types= with {self.TARGET_HINT}"
            )

    def detach(self) -> None:
        """Stop gathering (remove the hooks)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextlib.contextmanager
    def collect(self, model: nn.Module):
        """``with imp.collect(model): ...``: gather over every pass run inside (the forward passes; for a
        gradient-based criterion, their backward passes too), then remove the hooks."""
        self.attach(model)
        try:
            yield self
        finally:
            self.detach()

    def __call__(self, group):
        if not len(self.stats):
            raise ImportanceError(f"{type(self).__name__} has no {self.GATHERED} yet. Fix: {self.GATHER_FIX} before "
                                  "scoring (pruner.step())")
        self.stats.anchor(getattr(group, "_graph", None))
        return super().__call__(group)

    def parts_of(self, item) -> list:
        return [None]  # the scores come from the statistics, not from the member's weights
