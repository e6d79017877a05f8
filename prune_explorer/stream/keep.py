"""Which entries of each checkpoint tensor survive: the pruning records of the graph turned into kept indices per
tensor and dim, and applied to tensors read from the checkpoint.

Pruning only removes entries along dims (it never mixes values: the streaming path refuses plans that would, such as
head-size pruning, which rescales query projections), so a tensor of the pruned model is exactly
``original.index_select(d, keep[d])`` over its cut dims: the same values the in-memory pruning functions leave.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Tuple

import numpy as np
import torch

from .arch import tensor_cuts
from .errors import StreamError

__all__ = ["KeepTable"]


class KeepTable:
    """``{tensor name: {dim: kept original indices}}``, built by replaying pruning records (:meth:`apply`).

    Args:
        shapes: ``{tensor name: original shape}`` of the checkpoint's tensors.
        aliases: ``{model tensor name: checkpoint tensor name}`` for tensors stored once for several names (tied
            embeddings).
    """

    def __init__(self, shapes: Mapping[str, Tuple[int, ...]], aliases: Mapping[str, str] = ()):
        self.shapes = dict(shapes)
        self.aliases = dict(aliases)
        self.keep: Dict[str, Dict[int, np.ndarray]] = {}
        self.applied = 0  # records applied so far

    def canonical(self, name: str) -> str:
        return self.aliases.get(name, name)

    def reset(self) -> None:
        """Forget every cut (e.g. when the records were undone)."""
        self.keep = {}
        self.applied = 0

    def apply(self, records: Iterable[dict]) -> None:
        """Replay pruning records (``pruner.history`` entries) not applied yet, in order."""
        records = list(records)
        for rec in records[self.applied:]:
            seen = set()  # a tied tensor (embedding = lm_head) is cut once per record
            for member in rec["members"]:
                for name, dim in tensor_cuts(member):
                    name = self.canonical(name)
                    if (name, dim) in seen:
                        continue
                    seen.add((name, dim))
                    if name not in self.shapes:
                        if name.endswith(".bias"):
                            continue  # a layer without bias
                        raise StreamError(f"the plan prunes {name!r}, which the checkpoint does not hold")
                    per = self.keep.setdefault(name, {})
                    cur = per.get(dim)
                    if cur is None:
                        cur = np.arange(self.shapes[name][dim])
                    per[dim] = np.delete(cur, np.asarray(member["idxs"], dtype=np.int64))
        self.applied = len(records)

    def shape(self, name: str) -> Tuple[int, ...]:
        """The tensor's shape after the cuts so far."""
        name = self.canonical(name)
        shape = list(self.shapes[name])
        for d, k in self.keep.get(name, {}).items():
            shape[d] = len(k)
        return tuple(shape)

    def cut(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (the checkpoint's ``name``) with only its kept entries (a new, contiguous tensor)."""
        for d, k in sorted(self.keep.get(self.canonical(name), {}).items()):
            if len(k) != tensor.shape[d]:
                tensor = tensor.index_select(d, torch.from_numpy(k).to(tensor.device))
        return tensor.contiguous()

    def state(self) -> dict:
        return {n: {int(d): torch.from_numpy(k.copy()) for d, k in per.items()} for n, per in self.keep.items()}

    def load_state(self, state: Mapping) -> None:
        self.keep = {n: {int(d): k.numpy().astype(np.int64) for d, k in per.items()} for n, per in state.items()}
