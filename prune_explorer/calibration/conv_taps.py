"""What each kernel tap of a convolution reads, on average: the input's sums per ``(channel, tap)``, padding included.

A convolution's output at position ``p`` reads, through tap ``t`` (one kernel position), the input at
``p * stride + t * dilation`` of the *padded* input. With zero padding, taps near the border read zeros at some
output positions, so the mean a tap reads is not the channel's mean: on an 8x8 map with a 3x3 kernel and
``padding=1`` a corner tap reads real pixels at only 49 of the 64 output positions, and digits' borders are
darker than their centres. :func:`tap_sums` gives the exact sums over every output position, which is what a bias
that replaces removed channels (:mod:`prune_explorer.compensation`) needs to match the output's mean exactly.

>>> import torch, torch.nn as nn
>>> conv = nn.Conv2d(1, 1, 3, padding=1)
>>> s, n = tap_sums(conv, torch.ones(1, 1, 4, 4))
>>> s.shape, n, s[0].reshape(3, 3).tolist()
(torch.Size([1, 9]), 16, [[9.0, 12.0, 9.0], [12.0, 16.0, 12.0], [9.0, 12.0, 9.0]])
"""

from __future__ import annotations

import itertools
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["tap_sums"]

_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def _padding(conv: nn.modules.conv._ConvNd) -> List[Tuple[int, int]]:
    """``(before, after)`` padding per spatial dim (``'same'`` puts the odd element after, as torch does)."""
    nd = len(conv.kernel_size)
    if conv.padding == "valid":
        return [(0, 0)] * nd
    if conv.padding == "same":
        out = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return out
    return [(int(p), int(p)) for p in conv.padding]


def tap_sums(conv: nn.modules.conv._ConvNd, x: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """``(sums [in_channels, taps] float64, count)``: for each input channel and kernel tap (the weight's flattened
    kernel order), the sum over the batch and every output position of the input value that tap reads (zero where
    it reads zero padding; the padded value for other padding modes); ``count``: the number of output positions
    summed (batch included). ``x``: the convolution's input, batched or not."""
    nd = len(conv.kernel_size)
    if x.dim() == nd + 1:
        x = x.unsqueeze(0)
    pads = _padding(conv)
    flat = [p for before_after in reversed(pads) for p in before_after]  # F.pad wants the last dim first
    if any(flat):
        mode = _PAD_MODES.get(conv.padding_mode, "constant")
        x = F.pad(x, flat, mode=mode) if mode != "constant" else F.pad(x, flat)
    x = x.detach().double()
    sizes = [(x.shape[2 + i] - conv.dilation[i] * (conv.kernel_size[i] - 1) - 1) // conv.stride[i] + 1
             for i in range(nd)]
    count = x.shape[0] * int(torch.tensor(sizes).prod())
    cols = []
    for tap in itertools.product(*[range(k) for k in conv.kernel_size]):
        view = x
        for i, t in enumerate(tap):
            start = t * conv.dilation[i]
            view = view.narrow(2 + i, start, conv.stride[i] * (sizes[i] - 1) + 1)[
                (slice(None),) * (2 + i) + (slice(None, None, conv.stride[i]),)]
        cols.append(view.sum(dim=[0] + list(range(2, 2 + nd))))
    return torch.stack(cols, 1), count
