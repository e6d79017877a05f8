"""Planning on the ``meta`` device: pruning plans for models too big to load.

A model built on the ``meta`` device (``with torch.device("meta"): model = LlamaForCausalLM(config)``) has every
shape and no values, so it costs no memory: a 70-billion-parameter model traces, lists its groups and walks through
the pruner or the explorer on a laptop. What it cannot do is rank channels by their weights. The way back to real
weights is a :class:`~.decisions.PruningPlan`: made on the meta model, it records per group *how many* channels go
(and, per attention block, how many heads or head dims), never *which*; applied later to the real model
(:func:`~.apply.apply_plan`), an importance criterion ranks the real weights and the counts are reproduced exactly,
down to the parameter count the plan predicted.

* :func:`is_meta_model`: whether a model holds meta tensors;
* :func:`needs_weights` / :func:`check_importance`: whether an importance criterion reads weight values (every
  criterion but :class:`~prune_explorer.importance.RandomImportance`, or one with ``needs_weights = False``), and a
  clear error when such a criterion meets a meta model;
* :func:`planning_importance`: the criterion to plan with (the given one, checked; by default
  ``MagnitudeImportance(p=2)`` on real weights and ``RandomImportance()`` on meta ones);
* :func:`causal_lm_inputs`: example inputs a Hugging Face causal language model traces with on the meta device
  (its mask code makes data-dependent checks that meta tensors cannot answer unless the mask is given as a 4-D
  additive mask).

>>> import torch, torch.nn as nn, prune_explorer as pe
>>> with torch.device("meta"):
...     big = nn.Sequential(nn.Linear(4096, 16384), nn.ReLU(), nn.Linear(16384, 4096))
>>> is_meta_model(big), needs_weights(pe.importance.RandomImportance())
(True, False)
>>> planning_importance(big, None)
RandomImportance()
>>> check_importance(big, pe.importance.MagnitudeImportance(p=2))
Traceback (most recent call last):
...
prune_explorer.plan.decisions.PlanError: MagnitudeImportance ranks channels by the values of the weights, ...
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn as nn

from ..validation import is_positive_int
from .decisions import PlanError

__all__ = ["is_meta_model", "needs_weights", "check_importance", "planning_importance", "causal_lm_inputs",
           "META_IMPORTANCE_HINT", "meta_trace_hint", "meta_aware"]

#: what to do when a meta model meets an importance criterion that reads weights
META_IMPORTANCE_HINT = (
    "To plan on a meta-device model, use importance=pe.importance.RandomImportance() (on meta only the channel "
    "counts matter), take the plan (pe.sensitivity.uniform_plan(...), controller.plan(), Explorer.export_plan(path)) "
    "and apply it to the model with real weights, where your criterion ranks them: "
    "pe.apply_plan(model, plan, example_inputs=..., importance=pe.importance.MagnitudeImportance(p=2))")


def is_meta_model(model: nn.Module) -> bool:
    """Whether ``model`` holds any parameter or buffer on the ``meta`` device (shapes without values)."""
    return any(t.device.type == "meta" for t in model.parameters()) or \
        any(t.device.type == "meta" for t in model.buffers())


def needs_weights(importance) -> bool:
    """Whether ``importance`` reads the values of the weights (or activations, gradients...): every criterion but
    :class:`~prune_explorer.importance.RandomImportance` and those that say ``needs_weights = False``."""
    flag = getattr(importance, "needs_weights", None)
    if flag is not None:
        return bool(flag)
    from ..importance import RandomImportance

    return not isinstance(importance, RandomImportance)


def check_importance(model: nn.Module, importance, error: type = PlanError) -> None:
    """Raise ``error`` (a clear message: why, and how to plan on meta instead) when ``importance`` reads weights
    and ``model`` is on the meta device; do nothing otherwise."""
    if importance is None or not needs_weights(importance) or not is_meta_model(model):
        return
    raise error(f"{type(importance).__name__} ranks channels by the values of the weights, but this model's weights "
                f"are on the meta device (shapes only, no values). {META_IMPORTANCE_HINT}")


def planning_importance(model: nn.Module, importance=None, error: type = PlanError):
    """The criterion to plan ``model`` with: ``importance`` (checked with :func:`check_importance`), or by default
    ``RandomImportance()`` on a meta model (counts are all a plan keeps) and ``MagnitudeImportance(p=2)`` otherwise."""
    from ..importance import MagnitudeImportance, RandomImportance

    if importance is None:
        return RandomImportance() if is_meta_model(model) else MagnitudeImportance(p=2)
    check_importance(model, importance, error)
    return importance


def _first_float(model: nn.Module) -> Optional[torch.Tensor]:
    for t in model.parameters():
        if t.is_floating_point():
            return t
    return None


def causal_lm_inputs(model: nn.Module, tokens: int = 8, batch: int = 1) -> dict:
    """Example inputs for a Hugging Face causal language model that trace on the ``meta`` device as well as on real
    weights: ``{"input_ids": [batch, tokens], "attention_mask": [batch, 1, tokens, tokens]}`` (the ids a fixed
    sequence below ``model.config.vocab_size``, zeros without a config), the mask a
    4-D additive causal mask (0 where a token may attend, the dtype's minimum elsewhere) on the model's device and
    in its floating dtype.

    Why: given a 2-D mask, or none, transformers' mask code asks data-dependent questions (``mask.all()``, "are the
    sequences packed?") that a meta tensor cannot answer; a 4-D mask is used as it is. Configure the model with
    ``use_cache=False``: a cache returned with the outputs would keep the attention projections fixed.

    >>> import torch.nn as nn
    >>> x = causal_lm_inputs(nn.Linear(4, 4), tokens=3)
    >>> x["input_ids"].shape, x["attention_mask"].shape, x["attention_mask"][0, 0, 0].tolist()[1] < -1e30
    (torch.Size([1, 3]), torch.Size([1, 1, 3, 3]), True)
    """
    if not is_positive_int(tokens):
        raise PlanError(f"tokens={tokens!r} must be a positive int (the sequence length of the example)")
    if not is_positive_int(batch):
        raise PlanError(f"batch={batch!r} must be a positive int")
    w = _first_float(model)
    device = w.device if w is not None else torch.device("cpu")
    dtype = w.dtype if w is not None else torch.float32
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    ids = torch.arange(batch * tokens, device=device).reshape(batch, tokens) * 7919
    ids = ids % int(vocab) if isinstance(vocab, int) and vocab > 0 else torch.zeros_like(ids)
    mask = torch.full((tokens, tokens), torch.finfo(dtype).min, dtype=dtype, device=device).triu(1)
    return {"input_ids": ids, "attention_mask": mask[None, None].expand(batch, 1, tokens, tokens).contiguous()}


def meta_trace_hint(exc: BaseException, model: nn.Module) -> Optional[str]:
    """What to do when tracing a meta-device model failed with ``exc`` because the forward asked for a value (None
    when the failure is something else)."""
    text = str(exc)
    if not is_meta_model(model) or "meta tensor" not in text:
        return None
    return ("the model's forward makes a data-dependent decision (it asks a tensor for a value), which a meta-device "
            "model cannot answer. For a Hugging Face causal LM pass pe.plan.causal_lm_inputs(model) as the example "
            "inputs (a 4-D causal mask: no data-dependent mask checks) and build it with use_cache=False; otherwise "
            "pass a forward_fn that avoids the data-dependent branch, or plan on a small real copy of the architecture")


def meta_aware(error: type):
    """Decorator for a constructor ``__init__(self, model, example_inputs, importance=None, ...)`` (the explorer's
    controller) that makes it plain about meta-device models:

    * ``importance`` is checked (:func:`check_importance`: a criterion that reads weights raises ``error``, saying
      to plan with ``RandomImportance`` and to export the plan) and defaults to :func:`planning_importance`'s choice
      on a meta model (``RandomImportance()``);
    * a failure (``error``) that comes from the forward asking a meta tensor for a value gets the way out appended
      (:func:`meta_trace_hint`);
    * once built on a meta model, the object's notice (``notify(text)`` if it has one, else ``message``) says that
      channels are not ranked and how to take the counts to the real weights.
    """
    def wrap(init):
        @functools.wraps(init)
        def __init__(self, model, example_inputs, importance=None, *args, **kwargs):
            if not isinstance(model, nn.Module) or not is_meta_model(model):
                return init(self, model, example_inputs, importance, *args, **kwargs)
            importance = planning_importance(model, importance, error=error)
            try:
                init(self, model, example_inputs, importance, *args, **kwargs)
            except error as exc:
                hint = meta_trace_hint(exc, model)
                if hint is None:
                    raise
                raise error(f"{exc}. On the meta device: {hint}") from exc
            text = (f"This model is on the meta device (shapes, no weights): channels are not ranked "
                    f"({type(importance).__name__}), only their counts matter. Decide them here, export them with "
                    ".plan() or .export_plan(path), and apply the plan to the model with real weights with "
                    "pe.apply_plan(model, plan, example_inputs=..., importance=...), where the importance ranks them.")
            notify = getattr(self, "notify", None)
            if callable(notify):
                notify(text)
            else:
                self.message = text

        return __init__

    return wrap
