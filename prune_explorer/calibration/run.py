"""One pass of calibration data through a model, feeding every collector's hooks at once.

    >>> import torch, torch.nn as nn
    >>> from prune_explorer.calibration import Calibration, InputStatistics, calibrate
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> stats = InputStatistics()
    >>> calibrate(model, Calibration([torch.randn(8, 3) for _ in range(2)], progress=False), [stats])
    2
    >>> stats.mean(model[2]).shape
    torch.Size([4])

The model runs in eval mode, on the device of its first parameter (or ``calibration.device``), under
``torch.no_grad()`` unless a collector needs gradients (``needs_backward``: then each batch's loss is
back-propagated, see :meth:`~.data.Calibration.loss`); buffers such as BatchNorm running statistics and the
train/eval flags are restored afterwards. Nothing but the collectors' running sums is kept: activations are never
stored. A collector may define ``after_batch(model)`` (e.g. to read gradients after each backward pass).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
import torch.nn as nn

from ..inputs import call_model, kept_state
from .data import Calibration, as_calibration

__all__ = ["calibrate"]


def _device_of(model: nn.Module):
    p = next(model.parameters(), None)
    return p.device if p is not None else None


def calibrate(model: nn.Module, calibration, collectors: Sequence, forward_fn=None, desc: str = "calibrating") -> int:
    """Run ``calibration`` (a :class:`~.data.Calibration`, or an iterable of example inputs) once through ``model``
    with every collector attached; returns the number of batches run. ``forward_fn(model, inputs)`` replaces the
    call (see :func:`prune_explorer.inputs.call_model`)."""
    cal = as_calibration(calibration)
    backward = any(getattr(c, "needs_backward", False) for c in collectors)
    device = cal.device if cal.device is not None else _device_of(model)
    try:
        total = len(cal)
    except TypeError:
        total = None
    attached = []
    n = 0
    try:
        for c in collectors:
            c.attach(model)
            attached.append(c)
        with kept_state(model, eval_mode=True), torch.set_grad_enabled(backward):
            for batch in _progress(cal.batches(), total, cal.progress, desc):
                batch = cal.to(batch, device)
                inputs = cal.inputs_of(batch)
                out = call_model(model, inputs, forward_fn)
                if backward:
                    cal.loss(out, batch, inputs).backward()
                del out
                for c in collectors:
                    after = getattr(c, "after_batch", None)
                    if after is not None:
                        after(model)
                n += 1
    finally:
        for c in attached:
            c.detach()
    return n


def _progress(it: Iterable, total: Optional[int], show: bool, desc: str):
    if not show:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False)
