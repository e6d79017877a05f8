"""Compensation without training: fold what removed input channels contributed back into the layers reading them.

    comp = pe.compensation.Compensation(bias=True, least_squares=True)
    comp.calibrate(model, pe.calibration.Calibration(batches, num_batches=8))   # one pass, running sums only
    for group in pruner.step(interactive=True):
        comp.prune(group)                    # the proposal pruned, then its consumers compensated

or ``BasePruner(..., calibration=..., compensation=comp)``, which gathers the statistics in the same pass as the
criterion's and compensates every group a step prunes.

For every convolution or linear member of the pruned group on its *input* side (a consumer of the removed channels)
the deltas of :mod:`.solve` are computed from the weights before the cut and the consumer's input statistics, then
added to what the cut left: new weight and bias tensors are assigned (never written in place), so undoing the
pruning (``DG.undo()``, the explorer's Undo, a post-prune check's rollback) restores the layer exactly, bias
included (a bias created for the compensation disappears again). Nothing changes when no channel is removed.

A layer of a Hugging Face model that gains a bias where it had none (``create_bias=True``, e.g. a Llama ``o_proj``
or ``down_proj``) turns the config's flag on (``attention_bias`` / ``mlp_bias``) and the other layers that flag
covers get a zero bias (:mod:`prune_explorer.hf_bias`), so ``save_pretrained`` -> ``from_pretrained`` gives the
same logits; an undo removes them and restores the flag. A bias no config field describes is warned about (fix:
``pe.save_pruned``, or ``create_bias=False``).

Transposed convolutions reading removed channels, and consumers whose refitted weight or bias is shared with
another module (tied weights: refitting one user would untie them) are refused before anything is pruned, with
:class:`~prune_explorer.errors.CalibrationError` naming the layer and the fix; ``unsupported="skip"`` prunes them
uncompensated instead (listed in ``comp.skipped``).
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable, List, Optional

import torch
import torch.nn as nn

from ..calibration import InputStatistics
from ..errors import CalibrationError
from ..graph.edit.tied import tied_parameters
from .solve import deltas

__all__ = ["Compensation"]

_CONSUMERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_UNSUPPORTED = ("error", "skip")


class Compensation(InputStatistics):
    """Bias compensation and / or least-squares reconstruction of the consumers of pruned channels (module doc).

    Args:
        bias: fold the removed channels' mean contribution into the consumer's bias (FLAP).
        least_squares: refit the consumer's kept weights from the input's second-moment matrix (gathered only for
            that; ``[n, n]`` per consumer).
        ridge: ridge regularisation, relative to the mean diagonal of the kept channels' second moments.
        create_bias: give a consumer without a bias one (else such a layer gets no bias compensation).
        target_types: the layers compensated (default: ``nn.Linear`` and non-transposed convolutions).
        unsupported: what to do with a consumer this compensation cannot correct exactly: a transposed convolution
            reading removed channels (not implemented), or a layer whose weight (least squares) or bias is tied to
            another module's (refitting it would untie them). ``"error"`` (default): raise
            :class:`~prune_explorer.errors.CalibrationError` before anything is pruned; ``"skip"``: prune it
            uncompensated and list it in :attr:`skipped`.
    """

    GATHERED = "input statistics"
    GATHER_FIX = "comp.calibrate(model, calibration) (or `with comp.collect(model): ...` over calibration batches)"

    def __init__(self, bias: bool = True, least_squares: bool = False, ridge: float = 1e-2, create_bias: bool = True,
                 target_types: Optional[Iterable[type]] = None, unsupported: str = "error"):
        if unsupported not in _UNSUPPORTED:
            raise ValueError(f"unsupported={unsupported!r}: use 'error' or 'skip'")
        if not bias and not least_squares:
            raise ValueError("Compensation(bias=False, least_squares=False) would do nothing; enable one of them")
        if not isinstance(ridge, (int, float)) or isinstance(ridge, bool) or ridge < 0:
            raise ValueError(f"ridge={ridge!r} must be a number >= 0")
        super().__init__(target_types=target_types or _CONSUMERS, covariance=bool(least_squares), taps=bool(bias))
        self.bias = bias
        self.least_squares = least_squares
        self.ridge = float(ridge)
        self.create_bias = create_bias
        self.unsupported = unsupported
        #: ``(layer label, reason)`` of the consumers left uncompensated (``unsupported="skip"``)
        self.skipped: List[tuple] = []

    def __repr__(self) -> str:
        return (f"Compensation(bias={self.bias}, least_squares={self.least_squares}, ridge={self.ridge}, "
                f"create_bias={self.create_bias})")

    # ---- planning and applying -----------------------------------------------------------------------------------
    def plan(self, group) -> Callable[[], int]:
        """Deltas for the consumers of ``group`` (a group or a proposal, restricted to the channels about to be
        removed), computed from the weights as they are now. Returns ``apply()``, to call right after the group
        is pruned: it assigns the compensated tensors and returns how many layers it changed."""
        if not len(self.stats):
            raise CalibrationError(f"Compensation has no {self.GATHERED} yet. Fix: {self.GATHER_FIX}")
        changes = []
        seen = set()
        tied = None
        # a consumer whose output channels the same group removes (a layer reading and writing one residual
        # stream): its deltas lose those rows too
        out_removed = {id(item.dep.layer): item.idx_array for item in group.items
                       if item.dep.space.side == "out" and not item.dep.space.passthrough}
        for item in group.items:
            layer = item.dep.layer
            space = item.dep.space
            if space.side != "in" or id(layer) in seen or not item.idx_array.size:
                continue
            if isinstance(layer, _TRANSPOSED):
                seen.add(id(layer))
                self._unsupported(space.label, f"a {type(layer).__name__} reads the removed channels, and compensating "
                                  "a transposed convolution is not implemented")
                continue
            if not isinstance(layer, self.target_types) or not isinstance(layer, _CONSUMERS):
                continue
            seen.add(id(layer))
            if tied is None:
                tied = _tied_tensors(group)
            shared = [n for n in ("weight",) * bool(self.least_squares) + ("bias",) * bool(self.bias)
                      if id(getattr(layer, n, None)) in tied]
            if shared:
                self._unsupported(space.label, f"its {' and '.join(shared)} {'is' if len(shared) == 1 else 'are'} "
                                  "tied to another module's (shared parameters), and compensating would untie them")
                continue
            self.stats.anchor_space(space)
            change = self._layer_change(layer, space, torch.from_numpy(item.idx_array.copy()),
                                        out_removed.get(id(layer)))
            if change is not None:
                changes.append(change)

        def apply() -> int:
            created = False
            for layer, dW, db in changes:
                created |= db is not None and layer.bias is None
                _assign(layer, dW, db)
            if created:
                _describe_created_biases(group)
            return len(changes)

        return apply

    def _unsupported(self, label: str, why: str) -> None:
        if self.unsupported == "skip":
            self.skipped.append((label, why))
            return
        raise CalibrationError(
            f"Compensation cannot correct {label}: {why}. Nothing was pruned. Fix: Compensation(..., "
            "unsupported='skip') prunes such layers without compensating them (listed in comp.skipped), or keep "
            "their input channels with the pruner's ignored_layers")

    def _layer_change(self, layer, space, removed: torch.Tensor, rows_removed=None):
        mu = self.stats.mean_of(layer, "in", "x", range(space.current_size), space=space)
        if mu is None:
            return None  # the pass never reached this layer
        mu = mu.double()
        M = self.stats.mean_of(layer, "in", "xx", range(space.current_size), space=space) \
            if self.least_squares else None
        n_in = layer.weight.shape[1] * getattr(layer, "groups", 1)
        if mu.numel() != n_in:
            raise CalibrationError(
                f"the input statistics of {space.label} cover {mu.numel()} channels but it reads {n_in}: gather them "
                "again on the model as it is now (comp.clear(), then comp.calibrate(...))")
        want_bias = self.bias and (layer.bias is not None or self.create_bias)
        mu_taps = self.stats.mean_of(layer, "in", "xt", range(space.current_size), space=space) \
            if want_bias and isinstance(layer, nn.modules.conv._ConvNd) else None
        dW, db = deltas(layer.weight, getattr(layer, "groups", 1), removed, mu, M, want_bias, self.ridge, mu_taps)
        if dW is None and db is None:
            return None
        if rows_removed is not None and len(rows_removed):
            keep = torch.ones(layer.weight.shape[0], dtype=torch.bool)
            keep[torch.as_tensor(rows_removed, dtype=torch.long)] = False
            dW = dW[keep] if dW is not None else None
            db = db[keep] if db is not None else None
        return layer, dW, db

    def wrap_applier(self, inner: Callable) -> Callable:
        """A pruning driver's applier (``pruner.driver.applier``, see :mod:`prune_explorer.pruner.driver`) that runs
        ``inner`` and compensates each cut it prunes: the deltas are planned from the weights right before the cut
        is handed on, and applied right after it was pruned (before the driver's bookkeeping of it)."""

        def applier(driver, cuts, pruned, *args, **kwargs):
            pending = {}

            def planned():
                for cut in cuts:
                    idxs = cut.idxs
                    if idxs is None or len(idxs):
                        target = cut.target.select(list(idxs)) if idxs is not None else cut.target
                        pending[id(cut)] = self.plan(target)
                    yield cut

            def done(cut):
                apply = pending.pop(id(cut), None)
                if apply is not None and cut.record is not None:
                    apply()
                pruned(cut)

            return inner(driver, planned(), done, *args, **kwargs)

        applier.compensation = self
        applier.inner = inner
        return applier

    def prune(self, group, idxs=None):
        """Prune ``group`` (a group or a proposal; ``idxs``: root channels, None for the proposal's or the whole
        group's) and compensate its consumers. Returns the graph's record (None when nothing was pruned)."""
        target = group.select(idxs) if idxs is not None and hasattr(group, "select") else group
        apply = self.plan(target)
        record = group.prune(idxs=idxs) if idxs is not None else group.prune()
        if record is not None:
            apply()
        return record


def _tied_tensors(group) -> set:
    """``id`` of every parameter of the group's model registered on more than one module (empty without a model)."""
    model = getattr(getattr(group, "graph", None), "model", None)
    if model is None:
        return set()
    return {id(getattr(m, attr)) for aliases in tied_parameters(model) for (m, attr), _ in aliases}


def _describe_created_biases(group) -> None:
    """A Hugging Face model whose layers gained a bias: the config's bias flags follow (:mod:`prune_explorer.hf_bias`),
    so ``save_pretrained`` -> ``from_pretrained`` rebuilds it; a warning names any bias no flag describes."""
    graph = getattr(group, "graph", None)
    model = getattr(graph, "model", None)
    if model is None or getattr(model, "config", None) is None:
        return
    from .. import hf
    from ..hf_bias import sync_bias_flags

    if not hf.is_hf_model(model):
        return
    problems = sync_bias_flags(model)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; ... ({len(problems) - 3} more)" if len(problems) > 3 else "")
        warnings.warn(f"prune_explorer: bias compensation created biases that model.config cannot describe: {shown}. "
                      "Fix: save with pe.save_pruned (replays the pruning history), or compensate with "
                      "Compensation(create_bias=False) (no new bias) or least_squares=True alone", stacklevel=3)


def _assign(layer: nn.Module, dW: Optional[torch.Tensor], db: Optional[torch.Tensor]) -> None:
    """New weight / bias tensors for ``layer`` (the old ones stay untouched, for an exact undo)."""
    w = layer.weight
    if dW is not None:
        if tuple(dW.shape) != tuple(w.shape):
            raise CalibrationError(f"compensation of a {type(layer).__name__}: weight delta {tuple(dW.shape)} does "
                                   f"not match the pruned weight {tuple(w.shape)}")
        layer.weight = nn.Parameter((w.detach().double() + dW.to(w.device)).to(w.dtype), requires_grad=w.requires_grad)
    if db is not None:
        b = layer.bias
        base = b.detach().double() if b is not None else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
        layer.bias = nn.Parameter((base + db.to(w.device)).to(w.dtype), requires_grad=w.requires_grad)
