"""The record of one traced operation, and the rules shared by every op family: unlabeled outputs, unsupported
ops (their channels are fixed), ops whose outputs never carry a channel, selections by value."""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from ..labels import Value

__all__ = ["Call", "arg", "norm_dim", "labels_of", "fix_lost_labels", "unlabeled", "no_channels", "unfixable",
           "unknown", "selection"]


class Call:
    """One traced operation: ``outputs = func(*args, **kwargs)``."""

    __slots__ = ("index", "name", "func", "args", "kwargs", "inputs", "outputs", "node", "module")

    def __init__(self, index, name, func, args, kwargs, inputs, outputs, module=None):
        self.index = index
        self.name = name
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.inputs: List[Value] = inputs
        self.outputs: List[Value] = outputs
        self.node = None
        self.module = module

    def forget_arguments(self) -> None:
        """Drop the call's arguments once its rule has run (with a real forward pass they are activations)."""
        self.args = self.kwargs = None

    @property
    def x(self) -> Optional[Value]:
        return self.inputs[0] if self.inputs else None

    def __repr__(self):
        return f"Call({self.name}, in={self.inputs}, out={self.outputs})"


def arg(call: Call, pos: int, key: str, default=None):
    if len(call.args) > pos:
        return call.args[pos]
    return call.kwargs.get(key, default)


def norm_dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def labels_of(fields) -> torch.Tensor:
    parts = [f.reshape(-1) for f in fields]
    if not parts:
        return torch.empty(0, dtype=torch.long)
    ids = torch.cat(parts)
    return torch.unique(ids[ids >= 0])


def fix_lost_labels(tracer, call: Call, reason: str) -> None:
    """Fix input labels that no output carries any more (the op selected a fixed subset of channels).

    Label sets are compared with a presence mask over the inputs' label range, in numpy: linear in the labels, and
    free of torch's thread pool (``torch.isin`` on two threads takes milliseconds per call on a busy machine)."""
    if call.x is None:
        return
    ins = [f.reshape(-1).numpy() for f in call.x.fields]
    ids = [a[a >= 0] for a in ins]
    if not any(a.size for a in ids):
        return
    lo = min(int(a.min()) for a in ids if a.size)
    hi = max(int(a.max()) for a in ids if a.size)
    lost = np.zeros(hi - lo + 1, dtype=bool)
    for a in ids:
        lost[a - lo] = True
    for v in call.outputs:
        for f in v.fields:
            a = f.reshape(-1).numpy()
            lost[a[(a >= lo) & (a <= hi)] - lo] = False
    if not lost.any():
        return
    for f, a in zip(call.x.fields, ids):
        if a.size and lost[a - lo].any():
            tracer.couplings.fix(f, reason)


def unlabeled(call: Call) -> None:
    for o in call.outputs:
        o.fields = []


def no_channels(tracer, call: Call) -> None:
    """Ops whose outputs never carry channels (shape queries, argmax indices, comparisons to scalars…)."""
    unlabeled(call)


def unfixable(tracer, call: Call) -> None:
    for v in call.inputs:
        for f in v.fields:
            tracer.couplings.fix(f, f"unsupported operation '{call.name}'")
    unlabeled(call)


def unknown(tracer, call: Call) -> None:
    if any(v.fields for v in call.inputs):
        tracer.report_unknown(call.name)
    unfixable(tracer, call)


def selection(tracer, call: Call) -> None:
    """``topk`` / ``sort`` / ``nms`` / ``nonzero``…: entries picked by value. The picked positions depend on the
    data, so any channels among them are kept fixed (quietly: these are well understood, e.g. detection
    post-processing), and the results carry no channel."""
    for v in call.inputs:
        for f in v.fields:
            tracer.couplings.fix(f, f"'{call.name}' selects entries by value")
    unlabeled(call)
