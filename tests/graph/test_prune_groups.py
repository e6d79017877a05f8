"""Several decided groups cut at once (``DG.prune_groups``): one cut per member, one record, the same model as
pruning them one after another, an exact undo, all-or-nothing against an interrupt, and history entries that replay."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.graph import model_history

from test_prune_atomic import _same, _state, interrupt_everywhere


class Dense(nn.Module):
    """A dense block: every conv reads the concatenation of the stem and every earlier conv's output."""

    def __init__(self, growth: int = 6, depth: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(8 + k * growth, growth, 3, padding=1) for k in range(depth))
        self.head = nn.Conv2d(8 + depth * growth, 4, 1)

    def forward(self, x):
        feats = [torch.relu(self.stem(x))]
        for c in self.convs:
            feats.append(torch.relu(c(torch.cat(feats, 1))))
        return self.head(torch.cat(feats, 1))


X = torch.randn(1, 3, 8, 8)


def _decided(DG, model):
    """Every group with its first and last channel selected, decided on the unpruned model."""
    groups = list(DG.get_all_groups(ignored_layers=[model.head]))
    return [g.select([g.root_idxs[0], g.root_idxs[-1]]) for g in groups]


def _roots(groups):
    return [(g.root_space.name, list(g.root_idxs)) for g in groups]


def test_one_cut_one_record_same_model_as_one_after_another():
    torch.manual_seed(0)
    model = Dense().eval()
    twin = copy.deepcopy(model)
    DG = pe.DependencyGraph().build_dependency(model, X)
    DG.undo_depth = 8
    state = _state(model)
    groups = _decided(DG, model)
    assert len(groups) == 4
    rec = DG.prune_groups(groups)
    assert DG.history == [rec] and len(rec.entries()) == 4 and rec.roots == ["stem", "convs.0", "convs.1", "convs.2"]
    assert model.convs[2].in_channels == 8 + 2 * 6 - 6 and model.head.in_channels == 8 + 3 * 6 - 8
    # the same channels pruned group by group on a twin: the same tensors
    DG2 = pe.DependencyGraph().build_dependency(twin, X)
    for name, root_idxs in _roots(groups):
        g = next(g for g in DG2.get_all_groups(ignored_layers=[twin.head]) if g.root_space.name == name)
        kept = [int(g.root_idxs[i]) for i in range(len(g.root_idxs))]
        g.select([kept[0], kept[-1]]).prune()
    assert model_history(twin) == model_history(model) == rec.entries()
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), k
    assert DG.pruning_history() == DG2.pruning_history()
    # the entries replay on a fresh model
    torch.manual_seed(0)
    fresh = Dense().eval()
    pe.history.apply_history(fresh, model_history(model))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert model(X).shape == (1, 4, 8, 8)
    DG.undo()  # one undo restores every group, bit-exactly (the very same tensors)
    assert _same(model, state) and model_history(model) == [] and DG.history == []
    redone = DG.redo(rec)
    assert model_history(model) == rec.entries() and redone.parts is not None
    parts = DG.split_record(redone)  # one record per group, same model
    assert [r.root for r in parts] == rec.roots and DG.history == parts
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    for r in reversed(parts):
        DG.undo(r)
    assert _same(model, state)


def test_an_interrupt_anywhere_in_prune_groups_leaves_all_or_nothing():
    torch.manual_seed(0)
    model = Dense().eval()
    DG = pe.DependencyGraph().build_dependency(model, X)
    DG.undo_depth = 1
    state = _state(model)

    def prune(groups):
        DG.prune_groups(groups)
        assert len(DG.history) == 1  # one record for every group (when no interrupt stopped it)

    def check_pruned():
        assert model_history(model) == DG.history[-1].entries() and model(X).shape == (1, 4, 8, 8)

    _, outcomes = interrupt_everywhere(DG, model, state, lambda: _decided(DG, model), prune, check_pruned, stride=11)
    assert outcomes == {"pruned", "rolled back"}


def test_groups_that_share_channels_are_refused_and_nothing_changes():
    torch.manual_seed(0)
    model = Dense().eval()
    DG = pe.DependencyGraph().build_dependency(model, X)
    state = _state(model)
    g = _decided(DG, model)[0]
    with pytest.raises(pe.errors.PruningError, match="share channels"):
        DG.prune_groups([g, g])
    assert _same(model, state) and DG.history == []


class TwoBranches(nn.Module):
    """Two independent two-layer branches added at the end: their groups share no layer."""

    def __init__(self):
        super().__init__()
        self.a1, self.a2 = nn.Linear(6, 8), nn.Linear(8, 3)
        self.b1, self.b2 = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.a2(torch.relu(self.a1(x))) + self.b2(torch.relu(self.b1(x)))


def test_step_cuts_independent_groups_once_with_the_choices_of_one_after_another():
    torch.manual_seed(0)
    model = TwoBranches()
    twin = copy.deepcopy(model)
    x = torch.randn(2, 6)
    pr = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5)
    pr.DG.undo_depth = 1
    state = _state(model)
    pr.step()
    assert len(pr.DG.history) == 1 and [h["root"] for h in pr.history] == ["a1", "b1"]
    assert all(h["step"] == 1 and h["scope"].startswith("local:") for h in pr.history)
    assert model.a1.out_features == model.b1.out_features == 4 and model(x).shape == (2, 3)
    # the same channels as group after group, in the interactive loop
    pr2 = pe.pruner.MagnitudePruner(twin, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5)
    for g in pr2.step(interactive=True):
        g.prune()
    assert len(pr2.DG.history) == 2 and pr2.history == pr.history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    pr.DG.undo()
    assert _same(model, state)


def test_groups_in_any_order_with_unsorted_indices_give_the_entries_of_one_after_another():
    """Later groups first (a shared space's groups do not remove ascending runs) and indices listed backwards: the
    entries and tensors are still those of pruning the groups one after another, in the order given."""
    torch.manual_seed(0)
    model = Dense(growth=5, depth=4).eval()
    twin = copy.deepcopy(model)
    DG = pe.DependencyGraph().build_dependency(model, X)
    groups = list(DG.get_all_groups(ignored_layers=[model.head]))[::-1]
    picks = [(g.root_space.name, [int(g.root_idxs[-1]), int(g.root_idxs[1]), int(g.root_idxs[0])]) for g in groups]
    rec = DG.prune_groups([g.select(idxs) for g, (_, idxs) in zip(groups, picks)])
    DG2 = pe.DependencyGraph().build_dependency(twin, X)
    for name, idxs in picks:  # the root channels are not renumbered by the other groups (each has its own root)
        g = next(g for g in DG2.get_all_groups(ignored_layers=[twin.head]) if g.root_space.name == name)
        g.select(idxs).prune()
    assert model_history(twin) == model_history(model) == rec.entries()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    assert [[ids.tolist() for _, ids in p["plan"]] for p in rec.parts] == \
        [[ids.tolist() for _, ids in r._plan] for r in DG2.history]
