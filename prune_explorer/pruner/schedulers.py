"""Iterative pruning schedules: ``scheduler(pruning_ratio, steps)`` -> ``steps + 1`` cumulative ratios.

Entry ``k`` is the fraction of each layer's *initial* channels removed once step ``k`` is done (entry 0 is 0):

    >>> linear_scheduler(0.5, 5)
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
"""

from __future__ import annotations

from typing import List

__all__ = ["linear_scheduler"]


def linear_scheduler(pruning_ratio: float, steps: int) -> List[float]:
    """``[0, r/steps, 2r/steps, ..., r]``: the same share of the initial channels removed at every step."""
    return [pruning_ratio * i / float(steps) for i in range(steps + 1)]
