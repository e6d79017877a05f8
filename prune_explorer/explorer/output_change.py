"""How far the pruned model's output has moved from the original's (plain Python, no widgets).

:class:`OutputChange` runs the original model once on its data (the example inputs by default, or any iterable of
input batches: calibration data) and keeps the outputs; :meth:`OutputChange.measure` runs the model as it is now on
the same data and compares (one forward pass per batch):

- ``rel_error``: ``||y - y0|| / ||y0||`` over every output tensor (a fraction; 0 = unchanged);
- ``top1``: for classifiers (a ``[N, C]`` output), the fraction of samples whose top-1 class is unchanged;
- ``kl``: for language models (``[N, T, V]`` logits, or an output with ``.logits``), the mean KL divergence
  ``KL(p0 || p)`` of the next-token distributions, in nats per position.

With ``eval_fn`` (``eval_fn(model) -> float``, e.g. accuracy on a validation set) it reports that score and its
change from the original's instead. :func:`output_change_text` words a result for the header.

>>> import torch, torchvision
>>> m = torchvision.models.resnet18(num_classes=10).eval()
>>> oc = OutputChange(m, torch.randn(2, 3, 32, 32))
>>> r = oc.measure(m)
>>> r["rel_error"], r["top1"], r["kind"]
(0.0, 1.0, 'classifier')
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, List, Optional

import torch
import torch.nn.functional as F

from ..inputs import call_model, kept_state, tensors_in

__all__ = ["OutputChange", "OutputTrack", "output_change_text"]


def _logits(out: Any) -> Optional[torch.Tensor]:
    """The logits of a model output: a tensor, ``out.logits`` or ``out["logits"]`` (None when there is none)."""
    if isinstance(out, torch.Tensor):
        return out
    lg = getattr(out, "logits", None)
    if lg is None and isinstance(out, dict):
        lg = out.get("logits")
    if isinstance(lg, torch.Tensor):
        return lg
    return None


def _compared(out: Any) -> List[torch.Tensor]:
    """The tensors compared: the logits when the output has them (not caches, hidden states...), else every
    floating-point tensor of the output."""
    lg = _logits(out)
    return [lg] if lg is not None else [t for t in tensors_in(out) if t.is_floating_point()]


def _kind(out: Any, lm_hint: bool) -> str:
    lg = _logits(out)
    if lg is None or not lg.is_floating_point():
        return "generic"
    if lg.dim() == 3 and (lm_hint or not isinstance(out, torch.Tensor)) and lg.shape[-1] > 1:
        return "language model"
    if lg.dim() == 2 and lg.shape[-1] > 1:
        return "classifier"
    return "generic"


class OutputChange:
    """The output of the model as it is now compared with the original's (module docstring).

    Args:
        model: the model, unpruned (its outputs on ``data`` are the reference; it is run once, in eval mode).
        example_inputs: what the model is called with (the default data: one batch).
        eval_fn: ``eval_fn(model) -> float``; when given, it is the measure (its value and its change).
        data: an iterable of input batches (each called like ``example_inputs``); default ``[example_inputs]``.
        forward_fn: ``forward_fn(model, inputs)`` when the model is not called as ``model(*inputs)``.
    """

    def __init__(self, model, example_inputs, eval_fn: Optional[Callable[[Any], float]] = None,
                 data: Optional[Iterable[Any]] = None, forward_fn: Optional[Callable] = None):
        self.eval_fn = eval_fn
        self.data: List[Any] = list(data) if data is not None else [example_inputs]
        self.forward_fn = forward_fn
        self.lm_hint = hasattr(getattr(model, "config", None), "vocab_size")
        self.baseline: Optional[float] = None
        self.reference: List[List[torch.Tensor]] = []
        self.kinds: List[str] = []
        if eval_fn is not None:
            with kept_state(model, eval_mode=False):
                self.baseline = float(eval_fn(model))
        else:
            for out in self._run(model):
                self.kinds.append(_kind(out, self.lm_hint))
                self.reference.append([t.detach().float().clone() for t in _compared(out)])

    @property
    def kind(self) -> str:
        """``"eval_fn"``, ``"classifier"``, ``"language model"`` or ``"generic"``."""
        if self.eval_fn is not None:
            return "eval_fn"
        return self.kinds[0] if self.kinds else "generic"

    def _run(self, model) -> List[Any]:
        with torch.no_grad(), kept_state(model, eval_mode=True):
            return [call_model(model, batch, self.forward_fn) for batch in self.data]

    def measure(self, model) -> dict:
        """Compare the model now with the original (one forward pass per batch of data, or one ``eval_fn`` call).

        Returns ``{"kind", "rel_error", "top1", "kl"}`` (the last two None where they do not apply) or, with
        ``eval_fn``, ``{"kind": "eval_fn", "value", "baseline", "change"}``.
        """
        if self.eval_fn is not None:
            with kept_state(model, eval_mode=False):
                value = float(self.eval_fn(model))
            return {"kind": "eval_fn", "value": value, "baseline": self.baseline, "change": value - self.baseline}
        num = den = 0.0
        agree = n_cls = 0
        kl_sum, kl_n = 0.0, 0
        for out, ref, kind in zip(self._run(model), self.reference, self.kinds):
            now = [t.detach().float() for t in _compared(out)]
            if [tuple(t.shape) for t in now] != [tuple(t.shape) for t in ref]:
                raise ValueError("the pruned model's outputs changed shape: "
                                 f"{[tuple(t.shape) for t in ref]} -> {[tuple(t.shape) for t in now]}")
            for a, b in zip(now, ref):
                num += float(((a - b) ** 2).sum())
                den += float((b ** 2).sum())
            lg, lg0 = _logits(out), ref[0] if ref else None
            if kind == "classifier" and lg is not None:
                agree += int((lg.argmax(-1) == lg0.argmax(-1)).sum())
                n_cls += lg.shape[0]
            elif kind == "language model" and lg is not None:
                logp0 = F.log_softmax(lg0.reshape(-1, lg0.shape[-1]), -1)
                logp = F.log_softmax(lg.float().reshape(-1, lg.shape[-1]), -1)
                kl_sum += float(F.kl_div(logp, logp0, log_target=True, reduction="sum"))
                kl_n += logp.shape[0]
        rel = math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else float("inf"))
        return {"kind": self.kind, "rel_error": rel, "top1": (agree / n_cls) if n_cls else None,
                "kl": (kl_sum / kl_n) if kl_n else None}


def output_change_text(r: Optional[dict], where: str = "the example inputs") -> str:
    """One line for the header: ``"output vs original: 3.2% relative error · top-1 agreement 98.0%"``.

    >>> output_change_text({"kind": "classifier", "rel_error": 0.0321, "top1": 0.98, "kl": None})
    'output vs original (on the example inputs): 3.2% relative error · top-1 unchanged for 98.0%'
    >>> output_change_text({"kind": "eval_fn", "value": 0.71, "baseline": 0.75, "change": -0.04})
    'eval_fn: 0.7100 (original 0.7500, change -0.0400)'
    """
    if r is None:
        return "output vs original: not measured"
    if r["kind"] == "eval_fn":
        return f"eval_fn: {r['value']:.4f} (original {r['baseline']:.4f}, change {r['change']:+.4f})"
    parts = [f"{100 * r['rel_error']:.1f}% relative error"]
    if r.get("top1") is not None:
        parts.append(f"top-1 unchanged for {100 * r['top1']:.1f}%")
    if r.get("kl") is not None:
        parts.append(f"next-token KL {r['kl']:.4f} nats")
    return f"output vs original (on {where}): " + " · ".join(parts)


class OutputTrack:
    """The output change after each decision (a part of :class:`~.controller.ExplorerController`,
    ``controller.output``): at most one :meth:`OutputChange.measure` per change of the model, none when the same
    set of accepted groups was measured before (an undo goes back to a state already measured).

    Args:
        session: the :class:`~.session.Session`; walk: the :class:`~.walk.Walk`.
        eval_fn, data: as for :class:`OutputChange` (``data``: the example inputs by default).
        enabled: False to skip it (no forward pass at all); :meth:`set_enabled` turns it on or off later.

    ``latest`` is the last result (None before a measure or when disabled), ``reason`` why there is none.
    """

    def __init__(self, session, walk, eval_fn=None, data=None, enabled: bool = True):
        self.s = session
        self.w = walk
        self.eval_fn = eval_fn
        self.data = data
        self.enabled = False
        self.reason = "output change not tracked (turn it on to measure it after each decision)"
        self.latest: Optional[dict] = None
        self._oc: Optional[OutputChange] = None
        self._seen: dict = {}
        if enabled:
            self.set_enabled(True)

    @property
    def where(self) -> str:
        if self.eval_fn is not None:
            return "eval_fn"
        return "the example inputs" if self.data is None else f"{len(self._oc.data) if self._oc else '?'} batches"

    def set_data(self, data=None, eval_fn=None) -> None:
        """Measure on ``data`` (an iterable of input batches, e.g. calibration data) or with ``eval_fn`` from now on
        (the reference is taken again on the unpruned model: call it before pruning, or after a restart)."""
        self.data, self.eval_fn = data, eval_fn
        self._oc, self._seen = None, {}
        if self.enabled:
            self.set_enabled(True)

    def set_enabled(self, on: bool) -> None:
        from ..plan.meta import is_meta_model

        self.enabled = bool(on)
        if not on:
            self.latest, self.reason = None, "output change not tracked (turn it on to measure it after each decision)"
            return
        if is_meta_model(self.s.model):
            self.enabled, self.latest = False, None
            self.reason = "output change not measured: the model is on the meta device (no weights to run)"
            return
        if self._oc is None:
            if self.w.decisions and any(d.action == "accept" for d in self.w.decisions):
                self.enabled, self.latest = False, None
                self.reason = ("output change not measured: it needs the original model's outputs; turn it on "
                               "before pruning, or use Restart walk first")
                return
            try:
                self._oc = OutputChange(self.s.model, self.s.example_inputs, self.eval_fn, self.data,
                                        self.s.pruner_kwargs.get("forward_fn"))
            except Exception as exc:  # noqa: BLE001 - the walk works without it; say why
                self.enabled, self.latest = False, None
                self.reason = (f"output change not measured: the original model could not be run on the data "
                               f"({type(exc).__name__}: {exc}); check eval_fn / the data given")
                return
        self.update()

    def _state(self) -> tuple:
        return tuple((d.root, tuple(d.orig_idxs)) for d in self.w.decisions if d.action == "accept")

    def needs_measure(self) -> bool:
        """Whether :meth:`update` would run the model (tracking on, and this set of accepted groups not measured)."""
        return self.enabled and self._oc is not None and self._state() not in self._seen

    def update(self) -> Optional[dict]:
        """Measure the model as it is now, unless this state was measured before; the result goes on the newest
        decision too (the curve over the decisions)."""
        if not self.enabled or self._oc is None:
            return None
        key = self._state()
        if key not in self._seen:
            if not key:  # the unpruned model: nothing moved, no pass needed
                r = self._oc.measure(self.s.model) if self._oc.eval_fn is not None else {
                    "kind": self._oc.kind, "rel_error": 0.0,
                    "top1": 1.0 if self._oc.kind == "classifier" else None,
                    "kl": 0.0 if self._oc.kind == "language model" else None}
            else:
                try:
                    r = self._oc.measure(self.s.model)
                except Exception as exc:  # noqa: BLE001 - shown in the header instead of the figure
                    r = {"kind": "error", "error": f"{type(exc).__name__}: {exc}"}
            self._seen[key] = r
        self.latest = self._seen[key]
        if self.w.decisions:
            self.w.decisions[-1].output_change = self.latest
        return self.latest

    def curve(self) -> dict:
        """The output change over the decisions measured: ``{"step": [...], "value": [...], "label": str}`` (the
        step is the decision's position in the log; value: relative error, or the eval_fn score)."""
        eval_mode = self.eval_fn is not None
        steps, values = [0], [self._oc.baseline if (eval_mode and self._oc) else 0.0]
        for k, d in enumerate(self.w.decisions, 1):
            r = getattr(d, "output_change", None)
            if r is None or r.get("kind") == "error":
                continue
            steps.append(k)
            values.append(r["value"] if eval_mode else r["rel_error"])
        return {"step": steps, "value": values, "label": "eval_fn" if eval_mode else "relative output error"}
