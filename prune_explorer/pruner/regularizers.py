"""Sparsity regularizers for "sparse training, then prune": add a penalty's gradient to ``param.grad``.

Call them after ``loss.backward()`` and before ``optimizer.step()`` (the pruners' ``regularize`` methods do)::

    loss.backward()
    pruner.regularize(model)          # BNScalePruner: L1 on BN scales; GroupNormPruner: growing group lasso
    optimizer.step()

The group penalties work on every member of each group (the weights :func:`prune_explorer.importance.channel_parts`
assigns to each channel); their gradients are computed with autograd through the same selections, so a weight
owned by several members receives each member's share, as in Torch-Pruning.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn as nn

from ..importance.base import root_positions
from ..importance.members import channel_parts

__all__ = ["l1_norm_scale", "group_channel_norms", "group_lasso", "growing_group_norm", "weighted_channel_l2"]

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def _add_grad(param: torch.Tensor, g: Optional[torch.Tensor]) -> None:
    if g is None:
        return
    if param.grad is None:
        param.grad = g.detach().clone()
    else:
        param.grad.add_(g.detach())


def l1_norm_scale(modules: Iterable[nn.Module], reg: float) -> int:
    """Network-slimming L1 penalty ``reg * |gamma|`` on the scales of BatchNorm modules (subgradient
    ``reg * sign(gamma)`` added to ``gamma.grad``). Returns how many modules were regularised."""
    n = 0
    for m in modules:
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine and m.weight is not None:
            with torch.no_grad():
                _add_grad(m.weight, reg * torch.sign(m.weight.detach()))
            n += 1
    return n


def _member_rows(group, bias: bool, types=None):
    """``(positions, [parts' row tensors])`` per member, selected from the live (differentiable) parameters."""
    _, pos_of = root_positions(group)
    for it in group.items:
        if not it.idx_array.size or (types is not None and not isinstance(it.dep.layer, types)):
            continue
        parts = [p for p in channel_parts(it.dep, it.idx_array) if bias or not p.is_bias]
        if parts:
            yield pos_of(it.root_array), parts


def group_channel_norms(group, bias: bool = False, types=None) -> Optional[torch.Tensor]:
    """The L2 norm, over every member, of the weights each root channel owns (None: no member has weights)."""
    n = len(group.root_idxs)
    sq = torch.zeros(n)
    seen = False
    with torch.no_grad():
        for pos, parts in _member_rows(group, bias, types):
            for part in parts:
                sq.index_add_(0, pos, part.select(part.param.detach()).float().pow(2).sum(1).cpu())
                seen = True
    return sq.sqrt() if seen else None


def _apply_penalty(group, weights: torch.Tensor, bias: bool, types, power: int) -> None:
    """Add d/dw of ``sum_c weights[c] * ||w_c||^2 / 2`` (power 2) or ``sum_c weights[c] * ||w_c||`` (power 1)."""
    terms, params = [], {}
    with torch.enable_grad():
        per_channel = None
        for pos, parts in _member_rows(group, bias, types):
            for part in parts:
                if not part.param.requires_grad:
                    continue
                params[id(part.param)] = part.param
                rows = part.select(part.param).pow(2).sum(1)
                w = weights.to(rows.device, rows.dtype)[pos.to(rows.device)]
                if power == 2:
                    terms.append((w * rows).sum() / 2)
                else:
                    per_channel = (torch.zeros(len(weights), device=rows.device, dtype=rows.dtype)
                                   if per_channel is None else per_channel)
                    per_channel = per_channel.index_add(0, pos.to(rows.device), rows)
        if power == 1 and per_channel is not None:
            terms.append((weights.to(per_channel.device, per_channel.dtype) * (per_channel + 1e-12).sqrt()).sum())
        if not terms:
            return
        plist = list(params.values())
        grads = torch.autograd.grad(sum(terms), plist, allow_unused=True)
    for p, g in zip(plist, grads):
        _add_grad(p, g)


def group_lasso(groups: Iterable, reg: float, bias: bool = False, types=None) -> None:
    """Group lasso ``reg * sum_c ||w_c||`` over each group's channels (``w_c``: every weight channel ``c`` owns in
    the group's members, restricted to ``types`` when given)."""
    for group in groups:
        n = len(group.root_idxs)
        if n:
            _apply_penalty(group, torch.full((n,), float(reg)), bias, types, power=1)


def growing_group_norm(groups: Iterable, reg: float, alpha: float = 4.0, bias: bool = False) -> None:
    """Torch-Pruning's ``GroupNormPruner`` penalty: for each group, channel ``c`` with group norm ``n_c`` gets
    ``reg * gamma_c * w_c`` added to its weights' gradients, ``gamma_c = alpha ** ((max n - n_c) / (max n - min
    n))``: the weakest channels of a group are pushed hardest towards zero."""
    for group in groups:
        norms = group_channel_norms(group, bias)
        if norms is None or norms.numel() == 0:
            continue
        span = norms.max() - norms.min()
        gamma = alpha ** ((norms.max() - norms) / span) if span > 0 else torch.ones_like(norms)
        _apply_penalty(group, reg * gamma, bias, None, power=2)


def weighted_channel_l2(group, coefficients: torch.Tensor, bias: bool = False) -> None:
    """Add ``coefficients[c] * w`` to the gradient of every weight ``w`` root channel ``c`` owns in the group's
    members (the gradient of ``sum_c coefficients[c] * ||w_c||^2 / 2``; :class:`GrowingRegPruner`'s penalty)."""
    _apply_penalty(group, coefficients.float(), bias, None, power=2)
