"""BatchNorm re-estimation: after pruning, reset every BatchNorm's running statistics from calibration batches.

Pruning (and compensation) changes what reaches each BatchNorm: the channels it normalises now sum fewer inputs, so
the running mean and variance stored in training no longer describe them, and the layer shifts and scales its
input wrongly. Re-estimating them is a forward pass over calibration data with no gradient and no weight change
(the "precise BN" step): it is opt-in, never done by a pruning step or a compensation on its own.

    pe.calibration.reestimate_batchnorm(model, pe.calibration.Calibration(batches))   # after pruning
    undo = pe.calibration.reestimate_batchnorm(model, cal); ...; undo()            # the old statistics back

Every ``nn.BatchNorm*`` (``_BatchNorm``, SyncBatchNorm included) that tracks running statistics is reset and runs
in training mode with a cumulative average (``momentum=None``): its new statistics are the mean over the
calibration batches of each batch's mean and (unbiased) variance. Every other module stays in eval mode (dropout
off), nothing else is written, and the model's train/eval flags and the layers' ``momentum`` are restored. If
the pass fails, the old statistics are put back (no half-updated model).
"""

from __future__ import annotations

from typing import Callable, List

import torch
import torch.nn as nn

from ..errors import CalibrationError
from ..inputs import call_model
from .data import as_calibration
from .run import _device_of, _progress

__all__ = ["reestimate_batchnorm"]


class _Restore:
    """``undo()``: the running statistics (and ``num_batches_tracked``) as they were before the re-estimation."""

    def __init__(self, layers: List[nn.modules.batchnorm._BatchNorm]):
        self.layers = layers
        self._saved = [(bn, {k: getattr(bn, k) for k in ("running_mean", "running_var", "num_batches_tracked")})
                       for bn in layers]

    def __call__(self) -> None:
        for bn, buffers in self._saved:
            for name, value in buffers.items():
                setattr(bn, name, value)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"<BatchNorm re-estimation of {len(self.layers)} layers; call to restore the old statistics>"


def reestimate_batchnorm(model: nn.Module, calibration, forward_fn=None,
                         desc: str = "re-estimating BatchNorm") -> Callable[[], None]:
    """Reset the running mean and variance of every BatchNorm of ``model`` from ``calibration`` (a
    :class:`~.data.Calibration` or an iterable of example inputs; run on the device of the model's first parameter
    or ``calibration.device``). Returns ``undo``: calling it puts the previous statistics back exactly (its
    ``len`` is the number of layers re-estimated). Raises :class:`~prune_explorer.errors.CalibrationError` when
    the model has no BatchNorm with running statistics or the calibration data has no batch."""
    cal = as_calibration(calibration)
    layers = [m for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not layers:
        raise CalibrationError(f"{type(model).__name__} has no BatchNorm layer with running statistics to "
                               "re-estimate; leave reestimate_batchnorm out for this model")
    undo = _Restore(layers)
    device = cal.device if cal.device is not None else _device_of(model)
    modules = list(model.modules())
    flags = [m.training for m in modules]
    momenta = [bn.momentum for bn in layers]
    try:
        total = len(cal)
    except TypeError:
        total = None
    n = 0
    try:
        model.eval()
        for bn in layers:
            # fresh tensors (the old ones stay untouched for undo); momentum None: a cumulative average
            bn.running_mean = torch.zeros_like(bn.running_mean)
            bn.running_var = torch.ones_like(bn.running_var)
            bn.num_batches_tracked = torch.zeros_like(bn.num_batches_tracked)
            bn.momentum = None
            bn.train()
        with torch.no_grad():
            for batch in _progress(cal.batches(), total, cal.progress, desc):
                batch = cal.to(batch, device)
                call_model(model, cal.inputs_of(batch), forward_fn)
                n += 1
        if n == 0:
            raise CalibrationError("the calibration data gave no batch; BatchNorm statistics were left unchanged")
    except BaseException:
        undo()
        raise
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        for m, training in zip(modules, flags):
            m.training = training
    return undo
