"""Depth groups and Recover in the explorer, driven through the controller: a depth group's card (block, score,
parameters, MACs), the graph highlighting the block, accept / skip / undo exactly, width cuts before and after,
Recover (progress, metric before / after, undone exactly; a clear refusal without calibration data), and the
downloaded script replaying depth decisions (torchvision ResNet-18 and a Hugging Face Llama, random weights)."""

import pytest
import torch
import torch.nn as nn
import torchvision

from explorer_helpers import same_as, snapshot
from prune_explorer.explorer import ExplorerController
from prune_explorer.explorer.graph_state import GraphState
from prune_explorer.explorer.session import ExplorerError
from prune_explorer.measure import count_macs


def build_resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _to_depth(c):
    while c.current is not None and getattr(c.current, "kind", None) != "depth":
        c.skip()
    return c.current


@pytest.fixture
def resnet_explorer():
    x = torch.randn(2, 3, 32, 32)
    model = build_resnet()
    c = ExplorerController(model, x, prune_depth=True, depth_pruning_ratio=0.2, calibration=[x],
                           model_fn=build_resnet)
    return model, x, c


def test_depth_group_card_graph_accept_undo(resnet_explorer):
    model, x, c = resnet_explorer
    snap = snapshot(model)
    g = _to_depth(c)
    assert g.root_name == "layer1.0"
    assert c.figures()["groups_left"] == 5  # the five blocks are counted in the walk's estimate
    card = c.card()
    assert card["kind"] == "depth" and card["depth"]["block"] == "layer1.0" and card["depth"]["type"] == "BasicBlock"
    block_params = sum(p.numel() for p in model.layer1[0].parameters())
    assert card["depth"]["params"] == block_params and card["depth"]["score"] >= 0
    assert card["depth"]["macs"] > 0 and card["candidates"] == [0]
    # the pruner proposes removing the lowest-influence block (one of five at 0.2)
    scores = [c.pruner.depth.scores()[k].item() for k in range(5)]
    assert card["depth"]["remove_proposed"] == (scores[0] == min(scores))
    gs = GraphState(c)
    root, members = gs.roles()
    assert {"layer1.0.conv1", "layer1.0.bn2"} <= members and not any(m.startswith("layer1.1") for m in members)
    assert gs.target.element == "pe-c-layer1.0"  # the view goes to the block, opened
    conv = next(line for line in gs.dot_source().splitlines() if 'id="pe-n-layer1.0.conv1"' in line)
    assert "pe-member" in conv
    c.adjust(n=1)
    pred = c.predict()
    assert pred["params_removed"] == block_params
    params0 = c.params_now()
    c.accept()
    assert isinstance(model.layer1[0], nn.Identity) and c.decisions[-1].key == "layer1.0:depth"
    assert c.params_now() == params0 - block_params
    assert c.macs_now() == count_macs(model, x)
    assert "removed the block layer1.0" in c.status.text
    assert c.current.root_name == "layer1.1"
    gs.walk_changed("accept")
    conv = next(line for line in gs.dot_source().splitlines() if 'id="pe-n-layer1.0.conv1"' in line)
    assert "pe-removed-block" in conv and "dashed" in conv  # the removed block is drawn faded
    c.skip()
    c.undo()
    assert same_as(model, snap) and c.current.root_name == "layer1.0"


def test_width_then_depth_then_recover_and_undo_exactly(resnet_explorer):
    model, x, c = resnet_explorer
    snap0 = snapshot(model)
    c.accept()                                   # a width group
    snap1 = snapshot(model)
    _to_depth(c)
    c.adjust(n=1)
    c.accept()                                   # layer1.0 removed
    snap2 = snapshot(model)
    seen = []
    c.progress = lambda stage, done, total: seen.append((stage, done, total))
    run = c.recover(steps=3, lr=1e-3)
    assert run.steps == 3 and not run.interrupted and run.metric_name.startswith("distillation loss")
    assert run.before > 0 and run.after == pytest.approx(c.recovery.metric())
    assert ("recovering", 3, 3) in seen and any(s == ("recovering", 1, 3) for s in seen)
    assert not same_as(model, snap2) and "recovered (3 steps)" in c.status.text
    assert c.undo() is None and same_as(model, snap2)           # the recovery first
    c.recover(steps=2)
    c.adjust(n=1)
    c.accept()                                   # a decision after a recovery (layer1.1 removed) ...
    c.undo()                                     # ... undone alone
    assert not same_as(model, snap2)
    c.undo()                                     # then the recovery, then the block
    assert same_as(model, snap2)
    c.undo()
    assert same_as(model, snap1)
    c.restart_walk()
    assert same_as(model, snap0)


def test_recover_needs_calibration_data():
    x = torch.randn(1, 3, 32, 32)
    c = ExplorerController(build_resnet(), x, prune_depth=True)
    with pytest.raises(ExplorerError, match="calibration="):
        c.recover(steps=2)


def test_script_replays_depth_decisions_and_verifies(resnet_explorer):
    model, x, c = resnet_explorer
    c.accept()
    _to_depth(c)
    c.adjust(n=1)
    c.accept()
    code = c.code()
    assert '"kind": "depth"' in code and "pe.history.apply_history(model, HISTORY)" in code
    r = c.verify_script()
    assert r["ok"] and r["params_script"] == r["params_explorer"] == c.params_now()
    c.recover(steps=2)
    recovered = snapshot(model)
    r = c.verify_script()                        # unprunes and rebuilds the model: the recovery is put back
    assert not r["ok"] and "not the recovery" in c.status.text
    assert same_as(model, recovered)
    c.undo()                                     # the recovery, still undoable
    assert not same_as(model, recovered) and c.params_now() == r["params_script"]


def test_llama_depth_group_in_the_walk_and_script(monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                   num_attention_heads=4, num_key_value_heads=2, use_cache=False)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = {"input_ids": torch.randint(0, 64, (1, 8))}
    c = ExplorerController(model, ids, prune_depth=True, prune_head_dims=False, calibration=[ids])
    c.accept()                                   # a width group first
    g = _to_depth(c)
    assert g.root_name == "model.layers.0"
    c.skip()
    c.adjust(n=1)
    c.accept()                                   # model.layers.1 deleted
    assert model.config.num_hidden_layers == 2 and len(model.model.layers) == 2
    run = c.recover(steps=2)
    assert run.steps == 2
    code = c.code()
    monkeypatch.delenv("PE_VERIFY", raising=False)
    scope = {}
    exec(compile(code, "reproduce_pruning.py", "exec"), scope)
    built = scope["model"]
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert built.config.num_hidden_layers == 2


def test_app_card_shows_the_block_and_the_recover_button_runs():
    from prune_explorer.explorer import Explorer

    x = torch.randn(2, 3, 32, 32)
    model = build_resnet()
    ex = Explorer(model, x, prune_depth=True, depth_pruning_ratio=0.2, calibration=[x])
    c = ex.controller
    _to_depth(c)
    ex.card.refresh("skip")
    assert "layer1.0" in ex.card.title.value and "block influence" in ex.card.title.value
    assert "parameters" in ex.card.title.value and ex.card.hist_box.layout.display == "none"
    ex.card.slider.value = 1
    assert "removes the whole block" in ex.card.prediction.value
    ex.card.accept_btn.click()
    assert isinstance(model.layer1[0], nn.Identity)
    ex.card.recover_steps.value = 2
    ex.card.recover_btn.click()
    assert c.recovery.last is not None and c.recovery.last.steps == 2
    assert "→" in ex.card.recover_result.value and not ex.card.undo_btn.disabled
    assert not ex.progress.visible  # the bar is gone once done
    ex.card.undo_btn.click()                     # the recovery
    assert c.recovery.last is None and isinstance(model.layer1[0], nn.Identity)
    # without calibration data the button is disabled and says why
    ex2 = Explorer(build_resnet(), x, prune_depth=True)
    assert ex2.card.recover_btn.disabled and "calibration=" in ex2.card.recover_btn.tooltip


def test_explorer_scan_solve_and_apply_plan_with_depth_groups():
    from prune_explorer.explorer.sensitivity_controller import SensitivityController

    x = torch.randn(2, 3, 32, 32)
    model = build_resnet()
    snap = snapshot(model)
    with torch.no_grad():
        ref = model(x)

    def neg_mse(m):
        with torch.no_grad():
            return -float((m(x) - ref).pow(2).mean())

    c = ExplorerController(model, x, prune_depth=True, eval_fn=neg_mse)
    s = SensitivityController(c, eval_fn=neg_mse)
    table = s.scan(ratios=(0.5,), executor="serial")
    assert sum(g.key.endswith(":depth") for g in table.groups) == 5
    plan = s.solve(target=0.5, kind="params")
    removed = [d.root for d in plan if d.kind == "depth" and d.remove]
    s.apply_plan()
    assert c.params_now() == plan.predicted["params"] <= 0.5 * c.params0
    assert all(isinstance(model.get_submodule(r), nn.Identity) for r in removed)
    s.undo_plan()
    assert same_as(model, snap)


def test_recover_interrupted_keeps_the_steps_done_and_undoes_exactly(resnet_explorer):
    model, x, c = resnet_explorer
    c.accept()
    snap = snapshot(model)

    def interrupt(stage, done, total):  # Ctrl-C / the notebook's Interrupt, landing after step 2
        if stage == "recovering" and done == 2:
            raise KeyboardInterrupt

    c.progress = interrupt
    run = c.recover(steps=50)
    assert run.interrupted and run.steps == 2 and not same_as(model, snap)
    assert "stopped after 2 of 50 steps" in c.status.text
    c.progress = None
    c.undo()
    assert same_as(model, snap)
