"""Depth groups: found, scored by block influence, removed keeping every output shape, undone exactly, and a
Hugging Face model round-trips through save_pretrained / from_pretrained after a layer is removed."""

import pytest
import torch
import torchvision

import prune_explorer as pe
from prune_explorer.calibration import Calibration


def test_resnet_blocks_removed_shapes_kept_and_undone():
    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 32, 32)
    groups = pe.depth.find_blocks(m, x)
    assert [g.name for g in groups] == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert all(g.kind == "depth" for g in groups)
    ref = m(x)
    n_params = sum(p.numel() for p in m.parameters())
    rec = pe.depth.prune_depth(m, Calibration([x], progress=False), 2, groups=groups)
    assert m(x).shape == ref.shape
    assert sum(p.numel() for p in m.parameters()) < n_params
    rec.undo()
    assert torch.equal(m(x), ref)


def test_block_influence_matches_direct_computation():
    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 32, 32)
    groups = pe.depth.find_blocks(m, x)
    s = pe.depth.block_influence(m, groups, Calibration([x], progress=False))
    seen = {}
    h = m.layer3[1].register_forward_hook(lambda mod, a, o: seen.update(x=a[0], y=o))
    with torch.no_grad():
        m(x)
    h.remove()
    direct = (1 - torch.nn.functional.cosine_similarity(seen["x"].double(), seen["y"].double(), dim=1)).mean()
    assert s[3].item() == pytest.approx(direct.item(), rel=1e-5)


def test_hf_layer_removed_round_trip(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    m = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (2, 12))
    ref = m(input_ids=ids).logits
    groups = pe.depth.find_blocks(m)
    assert len(groups) == 4 and all(g.mode == "delete" for g in groups)
    rec = pe.depth.remove_blocks(m, [groups[1], groups[2]])
    out = m(input_ids=ids).logits
    assert out.shape == ref.shape and m.config.num_hidden_layers == 2 and len(m.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in m.model.layers] == [0, 1]
    m.save_pretrained(tmp_path)
    again = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.allclose(again(input_ids=ids).logits, out, atol=1e-5)
    rec.undo()
    assert m.config.num_hidden_layers == 4 and torch.equal(m(input_ids=ids).logits, ref)
    assert [layer.self_attn.layer_idx for layer in m.model.layers] == [0, 1, 2, 3]


def test_depth_refuses_removing_every_layer():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1)
    m = transformers.LlamaForCausalLM(cfg)
    groups = pe.depth.find_blocks(m)
    with pytest.raises(pe.PruningError, match="keep one"):
        pe.depth.remove_blocks(m, groups)
    assert len(m.model.layers) == 2 and m.config.num_hidden_layers == 2
