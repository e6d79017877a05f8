"""Block influence (ShortGPT, Men et al., "ShortGPT: Layers in Large Language Models are More Redundant Than You
Expect", 2024): how much a block changes what flows through it, ``1 - cos(input, output)`` averaged over every token
(or feature-map position) of the calibration data, the cosine taken over the channels. A block whose output is
nearly its input (influence near 0) is the first to remove.

:class:`BlockInfluence` is a collector for :func:`prune_explorer.calibration.calibrate` (running sums only)."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F

from ..errors import CalibrationError
from ..inputs import tensors_in

__all__ = ["BlockInfluence", "block_influence"]


class BlockInfluence:
    """Collector of ``1 - cos(x, y)`` per depth group; :meth:`scores` gives them in the groups' order."""

    needs_backward = False

    def __init__(self, groups: Sequence):
        self.groups = list(groups)
        self.sums = [0.0] * len(self.groups)
        self.counts = [0] * len(self.groups)
        self._handles: List = []

    def attach(self, model) -> None:
        self.detach()
        for k, g in enumerate(self.groups):
            self._handles.append(g.module.register_forward_hook(lambda m, a, o, k=k: self._hook(k, a, o)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, k: int, args, out) -> None:
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        ys = [out] if isinstance(out, torch.Tensor) else tensors_in(out)
        if x is None or not ys or ys[0].shape != x.shape:
            return
        y = ys[0]
        d = 1 if x.dim() == 4 else x.dim() - 1
        with torch.no_grad():
            cos = F.cosine_similarity(x.detach().double(), y.detach().double(), dim=d, eps=1e-12)
        self.sums[k] += float((1 - cos).sum())
        self.counts[k] += cos.numel()

    def scores(self) -> torch.Tensor:
        """Influence per group (float32, groups' order); a group the data never reached raises."""
        missing = [g.name for g, c in zip(self.groups, self.counts) if c == 0]
        if missing:
            raise CalibrationError(f"block influence: the calibration data never reached {missing[:3]}; run "
                                   "block_influence(model, groups, calibration) with data that runs these blocks")
        return torch.tensor([s / c for s, c in zip(self.sums, self.counts)], dtype=torch.float32)


def block_influence(model, groups: Sequence, calibration) -> torch.Tensor:
    """One calibration pass; returns each group's influence (see the module docstring)."""
    from ..calibration import calibrate

    col = BlockInfluence(groups)
    calibrate(model, calibration, [col], desc="block influence")
    return col.scores()
