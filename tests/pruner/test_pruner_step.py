"""BasePruner.step: local targets, iterative schedules, interactive mode, plan/propose, history."""

from __future__ import annotations

import json

import pytest
import torch

import prune_explorer as pe
from prune_explorer.importance import MagnitudeImportance
from prune_explorer.pruner import BasePruner, MagnitudePruner, linear_scheduler

from small_models import ConvStack, TinyResNet, n_params

X = torch.randn(1, 3, 8, 8)


def test_linear_scheduler():
    assert linear_scheduler(0.5, 5) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert pe.pruner.schedulers.linear_scheduler is linear_scheduler


@pytest.mark.parametrize("p", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
def test_quadratic_rule_on_a_plain_conv_stack(p):
    """Removing a fraction p of channels removes 1-(1-p)^2 of the parameters of every conv whose inputs and outputs
    are both pruned: the body of a plain stack (no bias, no BN; the first conv's inputs are the image and the last
    conv's outputs are the model output, so those two convs lose only one side and are left out of the count)."""
    m = ConvStack(width=64, depth=4)
    body0 = sum(c.weight.numel() for c in m.body)
    MagnitudePruner(m, X, MagnitudeImportance(), pruning_ratio=p).step()
    body = sum(c.weight.numel() for c in m.body)
    assert 1 - body / body0 == pytest.approx(1 - (1 - p) ** 2, abs=0.02)
    assert m(X).shape == (1, 4, 8, 8)


def test_local_pruning_keeps_int_initial_times_one_minus_ratio():
    m = TinyResNet()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.3, ignored_layers=[m.fc])
    pr.step()
    assert m.stem.out_channels == int(16 * 0.7)  # the residual stream (stem + every block's conv2)
    assert all(b.conv1.out_channels == int(16 * 0.7) for b in m.blocks)
    assert m.head.out_channels == int(32 * 0.7)
    assert m.fc.in_features == m.head.out_channels and m.fc.out_features == 10
    assert m(X).shape == (1, 10)
    assert pr.skipped == []


def test_iterative_steps_follow_the_initial_channels():
    m = ConvStack(width=20, depth=2)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, iterative_steps=5)
    widths = []
    for k in range(1, 6):
        pr.step()
        assert pr.current_step == k
        widths.append(m.body[0].out_channels)
    assert widths == [int(20 * (1 - 0.1 * k)) for k in range(1, 6)] == [18, 16, 14, 12, 10]
    before = n_params(m)
    with pytest.warns(UserWarning, match="past the last step"):
        pr.step()
    assert n_params(m) == before
    with pytest.warns(UserWarning, match="past the last step"):
        assert list(pr.step(interactive=True)) == []
    pr.reset()
    assert pr.current_step == 0


def test_custom_scheduler_and_bad_scheduler():
    m = ConvStack(width=20, depth=1)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, iterative_steps=2,
                    iterative_pruning_ratio_scheduler=lambda r, s: [0.0, 0.4, r])
    pr.step()
    assert m.body[0].out_channels == 12
    pr.step()
    assert m.body[0].out_channels == 10
    with pytest.raises(pe.pruner.PrunerConfigError, match="scheduler"):
        BasePruner(ConvStack(8, 1), X, MagnitudeImportance(), iterative_steps=2,
                   iterative_pruning_ratio_scheduler=lambda r, s: [0.0, 0.5])


def test_interactive_yields_proposals():
    m = TinyResNet()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, ignored_layers=[m.fc])
    seen = []
    for g in pr.step(interactive=True):
        assert isinstance(g, pe.pruner.Proposal)
        assert g.importance.shape == (len(g.candidate_idxs),)
        assert set(g.proposed_idxs) <= set(g.candidate_idxs)
        assert g.root_idxs == g.proposed_idxs  # the yielded group is the selection
        # the proposal is the lowest-importance half
        order = torch.argsort(g.importance).tolist()
        lowest = sorted(g.candidate_idxs[i] for i in order[: len(g.proposed_idxs)])
        assert g.proposed_idxs == lowest
        assert g.scope == f"local:{g.root_name}" and g.pruning_ratio == pytest.approx(0.5)
        assert "Proposal (step 1" in repr(g)
        seen.append(g.root_name)
        g.prune()
        assert g.was_pruned
    assert seen[0] == "stem" and len(seen) == 5
    assert m(X).shape == (1, 10)
    assert [h["root"] for h in pr.history] == seen and all(h["step"] == 1 for h in pr.history)


def test_interactive_groups_are_computed_after_the_previous_ones():
    m = ConvStack(width=10, depth=2)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5)
    gen = pr.step(interactive=True)
    g1 = next(gen)
    assert g1.root_name == "first"
    g1.prune()
    g2 = next(gen)
    assert g2.root_name == "body.0"
    # g2 was planned against the pruned model: body.0 already reads only 5 channels
    assert m.body[0].in_channels == 5
    assert g2.importance.shape == (10,)
    # the user overrides the proposal with their own channels
    g2.prune(idxs=[0, 1, 2])
    assert m.body[0].out_channels == 7
    g3 = next(gen)  # not accepted: skipped
    with pytest.raises(StopIteration):
        next(gen)
    assert m.body[1].out_channels == 10
    kinds = [(s.root, s.kind) for s in pr.skipped]
    assert kinds == [("body.1", "user")]
    assert g3.was_pruned is False
    hist = pr.history
    assert [h["root"] for h in hist] == ["first", "body.0"]
    assert hist[1]["members"][0]["idxs"] == [0, 1, 2]
    assert json.loads(json.dumps(hist)) == hist
    assert hist[0]["scope"] == "local:first" and hist[0]["pruning_ratio"] == pytest.approx(0.5)
    strip = ("step", "scope", "pruning_ratio")
    assert [{k: v for k, v in h.items() if k not in strip} for h in hist] == pe.graph.model_history(m)


def test_breaking_out_records_the_open_group_as_skipped():
    m = ConvStack(width=10, depth=2)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5)
    for g in pr.step(interactive=True):
        break
    assert [(s.root, s.kind) for s in pr.skipped] == [("first", "user")]
    assert m.first.out_channels == 10


def test_proposal_propose_and_max_removable_match_the_step():
    m = TinyResNet()
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5, ignored_layers=[m.fc], round_to=4)
    groups = list(pr.DG.get_all_groups(ignored_layers=pr.ignored_layers))
    plans = [pr.proposal(g) for g in groups]
    assert n_params(m) == n_params(TinyResNet())  # planning prunes nothing
    assert [p.step for p in plans] == [1] * len(plans)
    g = groups[0]
    assert pr.max_removable(g) == 12  # 16 channels, round_to 4: keep at least 4
    assert pr.propose(g, 5) == pr.propose(g, 4)  # rounded down to keep a multiple of 4
    assert len(pr.propose(g, 100)) == 12
    imp = MagnitudeImportance()(g)
    assert pr.propose(g, 4) == sorted(torch.argsort(imp)[:4].tolist())
    assert plans[0].proposed_idxs == pr.propose(g, plans[0].n_target)
    n = 0
    for y in pr.step(interactive=True):
        # what the generator yields is what proposal() says for that group at that moment
        again = pr.proposal(y.full_group)
        assert (again.proposed_idxs, again.scope, again.step) == (y.proposed_idxs, y.scope, y.step)
        torch.testing.assert_close(again.importance, y.importance)
        y.prune()
        n += 1
    assert n == len(plans) == 5


def test_nothing_to_do_is_recorded_not_hidden():
    m = ConvStack(width=10, depth=1)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.0)
    pr.step()
    assert n_params(m) == n_params(ConvStack(10, 1))
    assert {s.kind for s in pr.skipped} == {"target"} and len(pr.skipped) == 2
    assert all(s.step == 1 and "already reached" in s.reason for s in pr.skipped)


def test_history_follows_undo():
    m = ConvStack(width=10, depth=1)
    pr = BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.5)
    pr.DG.undo_depth = 4
    pr.step()
    assert len(pr.history) == 2 and len(pr.DG.history) == 1  # both groups decided, then cut together: one record
    assert m.first.out_channels == 5 and m.body[0].out_channels == 5
    pr.DG.undo()
    assert pr.history == [] and m.body[0].out_channels == 10 and m.first.out_channels == 10


def test_pruned_model_matches_a_manual_equivalent():
    """Pruning channels whose weights are zero changes nothing in the output."""
    m = ConvStack(width=8, depth=2).eval()
    with torch.no_grad():
        m.body[0].weight[[1, 5]] = 0  # outputs 1 and 5 of body.0 are dead
    x = torch.randn(2, 3, 8, 8)
    ref = m(x)
    pr = BasePruner(m, x, MagnitudeImportance(), pruning_ratio=0.25,
                    ignored_layers=[m.first, m.body[1]])
    pr.step()
    assert m.body[0].out_channels == 6
    torch.testing.assert_close(m(x), ref)


def test_group_reduction_none_is_refused():
    with pytest.raises(pe.pruner.PrunerConfigError, match="group_reduction"):
        BasePruner(ConvStack(8, 1), X, MagnitudeImportance(group_reduction=None))


def test_importance_of_the_wrong_shape_is_reported():
    m = ConvStack(8, 1)
    pr = BasePruner(m, X, lambda g: torch.ones(3), pruning_ratio=0.5)
    with pytest.raises(pe.PruneExplorerError, match="one score per channel"):
        pr.step()
    assert m.first.out_channels == 8


@pytest.mark.parametrize("importance", ["magnitude", "fpgm", "lamp", "bn_scale"])
def test_a_step_emits_no_warning(importance):
    """Pruning must stay silent: a stray warning (e.g. from torch internals on the hot path) clutters every
    notebook cell that prunes, and nbval treats it as changed output."""
    import warnings

    imp = {"magnitude": pe.importance.MagnitudeImportance(p=2), "fpgm": pe.importance.FPGMImportance(),
           "lamp": pe.importance.LAMPImportance(), "bn_scale": pe.importance.BNScaleImportance()}[importance]
    torch.manual_seed(0)
    for interactive in (False, True):
        m = TinyResNet()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pr = MagnitudePruner(m, X, imp, pruning_ratio=0.5, ignored_layers=[m.fc])
            if interactive:
                for g in pr.step(interactive=True):
                    g.prune()
            else:
                pr.step()
        assert n_params(m) < n_params(TinyResNet())
