"""Calibrated criteria on a streamed checkpoint: the calibration pass run one decoder block at a time.

A calibrated criterion (``WandaImportance``, ``FluctuationImportance``, any :mod:`prune_explorer.calibration`
collector) gathers statistics with forward hooks while calibration data runs through the model
(``imp.calibrate(model, Calibration(batches))``, on the unpruned model, before the plan is applied). Here the same
hooks sit on the meta model's layers and the pass runs block-major: the embeddings run every batch up to the first
decoder block (whose inputs, with the attention mask and rotary tables the model computes, are captured there), then
each block is loaded and runs every batch, its outputs becoming the next block's inputs, then the final norm and
``lm_head``. Every layer sees the same inputs, batch after batch in the same order, as in the whole-model pass, so
the statistics are the same; memory: one block plus the calibration activations (``[tokens, hidden]`` per batch).

Requires every decoder block to be called with the same arguments (no per-layer sliding-window masks).
"""

from __future__ import annotations

from typing import Callable, List, Optional

import torch
import torch.nn as nn

from ..calibration.data import as_calibration
from ..inputs import call_model
from .errors import StreamError

__all__ = ["stream_calibrate", "decoder_layers"]


class _Reached(Exception):
    """Raised by the stand-in of the first decoder block once its inputs are captured."""


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks (``model.model.layers``) of a causal language model."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise StreamError(f"{type(model).__name__} has no model.layers list of decoder blocks")
    return layers


def _check_uniform_layers(model: nn.Module) -> None:
    cfg = model.config
    types = set(getattr(cfg, "layer_types", None) or [])
    if len(types) > 1 or (getattr(cfg, "use_sliding_window", False) and getattr(cfg, "sliding_window", None)):
        raise StreamError("calibrated streaming needs every decoder block called with the same mask; this config "
                          f"mixes attention types ({sorted(types) or 'sliding window'}). Fix: use a weight criterion")


def _real_buffers(model: nn.Module, device) -> list:
    """Replace modules whose buffers are on the meta device and can be rebuilt from the config (rotary tables) by
    real ones; returns ``[(parent, name, meta module)]`` to put back."""
    swapped = []
    for name, mod in list(model.named_modules()):
        if any(b.device.type == "meta" for b in mod.buffers(recurse=False)):
            parent_name, _, leaf = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            try:
                with torch.device(device):
                    real = type(mod)(config=model.config)
            except TypeError as exc:
                raise StreamError(f"{name} ({type(mod).__name__}) holds computed buffers that cannot be rebuilt "
                                  "from the config for calibration") from exc
            setattr(parent, leaf, real)
            swapped.append((parent, leaf, mod))
    return swapped


def _detached(x):
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, tuple):
        return tuple(_detached(v) for v in x)
    if isinstance(x, list):
        return [_detached(v) for v in x]
    if isinstance(x, dict):
        return {k: _detached(v) for k, v in x.items()}
    return x


def stream_calibrate(model: nn.Module, calibration, collectors: List, swapper, device="cpu",
                     progress: Optional[Callable[[int, int], None]] = None) -> int:
    """Run ``calibration`` through the meta ``model`` block by block with ``collectors`` attached (module doc),
    loading each block's weights with ``swapper`` (:class:`~.scoring.WeightSwapper`); returns the batches run."""
    _check_uniform_layers(model)
    cal = as_calibration(calibration)
    layers = decoder_layers(model)
    names = {n: [f"{n}.{p}" for p, _ in m.named_parameters()] for n, m in model.named_modules()}
    prefix = next(n for n, m in model.named_modules() if m is layers)
    outside = [n for n, _ in model.named_parameters() if not n.startswith(prefix + ".")]
    captured = []

    def stand_in(*args, **kwargs):
        captured.append([list(_detached(args)), _detached(kwargs)])
        raise _Reached

    put_back = _real_buffers(model, device)
    first = layers[0]
    for c in collectors:
        c.attach(model)
    try:
        with torch.no_grad():
            model.eval()
            first.forward = stand_in
            try:
                with swapper.loaded([n for n in outside if "embed" in n]):
                    for batch in cal.batches():
                        try:
                            call_model(model, cal.inputs_of(cal.to(batch, device)))
                        except _Reached:
                            continue
                        raise StreamError("the model returned before reaching its first decoder block")
            finally:
                del first.forward
            for i, layer in enumerate(layers):
                with swapper.loaded(names[f"{prefix}.{i}"]):
                    for args, kwargs in captured:
                        out = layer(*args, **kwargs)
                        hidden = out[0] if isinstance(out, (tuple, list)) else out
                        if args:
                            args[0] = hidden
                        else:
                            kwargs["hidden_states"] = hidden
                if progress is not None:
                    progress(i + 1, len(layers))
            norm, head = model.model.norm, model.get_output_embeddings()
            head_names = [n for m in (norm, head) for n in swapper.tensor_names(m)]
            with swapper.loaded(head_names):
                for args, kwargs in captured:
                    hidden = args[0] if args else kwargs["hidden_states"]
                    head(norm(hidden))
    finally:
        for c in collectors:
            c.detach()
        for parent, leaf, mod in put_back:
            setattr(parent, leaf, mod)
    return len(captured)
