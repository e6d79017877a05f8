"""Criteria that need calibration data: first-order Taylor and diagonal-Hessian (OBD-style) scores."""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Sequence

import torch
import torch.nn as nn

from ..errors import ImportanceError
from .base import GroupImportance
from .members import Part

class _GradientCollector:
    """A collector for :func:`prune_explorer.calibration.calibrate`: the pass runs forward and backward passes
    (``needs_backward``); the gradients land in the parameters' ``.grad``, which the criterion reads."""

    needs_backward = True

    def attach(self, model: nn.Module) -> None:
        model.zero_grad(set_to_none=True)

    def detach(self) -> None:
        pass

    def calibrate(self, model: nn.Module, calibration):
        """One pass of ``calibration`` (a :class:`prune_explorer.calibration.Calibration` or an iterable of
        example inputs; its loss is back-propagated) through ``model``; the model's gradients are reset first."""
        from ..calibration import calibrate

        calibrate(model, calibration, [self])
        return self


__all__ = ["TaylorImportance", "HessianImportance", "GroupTaylorImportance", "GroupHessianImportance", "ImportanceError"]


def channel_grad_sums(parts: Sequence[Part], term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      absolute: bool = False) -> Optional[torch.Tensor]:
    """Per channel: the sum over ``parts`` of ``term(weight, weight.grad)`` over the entries the channel owns
    (``|term|`` with ``absolute``), in float32; parts without a ``.grad`` are left out, None if no part has one."""
    total = None
    for part in parts:
        grad = part.param.grad
        if grad is None:
            continue
        rows = part.select(term(part.param.detach(), grad.detach())).float()
        s = rows.abs().sum(1) if absolute else rows.sum(1)
        total = s if total is None else total + s
    return total


class TaylorImportance(_GradientCollector, GroupImportance):
    """First-order Taylor expansion of the loss: ``sum |w * dL/dw|`` over the weights each channel owns.

    Run a forward and backward pass on calibration data before scoring (``loss.backward()``, without
    ``model.zero_grad()`` afterwards), or ``imp.calibrate(model, calibration)`` (one pass, gradients summed over
    its batches); the layer pruners slice ``.grad`` along with the weights, so the scores stay
    valid while a step prunes group after group. ``multivariable=True`` takes ``|sum(w * dL/dw)|`` per channel
    instead (the joint first-order change of removing the whole channel).
    """

    #: reads the weights only through ``channel_parts`` (a step may decide it through held cuts, see :mod:`.held`)
    channel_parts_only = True

    def __init__(self, group_reduction: Optional[str] = "mean", normalizer="mean", multivariable: bool = False,
                 bias: bool = False, target_types: Optional[Iterable[type]] = None):
        super().__init__(group_reduction=group_reduction, normalizer=normalizer, bias=bias, target_types=target_types)
        self.multivariable = multivariable

    def __call__(self, group):
        self._seen_grad = False
        out = super().__call__(group)
        if not self._seen_grad:
            raise ImportanceError(
                f"TaylorImportance needs gradients, but no weight of the group rooted at {group.root_name} has a .grad. "
                "Fix: run the model on calibration data and call loss.backward() before pruner.step() "
                "(and do not call model.zero_grad() in between)."
            )
        return out

    def member_scores(self, item, parts: Sequence[Part]):
        total = channel_grad_sums(parts, lambda w, g: w * g, absolute=not self.multivariable)
        if total is not None:
            self._seen_grad = True
            if self.multivariable:
                total = total.abs()
        return total


class HessianImportance(_GradientCollector, GroupImportance):
    """Diagonal-Hessian (Optimal Brain Damage) scores: ``sum w^2 * H_diag`` per channel, with the diagonal
    approximated by the mean over samples of the squared per-sample gradients (empirical Fisher).

    Usage (one sample at a time)::

        imp = pe.importance.HessianImportance()
        imp.zero_grad()
        for x, y in calibration_samples:
            model.zero_grad()
            loss_fn(model(x), y).backward()
            imp.accumulate_grad(model)        # after each sample's backward
        pruner.step()

    ``imp.calibrate(model, calibration)`` does the same per batch (batches of one give the per-sample form).
    As in Torch-Pruning, the first scoring after accumulation writes the averaged squared gradients into each
    parameter's ``.grad`` (so they are sliced along with the weights while a step prunes group after group);
    call :meth:`zero_grad` and ``model.zero_grad()`` before accumulating again.
    """

    #: reads the weights only through ``channel_parts`` (a step may decide it through held cuts, see :mod:`.held`)
    channel_parts_only = True

    def __init__(self, group_reduction: Optional[str] = "mean", normalizer="mean", bias: bool = False,
                 target_types: Optional[Iterable[type]] = None):
        super().__init__(group_reduction=group_reduction, normalizer=normalizer, bias=bias, target_types=target_types)
        self.zero_grad()

    def zero_grad(self) -> None:
        """Forget every accumulated gradient."""
        self._accu: Dict[int, torch.Tensor] = {}
        self._params: Dict[int, nn.Parameter] = {}
        self._count: Dict[int, int] = {}
        self._ready = False

    def accumulate_grad(self, model: nn.Module) -> None:
        """Add the squares of the current gradients of ``model``'s parameters (call after each sample's backward)."""
        n = 0
        for p in model.parameters():
            if p.grad is None:
                continue
            k = id(p)
            sq = p.grad.detach().pow(2)
            if k in self._accu and self._accu[k].shape == sq.shape:
                self._accu[k] += sq
                self._count[k] += 1
            else:
                self._accu[k], self._count[k], self._params[k] = sq.clone(), 1, p
            n += 1
        if n == 0:
            raise ImportanceError(
                "accumulate_grad found no gradient on the model. Fix: call loss.backward() on one sample first."
            )
        self._ready = False

    def attach(self, model: nn.Module) -> None:
        self.zero_grad()
        model.zero_grad(set_to_none=True)

    def after_batch(self, model: nn.Module) -> None:
        """After each calibration batch's backward pass: add its squared gradients, then reset them."""
        self.accumulate_grad(model)
        model.zero_grad(set_to_none=True)

    def _materialise(self) -> None:
        for k, acc in self._accu.items():
            p = self._params[k]
            p.grad = acc / self._count[k]
        self._accu, self._count, self._params = {}, {}, {}
        self._ready = True

    def __call__(self, group):
        if self._accu:
            self._materialise()
        if not self._ready:
            raise ImportanceError(
                "HessianImportance has no accumulated gradients. Fix: for each calibration sample run "
                "loss.backward() and then imp.accumulate_grad(model), before pruner.step()."
            )
        return super().__call__(group)

    def member_scores(self, item, parts: Sequence[Part]):
        return channel_grad_sums(parts, lambda w, h: w.pow(2) * h)


GroupTaylorImportance = TaylorImportance
GroupHessianImportance = HessianImportance
