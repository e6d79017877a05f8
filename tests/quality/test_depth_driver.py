"""Depth groups through the pruner's driver: proposed after the width groups (block influence), removed in one
undo scope with the width cuts, undone exactly, width groups of the remaining blocks still pruned, and the stored
history replays to the same model (torchvision ResNet / ViT, a Hugging Face Llama)."""

import pytest
import torch
import torch.nn as nn
import torchvision

import prune_explorer as pe
from prune_explorer.graph import model_history
from small_models import ResBlock


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resnet_step_removes_lowest_influence_block_and_widths_then_undoes_exactly():
    m = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    before, ref = _state(m), m(x)
    p = pe.pruner.BasePruner(m, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.25,
                             prune_depth=True, depth_pruning_ratio=0.4)
    p.DG.undo_depth = 100
    scores = p.depth.scores()
    expected = sorted(range(5), key=lambda k: (float(scores[k]), k))[:2]
    p.step()
    gone = [b.name for b in p.depth.blocks if not any(c is b.module for c in b.container)]
    assert gone == sorted(p.depth.blocks[k].name for k in expected)
    assert m(x).shape == ref.shape and m.layer1[0].conv1.out_channels == 48
    depth = [e for e in model_history(m) if e.get("kind") == "depth"]
    assert [e["root"] for e in depth] == gone
    assert any(s.kind == "target" and s.scope == "depth" for s in p.skipped)  # the kept blocks
    made = [h for h in p.history if h.get("kind") == "depth"]
    assert [(h["root"], h["step"], h["scope"], h["pruning_ratio"]) for h in made] == [(n, 1, "depth", 0.4) for n in gone]
    # the history replays on a fresh model to the same architecture and outputs
    fresh = torchvision.models.resnet18(num_classes=10).eval()
    pe.history.apply_history(fresh, pe.history.pruning_history(m))
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh(x), m(x))
    while p.DG.history:
        p.DG.undo()
    assert _same(_state(m), before) and torch.equal(m(x), ref) and model_history(m) == []


def test_width_after_depth_and_depth_after_width_interleave_and_undo_in_order():
    m = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    before = _state(m)
    p = pe.pruner.BasePruner(m, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5, prune_depth=True,
                             depth_pruning_ratio=0.2)
    p.DG.undo_depth = 100
    groups = list(p.get_all_groups())
    depth = [g for g in groups if g.kind == "depth"]
    assert [g.root_name for g in depth] == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    rec_d = depth[1].prune()                                  # remove layer1.1
    assert isinstance(m.layer1[1], nn.Identity)
    inside = next(g for g in p.get_all_groups() if g.root_name == "layer1.1.conv1")
    assert p.proposal(inside).skip_kind == "guard" and not p.proposal(inside).proposed_idxs  # no longer runs
    again = next(g for g in p.get_all_groups() if g.root_name == "layer1.1" and g.kind == "depth")
    assert p.proposal(again).skip_kind == "guard" and again.root_idxs == []  # listed, nothing left to remove
    stem = next(g for g in p.DG.get_all_groups() if g.root_name == "conv1")
    rec_w = p.driver.prune(stem, list(range(16)))             # the residual stream, removed block included
    assert m.layer1[0].conv2.out_channels == 48 and m(x).shape == (1, 10)
    last = next(g for g in p.get_all_groups() if g.kind == "depth" and g.root_name == "layer4.1")
    rec_d2 = last.prune()
    assert m(x).shape == (1, 10)
    for rec in (rec_d2, rec_w, rec_d):
        rec.undo()
    assert _same(_state(m), before)


def test_driver_rolls_back_a_depth_cut_with_the_width_cuts():
    m = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    before = _state(m)
    p = pe.pruner.BasePruner(m, x, pe.importance.MagnitudeImportance(), prune_depth=True)
    depth = [g for g in p.get_all_groups() if g.kind == "depth"]
    conv = next(g for g in p.DG.get_all_groups() if g.root_name == "layer2.0.conv1")
    cuts = [pe.pruner.driver.Cut(conv, [0, 1]), pe.pruner.driver.Cut(depth[2], [0])]

    def fail():
        assert isinstance(m.layer2[1], nn.Identity)
        raise RuntimeError("verify failed")

    with pytest.raises(RuntimeError):
        p.driver.apply(cuts, verify=fail)
    assert _same(_state(m), before) and p.DG.history == [] and model_history(m) == []
    with p.driver.trial([pe.pruner.driver.Cut(depth[0], [0])]):
        assert isinstance(m.layer1[0], nn.Identity)
    assert not isinstance(m.layer1[0], nn.Identity)


def test_vit_blocks_are_depth_groups():
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32,
                                             mlp_dim=64, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    ref = m(x)
    p = pe.pruner.BasePruner(m, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.0, prune_depth=True,
                             depth_pruning_ratio=0.34)
    p.step()
    assert sum(isinstance(b, nn.Identity) for b in m.encoder.layers) == 1
    assert m(x).shape == ref.shape
    p.DG.undo()
    assert torch.equal(m(x), ref)


def test_llama_layer_removed_with_width_then_replayed(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    m = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (2, 12))
    ref = m(input_ids=ids).logits
    cal = pe.calibration.Calibration([{"input_ids": ids}], progress=False)
    p = pe.pruner.BasePruner(m, {"input_ids": ids}, pe.importance.MagnitudeImportance(), pruning_ratio=0.25,
                             prune_head_dims=False, prune_depth=True, depth_pruning_ratio=0.25, calibration=cal)
    p.DG.undo_depth = 100
    p.step()
    assert m.config.num_hidden_layers == 3 and len(m.model.layers) == 3
    assert [layer.self_attn.layer_idx for layer in m.model.layers] == [0, 1, 2]
    out = m(input_ids=ids).logits
    assert out.shape == ref.shape
    fresh = transformers.LlamaForCausalLM(cfg).eval()
    pe.history.apply_history(fresh, pe.history.pruning_history(m))
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh(input_ids=ids).logits, out)
    m.save_pretrained(tmp_path)
    again = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.allclose(again(input_ids=ids).logits, out, atol=1e-5)
    while p.DG.history:
        p.DG.undo()
    assert m.config.num_hidden_layers == 4 and torch.equal(m(input_ids=ids).logits, ref)


class ReadsABlock(nn.Module):
    """A model whose forward reads an attribute of its middle block: removing that block breaks it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(ResBlock(8), ResBlock(8), ResBlock(8))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.body(self.stem(x))
        x = x * (self.body[1].conv.out_channels / 8)
        return self.head(x.mean((2, 3)))


def test_post_prune_check_rolls_back_a_block_whose_removal_breaks_the_model():
    m = ReadsABlock().eval()
    x = torch.randn(1, 3, 8, 8)
    before = _state(m)
    p = pe.pruner.BasePruner(m, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.0, prune_depth=True,
                             depth_pruning_ratio=0.34, depth_importance=lambda model, groups: [{"body.0": 1.0, "body.1": 0.0, "body.2": 2.0}[g.name]
                                                                        for g in groups])
    assert [b.name for b in p.depth.blocks] == ["body.0", "body.1", "body.2"]
    with pytest.warns(UserWarning, match="body.1"):
        p.step()
    assert not isinstance(m.body[1], nn.Identity) and _same(_state(m), before)
    assert any(s.root == "body.1" and s.kind == "check" for s in p.skipped)
    assert model_history(m) == [] and p.DG.history == []


def test_a_second_pruner_after_deleted_layers_warns_that_its_names_do_not_replay():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                   num_attention_heads=4, num_key_value_heads=2)
    m = transformers.LlamaForCausalLM(cfg).eval()
    ids = {"input_ids": torch.randint(0, 64, (1, 8))}
    p = pe.pruner.BasePruner(m, ids, pe.importance.MagnitudeImportance(), pruning_ratio=0.0, prune_depth=True)
    next(g for g in p.get_all_groups() if g.kind == "depth").prune()
    with pytest.warns(UserWarning, match="renumbered"):
        pe.pruner.BasePruner(m, ids, pe.importance.MagnitudeImportance())


def test_save_pruned_load_pruned_with_depth_and_width(tmp_path):
    transformers = pytest.importorskip("transformers")
    x = torch.randn(1, 3, 32, 32)
    m = torchvision.models.resnet18(num_classes=10).eval()
    pe.pruner.BasePruner(m, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.25, prune_depth=True,
                         depth_pruning_ratio=0.4).step()
    pe.save_pruned(m, tmp_path / "r.pt")
    back = pe.load_pruned(torchvision.models.resnet18(num_classes=10).eval(), tmp_path / "r.pt")
    assert torch.equal(back(x), m(x))
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=2)
    llama = transformers.LlamaForCausalLM(cfg).eval()
    ids = {"input_ids": torch.randint(0, 64, (1, 8))}
    pe.pruner.BasePruner(llama, ids, pe.importance.MagnitudeImportance(), pruning_ratio=0.25, prune_head_dims=False,
                         prune_depth=True, depth_pruning_ratio=0.5).step()
    assert llama.config.num_hidden_layers == 2
    pe.save_pruned(llama, tmp_path / "l.pt")
    again = pe.load_pruned(transformers.LlamaForCausalLM(cfg).eval(), tmp_path / "l.pt")
    assert again.config.num_hidden_layers == 2 and torch.equal(again(**ids).logits, llama(**ids).logits)
