"""``DG.lint()``: a sound graph passes after every prune and undo on real architectures; a graph whose model was
changed behind its back fails loudly, naming what disagrees."""

import copy

import pytest
import torch
import torch.nn as nn
import torchvision

import prune_explorer as pe
from prune_explorer.graph import GraphLintError, lint_after_edits
from prune_explorer.graph.edit.lint import lint_enabled, lint_problems


def _resnet():
    m = torchvision.models.resnet18(num_classes=10)
    return "resnet", m, torch.randn(1, 3, 32, 32), [m.fc], {}


def _densenet():
    m = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, num_classes=10)
    return "densenet", m, torch.randn(1, 3, 32, 32), [m.classifier], {}


def _vit():
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
                                             mlp_dim=64, num_classes=10)
    return "vit", m, torch.randn(1, 3, 32, 32), [m.heads], {}


def _llama():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    model = transformers.LlamaForCausalLM(cfg).eval()
    return "llama", model, torch.randint(0, 64, (1, 6)), [model.lm_head], {"prune_num_heads": True,
                                                                            "head_pruning_ratio": 0.5}


@pytest.mark.parametrize("make", [_resnet, _densenet, _vit, _llama], ids=["resnet", "densenet", "vit", "llama-heads"])
def test_lint_holds_after_every_prune_and_undo(make):
    name, model, x, ignored, extra = make()
    with lint_after_edits():  # every prune and undo below lints the graph
        assert lint_enabled()
        pr = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5,
                                       ignored_layers=ignored, **extra)
        pr.DG.undo_depth = 1000
        pr.step()
        assert pr.DG.history, f"{name}: nothing was pruned"
        if name == "llama":
            assert model.config.num_attention_heads == 2 and model.config.num_key_value_heads == 1
        pr.DG.lint()
        while pr.DG.history:
            pr.DG.undo()
        pr.DG.lint()


def _pruned_conv_graph():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    DG = pe.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 8, 8))
    DG.undo_depth = 4
    DG.get_pruning_group(model[0], pe.prune_conv_out_channels, idxs=[0, 1]).prune()
    DG.lint()
    return model, DG


def test_lint_fails_loudly_when_a_layer_changed_behind_the_graph():
    model, DG = _pruned_conv_graph()
    conv = model[3]  # narrowed by hand: 5 inputs where the graph has 6 channels alive
    conv.weight = nn.Parameter(conv.weight.detach()[:, :5].clone())
    conv.in_channels = 5
    with pytest.raises(GraphLintError, match=r"3\.in: the layer has 5 channels, the graph 6 alive"):
        DG.lint()



def test_lint_after_edits_makes_the_next_edit_fail_loudly():
    model, DG = _pruned_conv_graph()
    out = next(s for s in DG.spaces_of(model[3]) if s.side == "out")
    DG.alive_mask[out.offset] = False  # a channel of a layer the undo does not touch, dead by no pruning
    with lint_after_edits():
        with pytest.raises(GraphLintError, match="no longer matches the model"):
            DG.undo()  # the undo itself works; the lint after it reports the broken mask
    assert not DG.history and model[0].out_channels == 8


def test_lint_fails_on_a_history_that_does_not_replay():
    model, DG = _pruned_conv_graph()
    pe.graph.model_history(model).clear()
    with pytest.raises(GraphLintError, match="stored history has 0 entries"):
        DG.lint()


def test_lint_fails_on_a_mask_the_history_does_not_explain():
    model, DG = _pruned_conv_graph()
    gid = DG.spaces_of(model[0])[0].offset + 5
    DG.alive_mask[gid] = False  # a channel marked dead by no pruning
    problems = lint_problems(DG)
    assert any("dead in the mask but the history removed" in p for p in problems)
    assert "0.out: 6 channels by its cached indices, 5 alive in the mask" in problems
    assert "0.out: the layer has 6 channels, the graph 5 alive" in problems


def test_lint_fails_on_an_untied_parameter():
    emb, head = nn.Embedding(10, 6), nn.Linear(6, 10, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, nn.Linear(6, 6), head)
    DG = pe.DependencyGraph().build_dependency(model, example_inputs=torch.tensor([[1, 2, 3]]))
    DG.lint()
    head.weight = nn.Parameter(emb.weight.detach().clone())
    with pytest.raises(GraphLintError, match="tied parameter 0.weight is no longer one tensor"):
        DG.lint()


def test_lint_fails_on_a_stale_config():
    _, model, x, ignored, extra = _llama()
    pr = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5,
                                   ignored_layers=ignored, **extra)
    pr.step()
    pr.DG.lint()
    model.config.num_attention_heads = 4  # what it was before the heads left
    with pytest.raises(GraphLintError, match="config.num_attention_heads is 4 but the modules have 2"):
        pr.DG.lint()


@pytest.mark.parametrize("corrupt, message", [
    (lambda DG: setattr(DG.state, "version", DG.state.version - 1), r"state\.version went back from 1 to 0"),
    (lambda DG: setattr(DG.state, "built", False), r"state\.built is False"),
    (lambda DG: setattr(DG.state, "alive", DG.state.alive[:-1].copy()),
     r"state\.space_of must be an int array of shape \(\d+,\) like state\.alive"),
    (lambda DG: setattr(DG.state, "visible", DG.state.visible.astype(int)), r"state\.visible must be a bool array"),
    (lambda DG: setattr(DG.spaces[0], "alive", DG.spaces[0].alive.copy()),
     r"0\.in: its alive mask is not a view of state\.alive"),
    (lambda DG: DG.state.undoable.append(copy.copy(DG.history[0])),
     r"state\.undoable holds a live record that is not in state\.history"),
    (lambda DG: setattr(DG.state, "keep_undo", -1), r"state\.keep_undo is -1"),
], ids=["version-back", "not-built", "alive-shape", "visible-dtype", "space-view", "undone-kept", "keep-undo"])
def test_lint_fails_loudly_on_a_corrupted_state(corrupt, message):
    """``DG.state`` is one documented object; lint checks its own invariants, whoever broke them."""
    model, DG = _pruned_conv_graph()
    assert DG.version == 1 and DG.state.problems() == []
    corrupt(DG)
    with pytest.raises(GraphLintError, match=message):
        DG.lint()
