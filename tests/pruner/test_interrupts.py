"""Interrupts are faults too: a KeyboardInterrupt at any moment of a pruning step or of the explorer's accept-all
leaves a model that runs, whose recorded history is exactly what was done to it, and the user can carry on.

Each trial builds a fresh model, arms a one-shot timer (``signal.setitimer``; its handler raises
``KeyboardInterrupt`` in the main thread, as Ctrl-C or Jupyter's "interrupt kernel" does) at a random moment within
the time an uninterrupted run takes, and then checks:

* the model runs on real inputs;
* replaying the recorded history (``pe.graph.model_history(model)``) on a fresh copy gives the same shapes, and the
  pruner's / explorer's records are the graph's;
* carrying on (``step()`` again, ``accept_all_remaining()`` again) ends with exactly the model an uninterrupted run
  gives, and undoing every pruning gives back the original model.
"""

from __future__ import annotations

import copy
import random
import signal
import time

import pytest
import torch
import torchvision
from torch import nn

import prune_explorer as pe
from prune_explorer.explorer import ExplorerController
from prune_explorer.graph import model_history
from prune_explorer.history import apply_history

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)")


def run_interrupted(fn, delay: float) -> bool:
    """Run ``fn()``; a one-shot timer raises KeyboardInterrupt in it after ``delay`` seconds. True if interrupted."""

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, raise_interrupt)
    grad_enabled = torch.is_grad_enabled()  # an interrupt inside torch.no_grad().__enter__ would leave it off
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, delay)
            fn()
            signal.setitimer(signal.ITIMER_REAL, 0)
            return False
        except KeyboardInterrupt:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return True
    finally:
        signal.signal(signal.SIGALRM, previous)
        torch.set_grad_enabled(grad_enabled)


def tiny_densenet() -> nn.Module:
    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 3), num_init_features=16, bn_size=2,
                                       num_classes=10).eval()


def _shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _same_model(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def _assert_consistent(model, original, x, graph_history, *record_lists):
    with torch.no_grad():
        model(x)  # the model runs
    replayed = apply_history(copy.deepcopy(original), copy.deepcopy(model_history(model)))
    assert _shapes(replayed) == _shapes(model), "the recorded history does not rebuild the model"
    entries = [e for r in graph_history for e in r.entries()]  # a step's batched cut: one entry per group
    assert entries == model_history(model)
    for records in record_lists:
        assert records == entries


def _pruner(model, x, **kwargs):
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       ignored_layers=[model.classifier], **kwargs)
    pruner.DG.undo_depth = 10_000  # so that the test can undo everything afterwards
    return pruner


def _pruner_records(pruner):
    return [{k: v for k, v in e.items() if k not in ("step", "scope", "pruning_ratio")} for e in pruner.history]


def _interrupted_trials(make, run, check, duration: float, trials: int, seed: int) -> None:
    """``trials`` runs interrupted at random moments: ``make()`` builds a fresh subject, ``run(subject)`` is what the
    timer interrupts, ``check(subject)`` what must hold after an interrupt. A run that ends before its timer fires is
    not counted, and later delays are drawn within the time it took (runs get faster once everything is warm)."""
    rng = random.Random(seed)
    done = attempts = 0
    while done < trials and attempts < 4 * trials:
        attempts += 1
        subject = make()
        t0 = time.perf_counter()
        if not run_interrupted(lambda: run(subject), rng.uniform(0.0, duration)):
            duration = min(duration, time.perf_counter() - t0)
            continue
        done += 1
        check(subject)
    assert done == trials, f"only {done} of {attempts} runs were interrupted"


def _prepared(build, x, start, run):
    """``(original, reference, duration, make)``: the model ``build()`` gives, a copy run without interruption
    (``run(start(copy, x))``: the result every interrupted run must reach), how long that run took, and ``make()``
    giving fresh ``(model, start(model, x))`` pairs to interrupt."""
    original = build()
    reference = copy.deepcopy(original)
    subject = start(reference, x)
    t0 = time.perf_counter()
    run(subject)
    duration = time.perf_counter() - t0

    def make():
        model = copy.deepcopy(original)
        return model, start(model, x)

    return original, reference, duration, make


def _interrupt_steps(build, x, trials: int, seed: int) -> None:
    original, reference, duration, make = _prepared(build, x, _pruner, lambda pruner: pruner.step())

    def check(subject):
        model, pruner = subject
        _assert_consistent(model, original, x, pruner.DG.history, _pruner_records(pruner))
        n_done = len(pruner.DG.history)
        if pruner.current_step == 0:  # interrupted before the step completed: it does not count, step() finishes it
            pruner.step()
        else:  # the interrupt landed after the step had completed
            assert pruner.current_step == 1
        assert _same_model(model, reference), "carrying on after the interrupt did not give the uninterrupted result"
        assert _pruner_records(pruner) == model_history(model)
        assert all(e["step"] == 1 for e in pruner.history[n_done:])
        while pruner.DG.history:
            pruner.DG.undo()
        assert _same_model(model, original)

    _interrupted_trials(make, lambda subject: subject[1].step(), check, duration, trials, seed)


def test_interrupting_a_step_at_random_moments_leaves_a_consistent_model():
    x = torch.randn(1, 3, 32, 32)
    _interrupt_steps(tiny_densenet, x, trials=3, seed=0)


@pytest.mark.slow
def test_interrupting_densenet121_steps_at_random_moments():
    x = torch.randn(1, 3, 32, 32)
    _interrupt_steps(lambda: torchvision.models.densenet121().eval(), x, trials=4, seed=1)


def _explorer(model, x):
    return ExplorerController(model, x, pruning_ratio=0.5, ignored_layers=["classifier"])


def _accepted(c):
    return [d.record.as_dict() for d in c.decisions if d.action == "accept"]


def _interrupt_accept_all(build, x, trials: int, seed: int, undo_all: bool = True) -> None:
    original, reference, duration, make = _prepared(build, x, _explorer, lambda c: c.accept_all_remaining())

    def check(subject):
        model, c = subject
        _assert_consistent(model, original, x, c.DG.history, _accepted(c))
        if c.current is not None:  # the walk is on the first undecided group: carry on
            assert c.current.root_name not in {d.root for d in c.decisions}
            c.accept_all_remaining()
        assert _same_model(model, reference)
        assert _accepted(c) == model_history(model)
        if undo_all:
            while any(d.action == "accept" for d in c.decisions):
                c.undo()
            assert _same_model(model, original)
        else:  # the last decision only (each undo walks the groups again)
            c.undo()
            assert _accepted(c) == model_history(model)
            with torch.no_grad():
                model(x)

    _interrupted_trials(make, lambda subject: subject[1].accept_all_remaining(), check, duration, trials, seed)


def test_interrupting_accept_all_at_random_moments_leaves_a_consistent_session():
    _interrupt_accept_all(tiny_densenet, torch.randn(1, 3, 32, 32), trials=3, seed=2)


@pytest.mark.slow
def test_interrupting_densenet121_accept_all_at_random_moments():
    _interrupt_accept_all(lambda: torchvision.models.densenet121().eval(), torch.randn(1, 3, 32, 32), trials=2, seed=3,
                          undo_all=False)
