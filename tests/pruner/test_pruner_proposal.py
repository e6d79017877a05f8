"""Proposal: what step(interactive=True) yields behaves like a Torch-Pruning group, and planning never writes into
the graph's objects."""

from __future__ import annotations

import pytest
import torch

import prune_explorer as pe
from prune_explorer.graph import Group
from prune_explorer.importance import MagnitudeImportance
from prune_explorer.pruner import BasePruner, ExplicitGroup, Proposal

from small_models import AttnModel, ConvStack, TinyResNet

X = torch.randn(1, 3, 8, 8)


def test_interactive_loop_as_torch_pruning_users_write_it():
    m = TinyResNet()
    pr = BasePruner(m, X, MagnitudeImportance(p=2), pruning_ratio=0.5, ignored_layers=[m.fc], iterative_steps=2)
    widths = []
    for _ in range(2):
        for group in pr.step(interactive=True):
            text = str(group)  # print(group)
            assert text.startswith("Proposal (step") and group.root_name in text and text == group.details()
            members = [(dep, idxs) for dep, idxs in group]  # for dep, idxs in group
            assert len(members) == len(group) > 1 and group[0].dep is members[0][0]
            assert group[0].dep.target.module is group.root_module  # Torch-Pruning's dep.target.module
            assert sorted(members[0][1]) == group.proposed_idxs == group.root_idxs
            n_before = group.root_space.current_size
            group.prune()
            assert group.root_space.current_size == n_before - len(group.proposed_idxs)
        widths.append(m.stem.out_channels)
    assert widths == [12, 8] and m(X).shape == (1, 10)  # 16 -> 12 -> 8 channels over two steps
    assert pr.skipped == []


@pytest.mark.parametrize("call", ["prune", "call", "exec"])
def test_every_spelling_of_prune_records_the_proposal(call):
    m = ConvStack(width=8, depth=1)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5)
    for group in pr.step(interactive=True):
        if call == "exec":
            with pytest.warns(DeprecationWarning, match="use group.prune"):
                group.exec()
        else:
            group() if call == "call" else group.prune()
        assert group.was_pruned
    assert pr.skipped == [] and [h["step"] for h in pr.history] == [1, 1]
    assert m.first.out_channels == m.body[0].out_channels == 4


def test_soft_pruning_reads_the_members_without_pruning():
    """Torch-Pruning's soft-pruning example zeroes the proposed weights instead of calling group.prune()."""
    m = ConvStack(width=8, depth=2)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5)
    zeroed = 0
    for group in pr.step(interactive=True):
        for dep, idxs in group:
            if dep.pruning_fn in [pe.prune_conv_out_channels]:  # as Torch-Pruning's example compares
                dep.target.module.weight.data[idxs] = 0
                zeroed += len(idxs)
    assert zeroed == 3 * 4  # first and body.0/1: half of 8 output channels each
    assert [c.out_channels for c in m.body] == [8, 8]  # nothing pruned
    assert [s.kind for s in pr.skipped] == [pe.pruner.guards.NOT_ACCEPTED] * 3


def test_planning_leaves_the_graph_group_as_it_was():
    m = TinyResNet()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, ignored_layers=[m.fc])
    group = next(iter(pr.DG.get_all_groups(ignored_layers=[m.fc])))
    group.items  # materialised before, so the comparison is not about the lazy cache
    before = dict(vars(group))
    proposal = pr.proposal(group)
    assert pr.plan(group).proposed_idxs == proposal.proposed_idxs  # the former name
    assert isinstance(proposal, Proposal) and proposal.group is group and type(group) is Group
    assert vars(group).keys() == before.keys() and all(vars(group)[k] is v for k, v in before.items())
    # the proposal's own choice and the caller's choice both prune through the whole group
    assert pr.propose(proposal, 4) == pr.propose(group, 4)
    rec = proposal.prune(idxs=[0, 1])
    assert rec is proposal.record and proposal.was_pruned and m.stem.out_channels == 14
    assert pr.history[-1]["scope"] == proposal.scope and pr.history[-1]["step"] == proposal.step


def test_a_skipped_proposal_says_why_and_prunes_nothing():
    m = ConvStack(width=8, depth=1)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.0)
    proposal = pr.proposal(next(iter(pr.DG.get_all_groups())))
    assert proposal.proposed_idxs == [] and proposal.skip_kind == "target"
    assert "nothing proposed" in proposal.details() and proposal.prune() is None and not proposal.was_pruned


def test_attention_proposal_is_a_graph_group_of_attention_kind():
    m = AttnModel()
    a = m.attn
    pr = BasePruner(m, torch.randn(2, 5, 8), MagnitudeImportance(), pruning_ratio=0.5, ignored_layers=[m.fc],
                    num_heads={a.q: 4, a.k: 4, a.v: 4})
    proposal = next(p for p in pr.step(interactive=True) if p.group.kind == "attention-dims")
    assert [it.dep.target.name for it in proposal][:2] == ["attn.q", "attn.k"]
    proposal.prune()
    assert a.q.out_features == 16 and a.k.out_features == 16


def test_private_names_are_not_forwarded_to_the_group():
    m = ConvStack(width=8, depth=1)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5)
    proposal = pr.proposal(next(iter(pr.DG.get_all_groups())))
    with pytest.raises(AttributeError):
        proposal._graph
