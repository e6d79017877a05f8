"""A layer cut on both sides in one batch (``DG.prune_groups``: a conv loses output channels to one group and input
channels to another) is copied once, its two cuts composed (:func:`prune_explorer.layers.edits.composed_cuts`): the
same tensors as cutting group after group, gradients, ``requires_grad`` and channels-last layout kept, undo exact."""

from __future__ import annotations

import copy

import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.layers.edits import LayerEdit, composed_cuts

from test_prune_atomic import _same, _state

X = torch.randn(2, 3, 8, 8)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 10, 3, padding=1), nn.BatchNorm2d(10), nn.ReLU(),
                         nn.Conv2d(10, 6, 1), nn.Flatten(), nn.Linear(6 * 64, 12), nn.ReLU(), nn.Linear(12, 3))


def _groups(DG, model, picks):
    """One group per pruned layer, channels ``picks[i]`` of layer ``model[i]``, decided on the unpruned model."""
    fns = {nn.Conv2d: pe.prune_conv_out_channels, nn.Linear: pe.prune_linear_out_channels}
    return [DG.get_pruning_group(model[i], fns[type(model[i])], idxs=idxs) for i, idxs in picks]


def test_a_layer_cut_on_both_sides_in_one_batch_equals_the_cut_group_after_group():
    model = _net()
    model[3].to(memory_format=torch.channels_last)  # a layout to keep
    model[6].weight.requires_grad_(False)  # a frozen weight stays frozen
    twin = copy.deepcopy(model)
    for m in (model, twin):
        m(X).sum().backward()  # every trainable parameter has a .grad, cut like its parameter
        m.eval()
    picks = [(0, [1, 6]), (3, [0, 4, 9]), (6, [2]), (8, [0, 5, 11])]
    DG = pe.DependencyGraph().build_dependency(model, X)
    DG.undo_depth = 4
    state = _state(model)
    w3, w8 = model[3].weight.detach().clone(), model[8].weight.detach().clone()
    DG.prune_groups(_groups(DG, model, picks))

    DG2 = pe.DependencyGraph().build_dependency(twin, X)
    for group in _groups(DG2, twin, picks):  # the indices of the unpruned model: no later group shifts them
        group.prune()
    for (name, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
        assert torch.equal(p, q) and p.stride() == q.stride() and p.requires_grad == q.requires_grad, name
        assert (p.grad is None) == (q.grad is None) and (p.grad is None or torch.equal(p.grad, q.grad)), name
    for (name, b), (_, c) in zip(model.named_buffers(), twin.named_buffers()):
        assert torch.equal(b, c), name
    # what the composed cut must be: the kept outputs, then the kept inputs, of the original weights
    keep0, keep3 = [i for i in range(8) if i not in (1, 6)], [i for i in range(10) if i not in (0, 4, 9)]
    assert torch.equal(model[3].weight, w3[keep3][:, keep0])
    assert model[3].weight.is_contiguous(memory_format=torch.channels_last) and not model[6].weight.requires_grad
    keep6 = [i for i in range(6) if i != 2]
    cols = torch.tensor([c * 64 + k for c in keep6 for k in range(64)])
    assert torch.equal(model[8].weight, w8[[i for i in range(12) if i not in (0, 5, 11)]][:, cols])
    assert model(X).shape == (2, 3)

    DG.undo()  # exactly the original tensor objects again
    assert _same(model, state)


def test_composed_selections_fill_the_installed_parameter_from_the_original_once():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3)
    w, b = conv.weight, conv.bias
    with composed_cuts([id(conv)]) as cuts:
        LayerEdit().select(conv, "weight", (0, [0, 2, 3])).select(conv, "bias", (0, [0, 2, 3])).apply()
        placeholder = conv.weight
        LayerEdit().select(conv, "weight", (1, [1, 4, 5])).apply()
        installed = conv.weight
        # the second selection composes with the first: both read the original weight, not the first placeholder
        assert placeholder is not installed and tuple(installed.shape) == (3, 3, 3, 3)
        cuts.flush()
    assert conv.weight is installed and isinstance(installed, nn.Parameter)  # filled in place: the same object
    assert torch.equal(installed, w.detach()[[0, 2, 3]][:, [1, 4, 5]]) and torch.equal(conv.bias, b[[0, 2, 3]])
    assert LayerEdit().select(conv, "bias", (0, [1])) is not None and conv.bias.shape == (3,)  # outside: eager


def test_a_derived_tensor_reads_the_values_of_a_pending_cut():
    """A pruner that computes from a tensor (not a plain selection) sees its cut values, never a placeholder's."""
    fc = nn.Linear(4, 6)
    w = fc.weight.detach().clone()
    with composed_cuts([id(fc)]) as cuts:
        LayerEdit().select(fc, "weight", (0, [1, 2, 5])).apply()
        LayerEdit().derive(fc, "weight", lambda t: t * 2).apply()
        cuts.flush()
    assert torch.equal(fc.weight, w[[1, 2, 5]] * 2)


def test_an_interrupt_anywhere_in_the_composed_cut_leaves_all_or_nothing_and_no_composing_behind():
    """Interrupts at every 3rd line run in ``layers/edits.py`` (placeholders, the flush, the composing context) of a
    batch that composes cuts: the model is pruned completely or not at all, and a layer pruned directly afterwards
    gets its values at once (no composing context outlives the batch)."""
    from prune_explorer.graph import model_history
    from prune_explorer.layers import edits

    from test_prune_atomic import InterruptAtLine
    from test_prune_groups import X as DX, Dense, _decided

    torch.manual_seed(0)
    model = Dense().eval()
    DG = pe.DependencyGraph().build_dependency(model, DX)
    DG.undo_depth = 1
    state = _state(model)
    outcomes, k = set(), 0
    while True:
        k += 3 if k else 1
        decided = _decided(DG, model)
        with InterruptAtLine(edits, k) as injector:
            try:
                DG.prune_groups(decided)
            except KeyboardInterrupt:
                pass
        if not injector.fired:
            break
        if DG.history:
            outcomes.add("pruned")
            assert model_history(model) == DG.history[-1].entries() and model(DX).shape == (1, 4, 8, 8)
            DG.undo()
        else:
            outcomes.add("rolled back")
        assert _same(model, state) and torch.is_grad_enabled(), k
    assert k > 30 and "rolled back" in outcomes  # (every line of edits.py runs before the record is complete)
    conv = model.convs[0]  # cut on both sides by the batch: composed there, never again outside it
    w = conv.weight.detach().clone()
    pe.prune_conv_out_channels(conv, [0])
    assert torch.equal(conv.weight, w[1:])
