"""OBD-C: Optimal Brain Damage with a Kronecker-factored curvature estimate (EigenDamage's C-OBD, Wang et al. 2019).

Removing output channel ``i`` of a convolution or linear layer zeroes its weight row ``w_i``. Optimal Brain Damage
estimates the loss increase as ``dL_i = 1/2 w_i^T F_i w_i`` with ``F_i`` the block of the Fisher (Gauss-Newton)
matrix for that row. K-FAC approximates the layer's Fisher as a Kronecker product ``A (x) S`` of the input covariance
``A = E[a a^T]`` and the output-gradient covariance ``S = E[g g^T]``, so the block of row ``i`` is ``S_ii A`` and

    dL_i = 1/2 * S_ii * w_i^T A w_i = 1/2 * E[g_i^2] * E[z_i^2]

where ``z_i = w_i . a`` is channel ``i``'s pre-activation output (bias excluded; ``bias=True`` includes it) and
``g_i = dLoss/dz_i``. Both expectations are per-channel averages that forward and backward hooks gather in one
calibration pass (no ``A`` matrix is ever formed); for a convolution, ``E[g_i^2]`` sums over the output positions of
a sample and ``E[z_i^2]`` averages over them (the KFC factorisation). Gradients are multiplied by the batch size,
which undoes a mean-reduced loss. A group's score sums its members' saliencies per channel (``group_reduction``).

Usage, like the Hessian criterion, with one pass over calibration data::

    imp = pe.importance.OBDCImportance()
    with imp.collect(model):
        for x, y in calibration_batches:
            model.zero_grad()
            loss_fn(model(x), y).backward()
    pruner = pe.pruner.MagnitudePruner(model, example_inputs, imp, pruning_ratio=0.5, ignored_layers=[model.fc])
    pruner.step()

Torch-Pruning's spelling works too: ``imp._prepare_model(model, pruner)`` attaches the hooks and ``imp.step()`` after
each backward pass is accepted (the statistics are gathered by the hooks themselves).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
import torch.nn as nn

from .activation import channel_dim
from .base import GroupImportance
from ..calibration import CALIBRATED_TYPES, HookedCalibration
from .gradient import ImportanceError
from .members import Part

__all__ = ["OBDCImportance"]


def _out_dim(module: nn.Module, y: torch.Tensor) -> int:
    return channel_dim(module, y)


class OBDCImportance(HookedCalibration, GroupImportance):
    """C-OBD saliency of every output channel of the group's convolution / linear members (module docstring).

    Args:
        group_reduction, normalizer: as for every group criterion (:class:`GroupImportance`).
        bias: measure the output with its bias (removing a channel removes its bias too) instead of ``w_i . a``.
        target_types: the layers scored (default: convolutions and ``nn.Linear``).
        num_classes: Torch-Pruning's option: ``nn.Linear`` layers with this many outputs (the classifier) are left
            out of the scores. None (default): none is left out.
    """

    def __init__(self, group_reduction: Optional[str] = "mean", normalizer="mean", bias: bool = False,
                 target_types: Optional[Iterable[type]] = None, num_classes: Optional[int] = None):
        super().__init__(group_reduction=group_reduction, normalizer=normalizer, bias=bias,
                         target_types=target_types or CALIBRATED_TYPES)
        self.num_classes = num_classes
        self._start_gathering()
        self.steps = 0

    # ---- gathering (attach / detach / collect / calibrate: :class:`~prune_explorer.calibration.HookedCalibration`) --
    needs_backward = True

    def clear(self) -> None:
        """Forget the gathered statistics."""
        super().clear()
        self.steps = 0

    zero_grad = clear

    def _forward_hook(self, module, inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() == 0:
            return
        d = _out_dim(module, output)
        n_ch = output.shape[d]
        with torch.no_grad():
            z = output.detach().float()
            bias = getattr(module, "bias", None)
            if not self.bias and isinstance(bias, torch.Tensor) and bias.numel() == n_ch:
                shape = [1] * z.dim()
                shape[d] = n_ch
                z = z - bias.detach().float().view(shape)
            z2 = z.pow(2).movedim(d, -1).reshape(-1, n_ch).sum(0)
        self.stats.add(module, "out", "z2", z2, count=output.numel() // max(n_ch, 1))
        if output.requires_grad:
            batch = output.shape[0] if d > 0 else 1

            def grad_hook(g, module=module, d=d, n_ch=n_ch, batch=batch):
                with torch.no_grad():
                    g2 = (g.detach().float() * batch).pow(2).movedim(d, -1).reshape(-1, n_ch).sum(0)
                self.stats.add(module, "out", "g2", g2, count=batch)

            output.register_hook(grad_hook)

    def _hooks(self, module: nn.Module) -> bool:
        return isinstance(module, self.target_types) and not self._is_classifier(module)

    # Torch-Pruning's spellings
    def _prepare_model(self, model: nn.Module, pruner=None) -> None:
        """Torch-Pruning's name for :meth:`attach` (``pruner`` is accepted and not needed)."""
        self.attach(model)

    def _rm_hooks(self, model: Optional[nn.Module] = None) -> None:
        """Torch-Pruning's name for :meth:`detach`."""
        self.detach()

    def _clear_buffer(self) -> None:
        """Torch-Pruning's name for :meth:`clear`."""
        self.clear()

    def step(self) -> None:
        """Count one calibration batch (Torch-Pruning calls it after each backward pass; the hooks already gathered
        the batch's statistics)."""
        self.steps += 1

    def _is_classifier(self, module) -> bool:
        return self.num_classes is not None and isinstance(module, nn.Linear) and \
            module.out_features == self.num_classes

    # ---- scoring (:class:`~.calibration.HookedCalibration` checks and anchors the statistics) --------------------
    GATHER_FIX = "run forward and backward passes on calibration data inside `with imp.collect(model): ...`"

    def accepts(self, dep) -> bool:
        return super().accepts(dep) and not self._is_classifier(dep.layer)

    def member_scores(self, item, parts: Sequence[Part]) -> Optional[torch.Tensor]:
        z2 = self.stats.member_mean(item, "out", "z2")
        g2 = self.stats.member_mean(item, "out", "g2")
        if z2 is None:
            return None
        if g2 is None:
            raise ImportanceError(
                f"OBDCImportance saw {item.dep.space.label}'s outputs but no gradient for them. Fix: call "
                "loss.backward() inside `with imp.collect(model): ...` (with gradients enabled)"
            )
        return 0.5 * g2 * z2
