"""Channel spaces: the prunable axes of the model, each with a block of global channel ids.

A *channel space* is one side of one layer that a pruning function can shrink: ``conv.out`` (its output channels),
``conv.in`` (its input channels), the single space of a pass-through layer such as BatchNorm (whose inputs and
outputs are the same channels), or one dimension of a loose ``nn.Parameter``. Each space owns the global ids
``offset .. offset + size - 1`` (id 0 is reserved for :data:`FIXED`); tracing couples ids, never spaces.

After pruning, a space keeps its *original* ids and an ``alive`` mask: channel ``k`` of the pruned layer is the
``k``-th alive original channel. So nothing is re-traced and no id is ever renumbered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

import numpy as np

FIXED = 0  # a sentinel channel id: anything coupled to it can never be pruned

SIDE_OUT = "out"
SIDE_IN = "in"


@dataclass(eq=False)
class ChannelSpace:
    """One prunable axis. ``size`` and ``alive`` are in channels (not parameters)."""

    index: int
    owner: Any  # nn.Module, or nn.Parameter for loose parameters
    name: str  # qualified name from named_modules() / named_parameters()
    side: str  # SIDE_OUT or SIDE_IN
    offset: int
    size: int
    pruner: Any  # a BasePruningFunc (or a parameter pruner)
    handler: Callable  # the pruning function called with (owner, idxs)
    passthrough: bool = False  # True when this one space is both the inputs and the outputs (BN, LN, depthwise conv)
    dim: Optional[int] = None  # for loose parameters: the tensor dim this space covers
    alive: np.ndarray = field(default=None, repr=False)
    _rank: Optional[np.ndarray] = field(default=None, repr=False)
    _alive_idx: Optional[np.ndarray] = field(default=None, repr=False)

    def __post_init__(self):
        if self.alive is None:
            self.alive = np.ones(self.size, dtype=bool)

    # ---- current <-> original index conversion ---------------------------------------------------------------
    @property
    def current_size(self) -> int:
        """Number of channels the layer has now."""
        return int(self.alive_idx.size)

    @property
    def alive_idx(self) -> np.ndarray:
        """Original indices of the channels still present, in order (``alive_idx[k]`` is current channel ``k``)."""
        if self._alive_idx is None:
            self._alive_idx = np.flatnonzero(self.alive)
        return self._alive_idx

    @property
    def rank(self) -> np.ndarray:
        """``rank[orig]`` = current index of an original channel (meaningful only where ``alive``)."""
        if self._rank is None:
            self._rank = np.cumsum(self.alive) - 1
        return self._rank

    def invalidate(self) -> None:
        self._rank = None
        self._alive_idx = None

    def gids(self, orig_idxs=None) -> np.ndarray:
        if orig_idxs is None:
            return np.arange(self.offset, self.offset + self.size, dtype=np.int64)
        return self.offset + np.asarray(orig_idxs, dtype=np.int64)

    @property
    def label(self) -> str:
        return self.name if self.passthrough else f"{self.name}.{self.side}"

    def __repr__(self) -> str:
        return f"ChannelSpace({self.label}, {self.current_size}/{self.size} channels)"


class SpaceTable:
    """All channel spaces of a graph; allocates global ids."""

    def __init__(self):
        self.spaces: List[ChannelSpace] = []
        self.by_key = {}
        self.next_gid = 1  # 0 is FIXED
        #: all True; a new space's ``alive`` is the slice of it at the space's ids (one slice instead of an array per
        #: space; slices of distinct spaces never overlap, and :meth:`bind_alive` replaces them all)
        self._ones = np.ones(0, dtype=bool)

    def add(self, key, owner, name: str, side: str, size: int, pruner, handler: Callable, passthrough: bool = False,
            dim: Optional[int] = None) -> ChannelSpace:
        """A new space under ``key`` with the next ``size`` ids (the fields of :class:`ChannelSpace`, passed to it
        by position: a dataclass reads those faster than keywords)."""
        offset = self.next_gid
        end = offset + int(size)
        if end > self._ones.size:  # a fresh buffer: the spaces made so far keep theirs
            self._ones = np.ones(max(2 * end, 4096), dtype=bool)
        space = ChannelSpace(len(self.spaces), owner, name, side, offset, size, pruner, handler, passthrough, dim,
                             self._ones[offset:end])
        self.next_gid += space.size
        self.spaces.append(space)
        self.by_key[key] = space
        return space

    def get(self, key) -> Optional[ChannelSpace]:
        return self.by_key.get(key)

    def bind_alive(self) -> np.ndarray:
        """One global alive mask; every space's ``alive`` becomes a view into it. Returns the mask."""
        mask = np.ones(self.next_gid, dtype=bool)
        mask[0] = False
        for s in self.spaces:
            mask[s.offset : s.offset + s.size] = s.alive
            s.alive = mask[s.offset : s.offset + s.size]
            s.invalidate()
        return mask

    def space_of_gid_array(self) -> np.ndarray:
        """``out[gid]`` = index of the space owning ``gid`` (-1 for FIXED)."""
        out = np.full(self.next_gid, -1, dtype=np.int64)
        for s in self.spaces:
            out[s.offset : s.offset + s.size] = s.index
        return out
