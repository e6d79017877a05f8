"""Recovery: a short distillation of a pruned model from the unpruned one, on calibration data.

    teacher = copy.deepcopy(model)            # before pruning
    ...                                       # prune model
    result = pe.recover(model, teacher, batches, steps=200, lr=1e-3)
    print(result.first_loss, "->", result.last_loss)

Each step runs a batch (cycling through the data) through both models and minimises the KL divergence
``KL(softmax(t / T) || softmax(s / T)) * T^2`` between the teacher's and the student's output logits (a tensor output,
or an output's ``.logits``; the last dim is the class / vocabulary dim), averaged over every other position, with
AdamW. The teacher runs in eval mode without gradients; the student's train / eval flags are restored afterwards.
It runs where the student's parameters are (CPU or GPU), shows a progress bar, and is interruptible: Ctrl-C (or
Jupyter's "interrupt kernel") stops after the step in progress, the model stays valid (every optimizer step
updates whole tensors) and the result says ``interrupted=True``. One function, not a training framework: for a
longer fine-tuning, use your own loop.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .calibration import Calibration, as_calibration
from .errors import PruneExplorerError
from .inputs import call_model
from .validation import is_positive_int

__all__ = ["recover", "RecoveryResult", "distillation_loss", "kept_channels", "mean_distillation_loss"]


def kept_channels(graph, layer, side: str = "in") -> torch.Tensor:
    """The original channel indices ``layer``'s ``side`` still has, from the dependency graph that pruned it (e.g.
    ``kept_channels(pruner.DG, model.model.norm)``: the residual stream's channels a Llama kept)."""
    owners = [layer] + ([layer.weight] if isinstance(getattr(layer, "weight", None), torch.Tensor) else [])
    for owner in owners:  # a norm traced by its functional call owns its channels through its weight
        for s in graph.spaces_of(owner):
            if s.side == side or s.passthrough:
                return torch.as_tensor(s.alive_idx, dtype=torch.long)
    raise PruneExplorerError(f"kept_channels: {type(layer).__name__} has no {side!r} channels in this graph")


@dataclass
class RecoveryResult:
    """What :func:`recover` did: ``steps`` run, the loss of each (``losses``), whether it was ``interrupted``."""

    steps: int
    losses: List[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else math.nan

    @property
    def last_loss(self) -> float:
        """Mean loss of the last tenth of the steps (at least one)."""
        if not self.losses:
            return math.nan
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return sum(tail) / len(tail)


def _logits(output) -> torch.Tensor:
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        logits = output[0]
    if logits is None and isinstance(output, torch.Tensor):
        logits = output
    if not isinstance(logits, torch.Tensor):
        raise PruneExplorerError(f"recover: the model's output ({type(output).__name__}) has no logits; pass "
                                 "output_fn=lambda output: <the logits tensor>")
    return logits


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """``KL(teacher || student)`` of the softmax over the last dim at ``temperature``, times ``T^2``, averaged over
    the other positions (float32)."""
    t = temperature
    s = F.log_softmax(student_logits.float() / t, dim=-1).reshape(-1, student_logits.shape[-1])
    p = F.log_softmax(teacher_logits.float() / t, dim=-1).reshape(-1, teacher_logits.shape[-1])
    return F.kl_div(s, p, log_target=True, reduction="batchmean") * (t * t)


def recover(model: nn.Module, teacher: nn.Module, data, steps: int = 200, lr: float = 1e-3,
            weight_decay: float = 0.0, temperature: float = 1.0, output_fn: Optional[Callable] = None,
            progress: bool = True, forward_fn: Optional[Callable] = None, hidden_weight: float = 0.0,
            hidden_channels: Optional[torch.Tensor] = None,
            callback: Optional[Callable[[int, int, float], None]] = None) -> RecoveryResult:
    """Distil ``teacher`` into the pruned ``model`` for ``steps`` steps (see the module docstring).

    Args:
        model: the pruned model (trained in place).
        teacher: the unpruned model (unchanged; it may live on the same device as ``model``).
        data: a :class:`~prune_explorer.calibration.Calibration` or an iterable of example inputs (labels, if the
            batches carry them, are not used), cycled as often as needed.
        steps, lr, weight_decay: the AdamW schedule (constant learning rate).
        temperature: the distillation temperature ``T``.
        output_fn: ``output_fn(output) -> logits`` for outputs whose logits are not the tensor or ``.logits``.
        hidden_weight, hidden_channels: hidden-state matching (module docstring); ``hidden_channels`` None: the
            student's last hidden state has the teacher's width.
        callback: ``callback(steps done, steps, loss)`` after every step (e.g. a progress bar of your own).
    """
    if not is_positive_int(steps):
        raise PruneExplorerError(f"recover: steps={steps!r} must be a positive int")
    if model is teacher:
        raise PruneExplorerError("recover: the teacher is the model itself; pass a copy made before pruning "
                                 "(copy.deepcopy(model))")
    cal: Calibration = as_calibration(data)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise PruneExplorerError("recover: the model has no trainable parameter (requires_grad=False everywhere)")
    device = params[0].device
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    out_fn = output_fn or _logits
    flags = [(m, m.training) for m in model.modules()]
    t_flags = [(m, m.training) for m in teacher.modules()]
    result = RecoveryResult(steps=0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="recovering", leave=False)
    model.train()
    teacher.eval()
    try:
        batches = itertools.cycle(list(cal.batches())) if isinstance(cal.data, (list, tuple)) else \
            _cycle(cal)
        for _ in range(steps):
            batch = cal.to(next(batches), device)
            inputs = cal.inputs_of(batch)
            if hidden_weight and isinstance(inputs, dict):
                inputs = dict(inputs, output_hidden_states=True)
            elif hidden_weight and isinstance(inputs, torch.Tensor):
                inputs = {"input_ids": inputs, "output_hidden_states": True}
            with torch.no_grad():
                t_out = call_model(teacher, inputs, forward_fn)
            s_out = call_model(model, inputs, forward_fn)
            loss = distillation_loss(out_fn(s_out), out_fn(t_out), temperature)
            if hidden_weight:
                loss = loss + hidden_weight * _hidden_loss(s_out, t_out, hidden_channels)
            if not torch.isfinite(loss):
                raise PruneExplorerError(f"recover: the distillation loss became {loss.item()} at step "
                                         f"{result.steps + 1}; lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            result.steps += 1
            result.losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if callback is not None:
                callback(result.steps, steps, result.losses[-1])
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        opt.zero_grad(set_to_none=True)
        for m, training in flags + t_flags:
            m.training = training
        if bar is not None:
            bar.close()
    return result


def mean_distillation_loss(model: nn.Module, teacher: nn.Module, data, num_batches: int = 4,
                           temperature: float = 1.0, output_fn: Optional[Callable] = None,
                           forward_fn: Optional[Callable] = None) -> float:
    """The distillation loss of :func:`recover` (KL of the teacher's to the model's output distribution, nats per
    position) averaged over the first ``num_batches`` batches of ``data``, without gradients, both models in eval
    mode (their flags restored). 0 for a model that equals its teacher."""
    cal: Calibration = as_calibration(data)
    out_fn = output_fn or _logits
    flags = [(m, m.training) for m in list(model.modules()) + list(teacher.modules())]
    total, n = 0.0, 0
    try:
        model.eval()
        teacher.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            for batch in itertools.islice(cal.batches(), num_batches):
                inputs = cal.inputs_of(cal.to(batch, device))
                loss = distillation_loss(out_fn(call_model(model, inputs, forward_fn)),
                                         out_fn(call_model(teacher, inputs, forward_fn)), temperature)
                total += float(loss)
                n += 1
    finally:
        for m, training in flags:
            m.training = training
    if n == 0:
        raise PruneExplorerError("the calibration data yielded no batch")
    return total / n


def _hidden_loss(s_out, t_out, channels) -> torch.Tensor:
    hs, ht = getattr(s_out, "hidden_states", None), getattr(t_out, "hidden_states", None)
    if not hs or not ht:
        raise PruneExplorerError("recover: hidden_weight > 0 needs outputs with .hidden_states (a Hugging Face model "
                                 "called with input_ids)")
    s_h, t_h = hs[-1].float(), ht[-1].float()
    if channels is not None:
        t_h = t_h.index_select(-1, channels.to(t_h.device))
    if s_h.shape != t_h.shape:
        raise PruneExplorerError(f"recover: the student's last hidden state {tuple(s_h.shape)} does not match the "
                                 f"teacher's kept channels {tuple(t_h.shape)}; pass hidden_channels="
                                 "kept_channels(pruner.DG, <the final norm>)")
    return F.mse_loss(s_h, t_h)


def _cycle(cal: Calibration):
    while True:
        n = 0
        for batch in cal.batches():
            n += 1
            yield batch
        if n == 0:
            raise PruneExplorerError("recover: the calibration data yielded no batch")
