"""The arithmetic of compensation on one consumer layer: weight deltas from input statistics, no training.

A consumer reads ``n`` input channels; ``R`` leave, ``K`` stay. With ``W`` viewed as ``[taps, out, n]`` (a linear
layer has one tap; a convolution one per kernel position) and the input statistics ``mu = E[x]`` and
``M = E[x x^T]`` (over every observation of the input: tokens, positions):

* **bias** (FLAP's bias compensation): the removed channels' expected contribution
  ``db = sum_taps W[t, :, R] @ mu_t[R]`` is added to the bias, where ``mu_t`` is the mean of what tap ``t`` reads
  over the output positions (``mu_taps``, :func:`prune_explorer.calibration.conv_taps.tap_sums`): near the
  border a tap reads zero padding, so ``mu_t`` is not the channel mean ``mu`` (a linear layer has one tap,
  ``mu_t = mu``). The output's mean over the calibration data and every output position is then exactly the
  unpruned layer's. Without ``mu_taps`` a convolution uses ``mu`` for every tap (exact away from the padding only).
* **least squares** (the optimal-brain-surgeon / SlimGPT-style refit, closed form): the kept weights are moved so that
  the kept channels predict the removed ones' contribution, ``min_D E||x_K^T D^T - x_R^T W_R^T||^2 + lam ||D||^2``,
  i.e. ``D = W_R M_RK (M_KK + lam I)^-1`` (per tap; the same ``M`` serves every tap). With ``bias`` as well, a
  constant channel joins ``K`` (the affine fit ``x_R ~ A^T x_K + b``) and the bias then matches the output's
  mean exactly: ``db = sum_taps W[t, :, R] @ (mu_t[R] - A^T mu_t[K])``. ``lam = ridge * mean(diag M_KK)``.

Both give zero deltas when ``R`` is empty. Grouped convolutions are solved group by group (a removed channel is
compensated only inside its group); a depthwise layer (one input channel per group) has nothing to compensate with.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["column_view", "deltas"]


def column_view(weight: torch.Tensor) -> torch.Tensor:
    """A linear ``[out, in]`` or convolution ``[out, in/g, *kernel]`` weight as ``[taps, out, in/g]`` (float64)."""
    w = weight.detach().to("cpu", torch.float64)
    if w.dim() == 2:
        return w.unsqueeze(0)
    return w.reshape(w.shape[0], w.shape[1], -1).permute(2, 0, 1)


def _solve(wc: torch.Tensor, R: torch.Tensor, K: torch.Tensor, mu: torch.Tensor, M: Optional[torch.Tensor],
           bias: bool, ridge: float, mt: torch.Tensor) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Deltas for one block: ``wc [taps, out, n]``, local indices ``R`` / ``K``, tap means ``mt [n, taps]``;
    returns ``(dW [taps, out, |K|] or None, db [out] or None)``."""
    wr = wc[:, :, R]  # [T, out, r]
    if M is None:  # bias only
        return None, torch.einsum("tor,rt->o", wr, mt[R]) if bias else None
    mkk = M[K][:, K]
    cross = M[K][:, R]  # [k, r]
    k = K.numel()
    if bias:
        s = torch.zeros(k + 1, k + 1, dtype=torch.float64)
        s[:k, :k] = mkk
        s[:k, k] = mu[K]
        s[k, :k] = mu[K]
        s[k, k] = 1.0
        cross = torch.cat([cross, mu[R].unsqueeze(0)], 0)
        mkk = s
    lam = ridge * float(mkk.diagonal()[:k].mean()) if k else ridge
    reg = torch.eye(mkk.shape[0], dtype=torch.float64) * lam
    if bias:
        reg[-1, -1] = 0.0 if lam == 0 else lam * 1e-3
    a = torch.linalg.solve(mkk + reg, cross)[:k]  # [k, r]: x_R ~ a^T x_K (+ intercept)
    d = wr @ a.T  # [T, out, k]
    if bias:
        return d, torch.einsum("tor,rt->o", wr, mt[R] - a.T @ mt[K])
    return d, None


def deltas(weight: torch.Tensor, groups: int, removed: torch.Tensor, mu: torch.Tensor, M: Optional[torch.Tensor],
           bias: bool, ridge: float = 1e-2, mu_taps: Optional[torch.Tensor] = None
           ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Compensation of removing input channels ``removed`` (current indices) from a consumer with ``weight`` and
    ``groups``: ``(dW, db)``, ``dW`` shaped like the weight *after* the removal (None: weights unchanged; only with
    ``M``, the second-moment matrix, for least squares) and ``db [out]`` (None: bias unchanged). ``mu``: ``E[x]``
    per input channel (float64); ``mu_taps``: a convolution's ``[n, taps]`` means of what each tap reads over the
    output positions (None: ``mu`` for every tap)."""
    n_in = mu.numel()
    wc = column_view(weight)
    T, out, per = wc.shape
    if mu_taps is None:
        mu_taps = mu.reshape(-1, 1).expand(n_in, T)
    elif tuple(mu_taps.shape) != (n_in, T):
        raise ValueError(f"mu_taps has shape {tuple(mu_taps.shape)}; the layer reads {n_in} channels through {T} "
                         "kernel taps")
    mu_taps = mu_taps.to(torch.float64)
    keep_mask = torch.ones(n_in, dtype=torch.bool)
    keep_mask[removed] = False
    kept_per_group = int(keep_mask.sum()) // groups  # pruning a grouped layer keeps as many channels in each group
    dW = torch.zeros(T, out, kept_per_group, dtype=torch.float64) if M is not None else None
    db = torch.zeros(out, dtype=torch.float64) if bias else None
    out_per = out // groups
    for g in range(groups):
        lo, hi = g * per, (g + 1) * per
        local_keep = keep_mask[lo:hi]
        R = (~local_keep).nonzero().reshape(-1)
        K = local_keep.nonzero().reshape(-1)
        rows = slice(g * out_per, (g + 1) * out_per)
        if R.numel() and (K.numel() or M is None or bias):
            blk_mu = mu[lo:hi]
            blk_M = M[lo:hi, lo:hi] if M is not None else None
            if blk_M is not None and not K.numel():
                blk_M = None  # nothing kept in this group: only the bias can take the removed contribution
            d, b = _solve(wc[:, rows, :], R, K, blk_mu, blk_M, bias, ridge, mu_taps[lo:hi])
            if d is not None and dW is not None:
                dW[:, rows, :] = d
            if b is not None and db is not None:
                db[rows] += b
    if dW is not None:
        kept = dW.permute(1, 2, 0)  # [out, k, T]
        dW = kept.reshape(out, kept.shape[1], *weight.shape[2:]) if weight.dim() > 2 else kept[:, :, 0]
    return dW, db
