"""Calibration data: what a data-driven step runs through the model, how each batch is called, and its loss.

:class:`Calibration` wraps any iterable of batches (a list of tensors, a ``DataLoader``, a generator function...)
with the number of batches to use, the device to run on and, for criteria that need gradients, a loss.

    >>> import torch
    >>> cal = Calibration([torch.randn(2, 3) for _ in range(5)], num_batches=3)
    >>> len(list(cal.batches())), cal.num_batches
    (3, 3)

How a batch is called (:meth:`Calibration.inputs_of`): ``input_fn(batch)`` when given; otherwise a tuple or list of
two whose second item is an integer tensor (a ``DataLoader`` of ``(inputs, class labels)``) is called with its first
item, and anything else is the model's example inputs (``model(x)``, ``model(*x)`` for a tuple, ``model(**x)`` for a
dict: :func:`prune_explorer.inputs.call_model`).

The loss (:meth:`Calibration.loss`), for gradient criteria only: ``loss_fn(output, batch)`` when given; otherwise
the cross-entropy of the output logits against the batch's integer labels (``(inputs, labels)`` batches), or a
causal language model's next-token cross-entropy (an output with ``.logits`` and an ``input_ids`` input).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

import torch
import torch.nn.functional as F

from ..errors import CalibrationError
from ..inputs import to_device
from ..validation import is_positive_int

__all__ = ["Calibration", "as_calibration"]


def _is_labelled(batch) -> bool:
    return (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], torch.Tensor)
            and not batch[1].is_floating_point() and not batch[1].is_complex())


class Calibration:
    """Calibration batches for a data-driven step.

    Args:
        data: an iterable of batches (re-iterated on every pass: a list or a ``DataLoader``; a one-shot generator
            serves one pass), or a callable returning such an iterable.
        num_batches: use at most this many batches per pass (None: all of them).
        input_fn: ``input_fn(batch) -> example inputs`` (see the module docstring for the default).
        loss_fn: ``loss_fn(output, batch) -> scalar`` for gradient criteria (see the module docstring).
        device: move each batch to this device (None: the device of the model's first parameter).
        progress: show a progress bar (tqdm) during a pass.
    """

    def __init__(self, data, num_batches: Optional[int] = None, input_fn: Optional[Callable] = None,
                 loss_fn: Optional[Callable] = None, device=None, progress: bool = True):
        if isinstance(data, torch.Tensor):
            raise CalibrationError("calibration data is one tensor; pass an iterable of batches (e.g. [x] or a "
                                   "DataLoader), so that it is clear where one batch ends")
        if not callable(data) and not isinstance(data, Iterable):
            raise CalibrationError(f"calibration data must be an iterable of batches (a list, a DataLoader...), "
                                   f"got {type(data).__name__}")
        if num_batches is not None and not is_positive_int(num_batches):
            raise CalibrationError(f"num_batches={num_batches!r} must be a positive int or None (all batches)")
        self.data = data
        self.num_batches = num_batches
        self.input_fn = input_fn
        self.loss_fn = loss_fn
        self.device = device
        self.progress = progress

    def batches(self) -> Iterator[Any]:
        """The batches of one pass (at most ``num_batches``), as given (not moved)."""
        data = self.data() if callable(self.data) and not isinstance(self.data, Iterable) else self.data
        for k, batch in enumerate(data):
            if self.num_batches is not None and k >= self.num_batches:
                return
            yield batch

    def __len__(self) -> int:
        """Batches per pass (``num_batches``, or the data's length when it has one)."""
        try:
            n = len(self.data)
        except TypeError:
            n = None
        if self.num_batches is None:
            if n is None:
                raise TypeError("this calibration data has no length; pass num_batches")
            return n
        return self.num_batches if n is None else min(n, self.num_batches)

    def to(self, batch, device):
        """``batch`` with every tensor moved to ``device`` (None: unchanged)."""
        return batch if device is None else to_device(batch, device)

    def inputs_of(self, batch):
        """The example inputs the model is called with for ``batch``."""
        if self.input_fn is not None:
            return self.input_fn(batch)
        return batch[0] if _is_labelled(batch) else batch

    def loss(self, output, batch, inputs) -> torch.Tensor:
        """The scalar loss of one batch, for gradient criteria (see the module docstring)."""
        if self.loss_fn is not None:
            return self.loss_fn(output, batch)
        logits = getattr(output, "logits", None)
        if logits is None and isinstance(output, torch.Tensor):
            logits = output
        if _is_labelled(batch) and isinstance(logits, torch.Tensor):
            return F.cross_entropy(logits.float(), batch[1].to(logits.device))
        ids = inputs.get("input_ids") if isinstance(inputs, dict) else (
            inputs if isinstance(inputs, torch.Tensor) and not inputs.is_floating_point() else None)
        if isinstance(logits, torch.Tensor) and isinstance(ids, torch.Tensor) and logits.dim() == 3 \
                and ids.shape == logits.shape[:2]:
            return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   ids[:, 1:].reshape(-1).to(logits.device))
        raise CalibrationError(
            "this criterion needs a loss on the calibration data, and none could be derived from the batches "
            "(neither (inputs, integer labels) pairs nor a causal LM's input_ids and logits). Fix: "
            "pe.calibration.Calibration(data, loss_fn=lambda output, batch: ...)")

    def __repr__(self) -> str:
        n = "all" if self.num_batches is None else self.num_batches
        return f"Calibration({type(self.data).__name__}, num_batches={n})"


def as_calibration(data, num_batches: Optional[int] = None) -> Calibration:
    """``data`` as a :class:`Calibration` (returned as is when it already is one)."""
    if isinstance(data, Calibration):
        return data
    return Calibration(data, num_batches=num_batches)
