"""Pruning a group is atomic against any exception, ``KeyboardInterrupt`` included, wherever it lands; an undone
pruning can be redone with the very same channels; ``DG.undoable()`` keeps every pruning undoable for a while.

The interrupt is injected deterministically: a trace function raises ``KeyboardInterrupt`` at the k-th line executed
inside the pruning code (``graph/edit/records.py``), for every k, which is where an asynchronous Ctrl-C can land.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.graph import model_history
from prune_explorer.graph.edit import records
from small_models import same_tensors as _same, tensor_state as _state


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()


X = torch.randn(1, 3, 8, 8)


class InterruptAtLine:
    """Raise KeyboardInterrupt at the ``k``-th line executed in functions of ``module`` (while active)."""

    def __init__(self, module, k: int):
        self.file, self.k, self.seen, self.fired = module.__file__, k, 0, False

    def _local(self, frame, event, arg):
        if event == "line" and not self.fired:
            self.seen += 1
            if self.seen == self.k:
                self.fired = True
                raise KeyboardInterrupt
        return self._local

    def _global(self, frame, event, arg):
        if event == "call" and frame.f_code.co_filename == self.file and not self.fired:
            return self._local
        return None

    def __enter__(self):
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)
        return False


def interrupt_everywhere(DG, model, state, decide, prune, check_pruned, stride: int, check_restored=lambda: None):
    """Interrupt ``prune(decide())`` (``decide`` runs before the interrupts are armed; ``prune``: one pruning through ``DG``, whose ``undo_depth`` keeps it undoable) at the 1st,
    (1+stride)-th, ... line it runs in ``graph/edit/records.py``, until past its last line (a run it finishes,
    then undone). After each interrupted run the model is either completely pruned and recorded
    (``check_pruned()``, then undone) or rolled back: either way ``model`` holds exactly the tensors of ``state``
    again (then ``check_restored()``). Returns the last ``k`` and the set of outcomes seen ("pruned", "rolled back")."""
    k, outcomes = 0, set()
    while True:
        k += stride if k else 1
        decided = decide()
        with InterruptAtLine(records, k) as injector:
            try:
                prune(decided)
                interrupted = False
            except KeyboardInterrupt:
                interrupted = True
        if not injector.fired:  # past the last line: every moment was tried
            assert not interrupted and DG.history
            DG.undo()
            return k, outcomes
        assert interrupted
        if DG.history:  # the interrupt landed after the pruning was complete and recorded
            outcomes.add("pruned")
            check_pruned()
            DG.undo()
        else:
            outcomes.add("rolled back")
            assert model_history(model) == []
        assert _same(model, state)  # (after undoing a completed pruning: exactly the original tensors)
        check_restored()


@pytest.mark.parametrize("stride", [pytest.param(7, id="every-7th-line"),
                                    pytest.param(1, id="every-line", marks=pytest.mark.slow)])
def test_an_interrupt_anywhere_in_prune_group_leaves_all_or_nothing(stride):
    model = _net()
    DG = pe.DependencyGraph().build_dependency(model, X)
    DG.undo_depth = 1
    state = _state(model)

    def decide():
        return DG.get_pruning_group(model[0], pe.prune_conv_out_channels, idxs=[1, 5])

    def check_pruned():
        assert model[0].out_channels == 6 and model[3].in_channels == 6 and model[1].num_features == 6
        assert model_history(model) == [DG.history[-1].as_dict()]
        assert model(X).shape == (1, 4, 8, 8)

    def check_restored():
        assert model(X).shape == (1, 4, 8, 8)

    k, outcomes = interrupt_everywhere(DG, model, state, decide, DG.prune_group, check_pruned, stride,
                                       check_restored)
    assert k > 20 and outcomes == {"pruned", "rolled back"}
    DG.get_pruning_group(model[0], pe.prune_conv_out_channels, idxs=[1, 5]).prune()  # the graph still works
    assert model[0].out_channels == 6 and model(X).shape == (1, 4, 8, 8)


def test_an_interrupt_in_a_layer_pruner_rolls_back_and_propagates_as_is():
    class Scale(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.w = nn.Parameter(torch.ones(n))

        def forward(self, x):
            return x * self.w.view(1, -1, 1, 1)

    class ScalePruner(pe.pruner.BasePruningFunc):
        TARGET_MODULES = (Scale,)

        def get_out_channels(self, layer):
            return layer.w.numel()

        get_in_channels = get_out_channels

        def prune_out_channels(self, layer, idxs):
            raise KeyboardInterrupt  # Ctrl-C while this member is being pruned

        prune_in_channels = prune_out_channels

    model = nn.Sequential(nn.Conv2d(3, 8, 1), Scale(8), nn.Conv2d(8, 2, 1))
    DG = pe.DependencyGraph().build_dependency(model, X, customized_pruners={Scale: ScalePruner()})
    state = _state(model)
    group = DG.get_pruning_group(model[0], pe.prune_conv_out_channels, idxs=[0])
    with pytest.raises(KeyboardInterrupt):
        group.prune()
    assert _same(model, state) and DG.history == [] and model_history(model) == []


def test_redo_prunes_the_same_channels_again():
    model = _net()
    DG = pe.DependencyGraph().build_dependency(model, X)
    DG.undo_depth = 2
    rec = DG.get_pruning_group(model[3], pe.prune_conv_out_channels, idxs=[0, 2, 7]).prune()
    pruned = _state(model)
    rec.undo()
    assert model[3].out_channels == 8
    with pytest.raises(pe.PruningError, match="undone"):
        DG.redo(DG.get_pruning_group(model[0], pe.prune_conv_out_channels, idxs=[1]).prune())
    DG.undo()
    again = DG.redo(rec)
    assert again is not rec and DG.history == [again] and again.as_dict() == rec.as_dict()
    assert {k: v[0].shape for k, v in _state(model).items()} == {k: v[0].shape for k, v in pruned.items()}
    assert all(torch.equal(model.state_dict()[k], v[0]) for k, v in pruned.items())
    assert model_history(model) == [rec.as_dict()]


def test_undoable_keeps_every_pruning_undoable_then_trims_to_undo_depth():
    model = _net()
    DG = pe.DependencyGraph().build_dependency(model, X)
    assert DG.undo_depth == 0
    with DG.undoable():
        DG.get_pruning_group(model[0], pe.prune_conv_out_channels, idxs=[0]).prune()
        DG.get_pruning_group(model[3], pe.prune_conv_out_channels, idxs=[0]).prune()
        DG.undo()
        DG.undo()
        assert model[0].out_channels == model[3].out_channels == 8
        DG.get_pruning_group(model[0], pe.prune_conv_out_channels, idxs=[0]).prune()
    with pytest.raises(pe.PruningError, match="cannot be undone"):
        DG.undo()
