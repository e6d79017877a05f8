"""ExplorerController: every action, asserted on the model, the history and the figures' data (real pruner)."""

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.explorer import ExplorerController, ExplorerError
from prune_explorer.measure import count_ops_and_params

from explorer_helpers import same_as, snapshot
from small_models import Broken, SmallNet


def n_params(model):
    return sum(p.numel() for p in model.parameters())


class GuardNet(nn.Module):
    """Groups overlap: r's outputs are added to cat(a, b), so r's group also holds a's channels."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 1)
        self.r = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 2, 1)
        self.d = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        a = self.a(x)
        r = self.r(x)  # runs after a, before b: r's group is new (b's channels) and old (a's channels)
        y = r + torch.cat([a, self.b(x)], 1)
        return self.fc(self.d(torch.relu(y)).mean(dim=(2, 3)))


# ------------------------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------------------------
def test_build_figures_and_first_group(small):
    model, x = small
    stages = []
    c = ExplorerController(model, x, pruning_ratio=0.5, progress=lambda s, d, t: stages.append((s, d, t)))
    macs, params = count_ops_and_params(model, x)
    f = c.figures()
    assert f["params_original"] == f["params_now"] == params == n_params(model)
    assert f["macs_original"] == f["macs_now"] == macs
    assert f["params_removed"] == 0.0 and f["groups_done"] == 0 and not f["finished"]
    assert f["groups_left"] == f["groups_total"] == 3
    assert c.ignored_names == ["fc"]  # the final classifier is pre-selected
    assert c.current.root_name == "conv1"
    card = c.card()
    assert card["channels"] == 16 and card["candidates"] == list(range(16))
    assert len(card["importance"]) == 16 and all(math.isfinite(v) for v in card["importance"])
    assert card["selected"] == card["proposed"] and len(card["proposed"]) == 8
    assert card["scope"].startswith("local") and card["pruning_ratio"] == 0.5
    # the proposal is the 8 least important channels, and the threshold separates them from the rest
    imp = dict(zip(card["candidates"], card["importance"]))
    removed = [imp[i] for i in card["selected"]]
    kept = [v for i, v in imp.items() if i not in card["selected"]]
    assert max(removed) <= card["threshold"] <= min(kept)
    names = {r["name"] for r in card["prediction"]["rows"]}
    assert {"conv1", "bn1", "block.conv_a", "block.conv_b", "block.bn_b", "conv2"} <= names
    assert [s for s, _, _ in stages] == ["measuring MACs", "tracing", "grouping", "scoring", "scoring"]
    assert stages[0][1:] == (0, 4) and stages[-1][1:] == (4, 4)


def test_the_walk_reads_the_pruners_proposal_and_never_writes_into_graph_groups(small):
    model, x = small
    c = ExplorerController(model, x)
    g = c.current
    g.items  # materialised: what follows must add or change nothing on the group
    before = dict(vars(g))
    card = c.card()
    c.adjust(n=4)
    c.predict()
    assert type(g) is pe.Group and vars(g).keys() == before.keys() and all(vars(g)[k] is v for k, v in before.items())
    proposal = c.pruner.proposal(g)  # what the walk shows is the pruner's own proposal for that group
    assert card["proposed"] == proposal.proposed_idxs and card["scope"] == proposal.scope
    assert card["importance"] == pytest.approx(proposal.importance.tolist())


def test_explicit_ignored_layers_by_name_and_module(small):
    model, x = small
    c = ExplorerController(model, x, ignored_layers=["fc", model.conv2])
    assert c.ignored_names == ["fc", "conv2"]
    assert [g.root_name for g in c.pruner.get_all_groups()] == ["conv1", "block.conv_a"]


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, float("nan"), "half"])
def test_bad_ratio_is_refused(small, ratio):
    model, x = small
    snap = snapshot(model)
    with pytest.raises(ExplorerError, match=r"\[0, 1\)"):
        ExplorerController(model, x, pruning_ratio=ratio)
    assert same_as(model, snap)


def test_model_that_fails_to_trace():
    model = Broken()
    snap = snapshot(model)
    with pytest.raises(ExplorerError, match="does not run on these example inputs") as err:
        ExplorerController(model, torch.randn(1, 3))
    assert isinstance(err.value, pe.PruneExplorerError)
    assert same_as(model, snap)


def test_unknown_ignored_layer_at_build(small):
    model, x = small
    with pytest.raises(ExplorerError, match="no layer named 'fcc'.*Did you mean 'fc'"):
        ExplorerController(model, x, ignored_layers=["fcc"])


def test_bad_pruner_option_is_explained(small):
    model, x = small
    with pytest.raises(ExplorerError, match="round_to"):
        ExplorerController(model, x, round_to=0)


# ------------------------------------------------------------------------------------------------------------------
# accept / predict
# ------------------------------------------------------------------------------------------------------------------
def test_accept_prunes_as_predicted(small):
    model, x = small
    c = ExplorerController(model, x)
    pred = c.predict()
    before = n_params(model)
    d = c.accept()
    assert d.action == "accept" and d.root == "conv1" and d.n_removed == 8
    assert before - n_params(model) == pred["params_removed"] == d.params_before - d.params_after
    assert model.conv1.out_channels == 8 and model.bn1.num_features == 8
    assert model.block.conv_a.in_channels == 8 and model.block.conv_b.out_channels == 8
    assert model.conv2.in_channels == 8
    assert model(x).shape == (1, 10)
    # per-member rows add up to the total and show the new widths
    rows = {r["name"]: r for r in pred["rows"]}
    assert rows["conv1"]["channels_before"] == 16 and rows["conv1"]["channels_after"] == 8
    assert sum(r["params_removed"] for r in pred["rows"]) == pred["params_removed"]
    # MACs of a CNN are predicted exactly too
    macs, _ = count_ops_and_params(model, x)
    assert c.figures()["macs_now"] == macs == pred["macs_after"]
    # history and figures
    h = c.history
    assert h[0]["action"] == "accept" and h[0]["root"] == "conv1" and h[0]["idxs"] == d.idxs
    assert h[0]["followed_proposal"] is True
    json.dumps(h)
    f = c.figures()
    assert f["groups_accepted"] == 1 and f["params_now"] == n_params(model)
    assert c.current.root_name == "block.conv_a"
    pts = c.curves()["points"]
    assert len(pts["channels_removed"]) == 2 and pts["roots"] == ["(start)", "conv1"]
    assert pts["params_removed"][1] == pytest.approx(1 - n_params(model) / f["params_original"])
    assert 0 < pts["channels_removed"][1] < 1


def test_predictions_are_exact_on_attention_and_grouped(attn, grouped):
    for model, x in (attn, grouped):
        c = ExplorerController(model, x)
        while c.current is not None:
            pred = c.predict()["params_removed"]
            before = n_params(model)
            c.accept()
            assert before - n_params(model) == pred
        out = model(x)
        assert torch.isfinite(out).all()


def test_accept_with_explicit_idxs(small):
    model, x = small
    c = ExplorerController(model, x)
    d = c.accept(idxs=[0, 1, 2])
    assert d.idxs == [0, 1, 2] and model.conv1.out_channels == 13
    assert c.history[0]["followed_proposal"] is False
    # the pruner's own history agrees
    assert c.pruning_history[-1]["root"] == "conv1"


# ------------------------------------------------------------------------------------------------------------------
# adjust
# ------------------------------------------------------------------------------------------------------------------
def test_adjust_by_count_picks_least_important(small):
    model, x = small
    c = ExplorerController(model, x)
    card = c.card()
    order = sorted(zip(card["importance"], card["candidates"]))
    sel = c.adjust(n=3)
    assert sel == sorted(i for _, i in order[:3]) == c.current_idxs
    assert c.card()["follows_proposal"] is False
    assert c.predict()["n_removed"] == 3
    assert c.use_proposal() == card["proposed"] and c.card()["follows_proposal"]
    c.adjust(n=3)
    c.accept()
    assert model.conv1.out_channels == 13


def test_adjust_by_hand_string_and_list(small):
    model, x = small
    c = ExplorerController(model, x)
    assert c.adjust(idxs="5, 3 1") == [1, 3, 5]
    assert c.adjust(idxs=[15, 0]) == [0, 15]
    assert c.current_ratio() == pytest.approx(2 / 16)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=16), "cannot remove 16 channels"),
    (dict(n=-1), "cannot remove -1"),
    (dict(n=2.5), "whole number"),
    (dict(idxs=[3, 16]), r"out of range .* 16 channels"),
    (dict(idxs=[-1]), "out of range"),
    (dict(idxs=[2, 2]), "listed twice"),
    (dict(idxs="1, x"), "could not read"),
    (dict(idxs=[1.5]), "integers"),
    (dict(idxs=list(range(16))), "guards"),
    (dict(), "either n"),
])
def test_adjust_bad_input_changes_nothing(small, kwargs, match):
    model, x = small
    c = ExplorerController(model, x)
    before = list(c.current_idxs)
    snap = snapshot(model)
    with pytest.raises(ExplorerError, match=match):
        c.adjust(**kwargs)
    assert c.current_idxs == before and same_as(model, snap) and c.decisions == []


def test_adjust_respects_units_and_round_to(grouped, small):
    model, x = grouped
    c = ExplorerController(model, x, ignored_layers=["fc", "conv1"])
    assert c.current.root_name == "gconv"
    card = c.card()
    assert card["n_units"] == 4  # 8 channels in units of 2 (2 groups)
    assert c.allowed_counts() == [0, 2, 4, 6]
    with pytest.raises(ExplorerError, match="nearest valid"):
        c.adjust(n=3)
    sel = c.adjust(idxs=[1])  # completed to its whole unit
    assert len(sel) == 2 and 1 in sel and "units" in c.message

    model2, x2 = small
    c2 = ExplorerController(model2, x2, round_to=4)
    assert c2.allowed_counts() == [0, 4, 8, 12]
    with pytest.raises(ExplorerError, match="round_to=4"):
        c2.adjust(n=5)
    assert len(c2.adjust(n=4)) == 4


# ------------------------------------------------------------------------------------------------------------------
# skip / guards / accept all
# ------------------------------------------------------------------------------------------------------------------
def test_skip_leaves_the_model_and_moves_on(small):
    model, x = small
    c = ExplorerController(model, x)
    snap = snapshot(model)
    d = c.skip()
    assert d.action == "skip" and d.root == "conv1" and same_as(model, snap)
    assert c.current.root_name == "block.conv_a"
    f = c.figures()
    assert f["groups_skipped"] == 1 and f["groups_accepted"] == 0 and f["groups_left"] == 2
    assert c.history == [{"action": "skip", "root": "conv1", "root_fn": "prune_conv_out_channels", "channels": 16}]


def test_guard_skipped_group_is_recorded_with_its_reason():
    torch.manual_seed(0)
    model, x = GuardNet(), torch.randn(1, 3, 6, 6)
    c = ExplorerController(model, x)
    assert c.current.root_name == "a"
    c.adjust(n=1)
    c.accept()  # a keeps one channel, and r's group holds it: the single-channel guard skips r
    assert [d.action for d in c.decisions] == ["accept", "guard"]
    assert c.guard_skipped() == [{"root": "r", "reason": "single-channel guard: a.out has 1 channel"}]
    assert c.card()["guard_skipped"] == c.guard_skipped()
    assert c.figures()["groups_guard_skipped"] == 1
    assert c.history[1] == {"action": "guard", "root": "r", "root_fn": "prune_conv_out_channels", "channels": 3,
                            "reason": "single-channel guard: a.out has 1 channel"}
    assert c.current.root_name == "d"
    # undo passes back over the guard skip: r is re-planned after a is restored
    c.undo()
    assert c.current.root_name == "a" and c.decisions == []


def test_importance_that_cannot_score_a_group_is_skipped_with_reason(small):
    class Picky(pe.importance.MagnitudeImportance):
        def __call__(self, group):
            return None if group.root_name == "block.conv_a" else super().__call__(group)

    model, x = small
    c = ExplorerController(model, x, importance=Picky(p=2))
    c.accept()
    assert c.decisions[1].action == "guard" and "returned None" in c.decisions[1].reason
    assert c.current.root_name == "conv2"


def test_accept_all_remaining_and_accept_after_the_end(small):
    model, x = small
    seen = []
    c = ExplorerController(model, x, progress=lambda s, d, t: seen.append((s, d, t)))
    c.skip()
    done = c.accept_all_remaining()
    assert [d.root for d in done] == ["block.conv_a", "conv2"]
    f = c.figures()
    assert f["finished"] and f["groups_left"] == 0 and f["groups_accepted"] == 2 and f["groups_skipped"] == 1
    assert model.block.conv_a.out_channels == 16 and model.conv2.out_channels == 12
    assert model.conv1.out_channels == 16  # skipped
    acc = [s for s in seen if s[0] == "accepting every remaining group"]
    assert acc[0][1] == 0 and acc[-1][1] == acc[-1][2] == 2
    snap = snapshot(model)
    for action in (c.accept, c.skip, c.accept_all_remaining, lambda: c.adjust(n=1)):
        with pytest.raises(ExplorerError, match="walk is over"):
            action()
    assert same_as(model, snap) and len(c.decisions) == 3
    assert c.card() is None


# ------------------------------------------------------------------------------------------------------------------
# undo
# ------------------------------------------------------------------------------------------------------------------
def test_undo_restores_the_model_exactly(small):
    model, x = small
    c = ExplorerController(model, x)
    snap0 = snapshot(model)
    c.accept()
    snap1 = snapshot(model)
    c.adjust(n=4)
    c.accept()
    assert not same_as(model, snap1)
    d = c.undo()
    assert d.root == "block.conv_a"
    assert same_as(model, snap1)
    assert c.current.root_name == "block.conv_a" and len(c.decisions) == 1
    assert c.figures()["params_now"] == n_params(model)
    c.undo()
    assert same_as(model, snap0) and c.decisions == [] and c.current.root_name == "conv1"
    assert c.pruning_history == []
    with pytest.raises(ExplorerError, match="nothing to undo"):
        c.undo()
    assert same_as(model, snap0)
    # the walk goes on normally after undoing
    c.accept()
    assert model.conv1.out_channels == 8


def _same_proposal(a, b) -> bool:
    return (a.proposed_idxs == b.proposed_idxs and a.candidate_idxs == b.candidate_idxs
            and torch.equal(a.importance, b.importance) and a.prune_units == b.prune_units)


def test_undo_reuses_the_proposal_while_nothing_it_was_planned_on_changed(small):
    """After an undo the group's proposal is the one made before the accept (the model is exactly as then), equal to
    planning it again; if a weight changed since it was planned, it is planned again and follows the new weights."""
    model, x = small
    c = ExplorerController(model, x)
    c.accept()
    before = c.proposal
    c.accept()
    c.undo()
    assert c.proposal is not before and c.proposal.importance is before.importance  # reused, as a new proposal
    assert c.proposal.group is c.current and _same_proposal(c.proposal, c.pruner.proposal(c.current))
    # a weight changed in place after the group was planned: the undo plans it again, on the new weights
    root = c.current.root_module
    kept = [i for i in range(root.out_channels) if i not in c.proposal.proposed_idxs]
    with torch.no_grad():
        root.weight[kept] *= 1e-3  # the kept channels become the least important
    c.accept()
    c.undo()
    assert not torch.equal(c.proposal.importance, before.importance)
    assert _same_proposal(c.proposal, c.pruner.proposal(c.current))
    assert set(c.proposal.proposed_idxs) <= set(kept)


def test_undo_after_skips_goes_back_to_the_last_accepted_group(small):
    model, x = small
    c = ExplorerController(model, x)
    snap0 = snapshot(model)
    c.accept()
    c.skip()
    c.skip()
    assert c.current is None
    c.undo()
    assert same_as(model, snap0) and c.current.root_name == "conv1" and c.decisions == []
    assert c.curves()["points"]["roots"] == ["(start)"]


def test_undo_of_everything_after_accept_all(small):
    model, x = small
    c = ExplorerController(model, x)
    snap0 = snapshot(model)
    c.accept_all_remaining()
    for _ in range(3):
        c.undo()
    assert same_as(model, snap0) and c.current.root_name == "conv1"


# ------------------------------------------------------------------------------------------------------------------
# ignore / ratio (rebuild the pruner)
# ------------------------------------------------------------------------------------------------------------------
def test_ignore_rebuilds_the_pruner_and_keeps_decisions(small):
    model, x = small
    c = ExplorerController(model, x)
    d0 = c.accept()
    pruner0 = c.pruner
    snap1 = snapshot(model)
    seen = []
    c.progress = lambda s, d, t: seen.append(s)
    c.ignore("conv2")
    assert c.pruner is not pruner0 and c.ignored_names == ["fc", "conv2"]
    assert seen[0] == "tracing" and seen[-1] == "replaying the decisions"
    assert same_as(model, snap1)  # the accepted group was replayed: same channels removed
    assert [d.root for d in c.decisions] == ["conv1"] and c.decisions[0].idxs == d0.idxs
    assert [g.root_name for g in c.pruner.get_all_groups()] == ["conv1", "block.conv_a"]
    c.accept()
    assert c.current is None  # conv2 is ignored: its group is not in the walk
    assert model.conv2.out_channels == 24
    c.ignore("conv2", False)
    assert c.ignored_names == ["fc"] and c.current.root_name == "conv2"
    # undo works across the rebuilds
    c.undo()
    c.undo()
    assert model.conv1.out_channels == 16 and c.current.root_name == "conv1"


def test_ignoring_an_accepted_root_drops_that_decision(small):
    model, x = small
    c = ExplorerController(model, x)
    c.accept()
    c.ignore("conv1")
    assert model.conv1.out_channels == 16 and c.decisions == []
    assert "dropped 1" in c.message and "conv1" in c.message
    assert c.current.root_name == "block.conv_a"


def test_unknown_ignored_layer_changes_nothing(accepted_once):
    model, c, snap = accepted_once
    pruner = c.pruner
    with pytest.raises(ExplorerError, match="no layer named 'layer9'"):
        c.ignore("layer9")
    with pytest.raises(ExplorerError, match="not a submodule"):
        c.ignore(nn.Conv2d(1, 1, 1))
    assert same_as(model, snap) and c.pruner is pruner and c.ignored_names == ["fc"]
    assert len(c.decisions) == 1


def test_set_ignored_replaces_the_list(small):
    model, x = small
    c = ExplorerController(model, x)
    c.set_ignored(["fc", "block.conv_a"])
    assert c.ignored_names == ["fc", "block.conv_a"]
    assert [g.root_name for g in c.pruner.get_all_groups()] == ["conv1", "conv2"]


def test_set_ratio(accepted_once):
    model, c, snap = accepted_once
    for bad in (1.0, -0.5, "x"):
        with pytest.raises(ExplorerError, match=r"\[0, 1\)"):
            c.set_ratio(bad)
    assert same_as(model, snap) and c.pruning_ratio == 0.5
    c.set_ratio(0.25)
    assert c.pruning_ratio == 0.25 and c.pruner.pruning_ratio == 0.25
    assert same_as(model, snap)  # the user's accepted group is kept as it was
    assert len(c.card()["proposed"]) == 8  # block.conv_a: 32 channels at 0.25
    assert c.figures()["pruning_ratio"] == 0.25


# ------------------------------------------------------------------------------------------------------------------
# sweep / reachable reduction / layers
# ------------------------------------------------------------------------------------------------------------------
def test_sweep_matches_real_uniform_pruning(small):
    model, x = small
    ref = copy.deepcopy(model)
    c = ExplorerController(model, x)
    seen = []
    c.progress = lambda s, d, t: seen.append((s, d, t))
    sw = c.sweep()
    assert sw.ratios == pytest.approx([0.1 * i for i in range(10)])
    assert sw.params_removed[0] == 0.0 and sw.macs_removed[0] == 0.0
    assert all(b > a for a, b in zip(sw.params_removed, sw.params_removed[1:]))
    assert seen[-1] == ("sweep", 10, 10)
    assert c.curves()["sweep"]["params_removed"] == sw.params_removed
    # the real pruner at p = 0.5 on a copy lands on the curve
    p0 = n_params(ref)
    pruner = pe.pruner.BasePruner(ref, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                  ignored_layers=[ref.fc])
    pruner.step()
    m0, _ = count_ops_and_params(model, x)
    m1, p1 = count_ops_and_params(ref, x)
    k = sw.ratios.index(0.5)
    assert sw.params_removed[k] == pytest.approx(1 - p1 / p0, abs=1e-9)
    assert sw.macs_removed[k] == pytest.approx(1 - m1 / m0, abs=1e-9)
    assert sw.channels_removed[k] == pytest.approx(0.5)
    # nothing was pruned by the sweep
    assert n_params(model) == p0


def test_sweep_bends_below_the_quadratic_rule_on_resnet18():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    c = ExplorerController(model, torch.randn(1, 3, 64, 64))
    sw = c.sweep()
    for p, r in zip(sw.ratios[1:], sw.params_removed[1:]):
        assert p < r < 1 - (1 - p) ** 2  # more than linear, less than quadratic (stem and classifier)
    k = sw.ratios.index(0.5)
    assert sw.params[k] == pytest.approx(3.06e6, rel=0.01)  # the resnet18 figure (11.69M -> ~3.06M)
    with pytest.raises(ExplorerError, match="sweep ratios"):
        c.sweep([0.5, 1.0])


def test_reachable_reduction_and_prunable_layers(small):
    model, x = small
    c = ExplorerController(model, x)
    base = c.reachable_reduction()
    assert base["ignored"] == ["fc"] and 0 < base["params_removed"] < 1
    more = c.reachable_reduction(ignored_layers=["fc", "block.conv_a"])
    assert more["params_removed"] < base["params_removed"]
    assert c.sweep([0.5]).params_removed[0] == pytest.approx(base["params_removed"])
    layers = {d["name"]: d for d in c.prunable_layers()}
    assert set(layers) == {"conv1", "block.conv_a", "block.conv_b", "conv2", "fc"}
    assert layers["fc"]["ignored"] and layers["fc"]["prunable_fraction"] == 0.0
    assert layers["conv1"]["channels"] == 16 and not layers["conv1"]["ignored"]
    groups = c.groups_of("bn1")
    assert [g["root"] for g in groups] == ["conv1"] and groups[0]["is_current"]
    with pytest.raises(ExplorerError):
        c.groups_of("nope")


# ------------------------------------------------------------------------------------------------------------------
# results: code() and save()
# ------------------------------------------------------------------------------------------------------------------
def test_code_reproduces_the_pruning(small):
    model, x = small
    c = ExplorerController(model, x)
    c.accept()
    c.skip()
    c.adjust(idxs=[0, 5, 6])
    c.accept()
    src = c.code(model_expr="make_model()")
    assert "STEPS" in src and "ipywidgets" not in src and len(src.splitlines()) < 40

    def make_model():
        torch.manual_seed(0)
        return SmallNet().eval()

    ns = {"make_model": make_model}
    exec(compile(src, "<explorer code>", "exec"), ns)
    replayed = ns["model"]
    sd, sd2 = model.state_dict(), replayed.state_dict()
    assert set(sd) == set(sd2) and all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert torch.allclose(model(x), replayed(x))


def test_save_writes_a_safe_file(small, tmp_path):
    model, x = small
    c = ExplorerController(model, x)
    c.accept()
    path = tmp_path / "pruned.pth"
    c.save(path)
    assert path.is_file() and path.stat().st_size > 0
    try:
        from prune_explorer.history import load_pruned
    except ImportError:  # prune_explorer.history not available: the explorer writes its fallback format
        load_pruned = None
    if load_pruned is not None:
        torch.manual_seed(1)
        fresh = SmallNet().eval()
        load_pruned(fresh, path)
        assert fresh.conv1.out_channels == 8
        sd, sd2 = model.state_dict(), fresh.state_dict()
        assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    else:  # the fallback format loads with weights_only=True
        obj = torch.load(path, weights_only=True)
        assert json.loads(obj["history"])[0]["root"] == "conv1"


def test_listeners_see_every_change(small):
    model, x = small
    c = ExplorerController(model, x)
    events = []
    c.subscribe(events.append)
    c.accept()
    c.adjust(n=2)
    c.skip()
    c.undo()
    c.sweep([0.0, 0.5])
    c.ignore("conv2")
    c.set_ratio(0.3)
    c.accept_all_remaining()
    assert events == ["accept", "adjust", "skip", "undo", "sweep", "ignore", "ratio", "accept_all"]
    assert "ExplorerController(SmallNet" in repr(c)


class HeadsNet(nn.Module):
    """Separate q/k/v/o projections (2 heads of ``self.head_dim``): the pruner walks an attention group."""

    def __init__(self):
        super().__init__()
        self.head_dim = 8
        self.q, self.k, self.v, self.o = (nn.Linear(16, 16) for _ in range(4))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (f(x).view(b, t, -1, self.head_dim).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1) @ v
        return self.head((x + self.o(a.transpose(1, 2).reshape(b, t, -1))).mean(1))


def test_attention_head_groups_predict_undo_and_code():
    def make():
        torch.manual_seed(0)
        return HeadsNet()

    model, x = make(), torch.randn(2, 5, 16)
    c = ExplorerController(model, x, num_heads={model.q: 2, model.k: 2, model.v: 2})
    assert c.current.root_name == "q" and {r["name"] for r in c.predict()["rows"]} == {"q", "k", "v", "o"}
    snap = snapshot(model)
    before = n_params(model)
    pred = c.predict()["params_removed"]
    c.accept()
    assert before - n_params(model) == pred
    assert model.head_dim < 8 and model(x).shape == (2, 3)
    src = c.code("make()")
    ns = {"make": make}
    exec(compile(src, "<explorer code>", "exec"), ns)
    sd, sd2 = model.state_dict(), ns["model"].state_dict()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    c.undo()
    assert same_as(model, snap)


class Branchy(nn.Module):
    """Data-dependent control flow: cannot run on meta tensors, so MACs are counted on the real model."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        if y.sum() > -1:  # always true, but needs the data
            y = y * 2
        return self.fc(y.mean(dim=(2, 3)))


def test_macs_of_a_model_with_data_dependent_control_flow():
    torch.manual_seed(0)
    model, x = Branchy(), torch.randn(1, 3, 8, 8)
    c = ExplorerController(model, x)
    macs, _ = count_ops_and_params(model, x)
    assert c.figures()["macs_original"] == macs and c.ignored_names == ["fc"]
    c.accept()
    assert c.figures()["macs_now"] == count_ops_and_params(model, x)[0]


def test_unignoring_an_earlier_layer_explains_which_decisions_were_dropped():
    import torch
    import torchvision

    from prune_explorer.explorer import ExplorerController

    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    c = ExplorerController(m, torch.randn(1, 3, 64, 64), pruning_ratio=0.5)
    c.ignore("conv1")
    c.accept()
    c.accept()
    c.ignore("conv1", False)
    assert "now-ignored" not in c.message
    assert "after conv1" in c.message and "layer1.0.conv1" in c.message
    assert c.current.root_name == "conv1"  # the walk restarts at the group that is walked first now
    assert m.layer1[0].conv1.out_channels == 64  # nothing half-applied
