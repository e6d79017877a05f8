"""Hugging Face transformers models (tiny configs, random weights, offline): hidden width, heads and MLP widths
all shrink with ``prune_num_heads=True`` (fewer heads) and with ``prune_head_dims=True`` (narrower heads), the
unmodified forward runs, ``model.config`` says so, and ``save_pretrained`` -> ``from_pretrained`` gives the pruned
model's logits. Where the config cannot describe the pruned model (widths that differ per layer),
``pe.hf.check_config_round_trip`` says so and ``pe.save_pruned`` / ``pe.load_pruned`` is the way."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import prune_explorer as pe  # noqa: E402
from prune_explorer import hf  # noqa: E402

VOCAB, TOKENS = 128, 12


def _ids(seed, n=TOKENS):
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def _bert():
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(cfg), {"input_ids": _ids(1)}, "classifier"


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   use_cache=False)
    return transformers.LlamaForCausalLM(cfg), {"input_ids": _ids(2)}, "lm_head"


def _qwen2():
    cfg = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   use_cache=False)
    return transformers.Qwen2ForCausalLM(cfg), {"input_ids": _ids(3)}, "lm_head"


def _t5():
    cfg = transformers.T5Config(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                                decoder_start_token_id=0, use_cache=False)
    return (transformers.T5ForConditionalGeneration(cfg),
            {"input_ids": _ids(4), "decoder_input_ids": _ids(5, 8)}, "lm_head")


def _vit():
    cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                 image_size=32, patch_size=8, num_labels=10)
    return transformers.ViTForImageClassification(cfg), {"pixel_values": torch.randn(1, 3, 32, 32)}, "classifier"


MODELS = {"bert": _bert, "llama": _llama, "qwen2": _qwen2, "t5": _t5, "vit": _vit}
PARAMS = list(MODELS)


def _widths(model):
    w = hf.measure_widths(model)
    return {k: sorted(set(v)) for k, v in w.items()}


def _logits(model, inputs):
    model.eval()
    with torch.no_grad():
        out = model(**inputs)
    return out.logits


def _logits_only(out):
    return out.logits


def _prune(name, **kw):
    torch.manual_seed(0)
    model, inputs, head = MODELS[name]()
    model.eval()
    before = _widths(model)
    # the logits are the interface; hidden states (T5's encoder output, BERT's pooler input) may shrink
    pr = pe.pruner.MagnitudePruner(model, inputs, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                   ignored_layers=[model.get_submodule(head)], output_transform=_logits_only, **kw)
    pr.step()
    assert not [s for s in pr.skipped if s.kind == "error"], [s for s in pr.skipped if s.kind == "error"]
    return model, inputs, before, _widths(model)


@pytest.fixture(scope="module", params=PARAMS)
def heads_pruned(request):
    return (request.param,) + _prune(request.param, prune_num_heads=True, head_pruning_ratio=0.5,
                                     prune_head_dims=False)


@pytest.fixture(scope="module", params=PARAMS)
def dims_pruned(request):
    return (request.param,) + _prune(request.param, prune_head_dims=True)


def _check_config(model, after):
    c = model.config
    assert c.hidden_size == after["hidden"][0]
    inter = next(getattr(c, f) for f in ("intermediate_size", "d_ff") if hasattr(c, f))
    assert inter == after["intermediate"][0]
    assert c.num_attention_heads == after["heads"][0]
    if hasattr(c, "num_key_value_heads"):
        assert c.num_key_value_heads == after["kv_heads"][0]


def test_whole_heads_hidden_and_mlp_shrink(heads_pruned):
    name, model, inputs, before, after = heads_pruned
    assert all(len(v) == 1 for v in after.values()), after  # uniform: one width per kind
    assert after["heads"][0] == before["heads"][0] // 2
    assert after["head_dim"] == before["head_dim"]
    assert after["hidden"][0] < before["hidden"][0] and after["intermediate"][0] < before["intermediate"][0]
    _check_config(model, after)
    _logits(model, inputs)


def test_head_dims_hidden_and_mlp_shrink(dims_pruned):
    name, model, inputs, before, after = dims_pruned
    assert all(len(v) == 1 for v in after.values()), after
    assert after["heads"] == before["heads"]
    assert after["head_dim"][0] < before["head_dim"][0]
    assert after["hidden"][0] < before["hidden"][0] and after["intermediate"][0] < before["intermediate"][0]
    _check_config(model, after)
    _logits(model, inputs)


def _round_trip(model, inputs, tmp_path):
    hf.check_config_round_trip(model)
    want = _logits(model, inputs)
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    got = _logits(loaded, inputs)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_round_trip_after_removing_heads(heads_pruned, tmp_path):
    name, model, inputs, *_ = heads_pruned
    _round_trip(model, inputs, tmp_path)


def test_round_trip_after_narrowing_heads(dims_pruned, tmp_path):
    name, model, inputs, *_ = dims_pruned
    _round_trip(model, inputs, tmp_path)


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_fewer_and_narrower_heads(name, tmp_path):
    """prune_num_heads=True with prune_head_dims=True (the default): half the heads, each half as wide. Llama's config
    says so (head_dim is a field) and round-trips; BERT's derives the head size as hidden_size / num_attention_heads,
    which 2 heads of 8 in a 32-wide model break: the check says so, and save_pruned / load_pruned works."""
    model, inputs, before, after = _prune(name, prune_num_heads=True, head_pruning_ratio=0.5)
    assert after["heads"][0] == before["heads"][0] // 2 and after["head_dim"][0] == before["head_dim"][0] // 2
    if name == "llama":
        _check_config(model, after)
        _round_trip(model, inputs, tmp_path)
        return
    with pytest.raises(pe.PruningError, match="save_pruned"):
        hf.check_config_round_trip(model)
    want = _logits(model, inputs)
    pe.save_pruned(model, tmp_path / "bert.pt")
    fresh = pe.load_pruned(MODELS[name]()[0], tmp_path / "bert.pt")
    torch.testing.assert_close(_logits(fresh, inputs), want)


def test_widths_that_differ_per_layer_need_save_pruned(tmp_path):
    torch.manual_seed(0)
    model, inputs, head = _llama()
    model.eval()
    layer0 = model.model.layers[0].mlp
    pr = pe.pruner.MagnitudePruner(model, inputs, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.25,
                                   pruning_ratio_dict={layer0: 0.5}, ignored_layers=[model.lm_head])
    pr.step()
    with pytest.raises(pe.PruningError, match="save_pruned") as err:
        hf.check_config_round_trip(model)
    assert "MLP width differs between layers" in str(err.value)
    want = _logits(model, inputs)
    pe.save_pruned(model, tmp_path / "pruned.pt")
    torch.manual_seed(1)
    fresh = pe.load_pruned(_llama()[0], tmp_path / "pruned.pt")
    torch.testing.assert_close(_logits(fresh, inputs), want)


def test_undo_puts_the_config_back():
    torch.manual_seed(0)
    model, inputs, head = _llama()
    dg = pe.DependencyGraph().build_dependency(model, inputs)
    dg.undo_depth = 1
    g = dg.get_pruning_group(model.model.layers[0].mlp.gate_proj, pe.prune_linear_out_channels, idxs=[0])
    assert model.config.intermediate_size == 128
    g.prune()
    dg.undo()
    assert model.config.intermediate_size == 128 and model.config.hidden_size == 64


def test_t5_output_scale_follows_the_hidden_width_and_undo_restores_it():
    """T5ForConditionalGeneration scales the decoder output by model_dim ** -0.5 before the tied lm_head: after the
    hidden width shrinks, model_dim is the new width (what from_pretrained builds) with the ratio folded into the
    decoder's final norm, so the logits stay the same; undo puts back model_dim and the very same norm weight."""
    torch.manual_seed(0)
    model, inputs, head = _t5()
    model.eval()
    norm = model.decoder.final_layer_norm
    weight, dim = norm.weight, model.model_dim
    dg = pe.DependencyGraph().build_dependency(model, inputs, output_transform=_logits_only)
    dg.undo_depth = 1
    group = dg.get_pruning_group(model.decoder.embed_tokens, pe.prune_embedding_out_channels, idxs=list(range(0, dim, 2)))
    kept = torch.arange(1, dim, 2)
    group.prune()
    assert model.model_dim == model.config.d_model == dim // 2
    # the norm's output grew by sqrt(new / old), which model_dim ** -0.5 takes back
    torch.testing.assert_close(norm.weight, weight[kept] * (dim // 2 / dim) ** 0.5)
    assert hf.config_problems(model) == []
    dg.undo()
    assert model.model_dim == dim and model.config.d_model == dim and norm.weight is weight


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_multi_query_attention_keeps_its_one_key_value_head(attention, tmp_path):
    """Llama with num_key_value_heads=1 (multi-query attention: sdpa with enable_gqa, or eager's repeat_kv, an
    expand of the one key-value head): the graph counts 1 key-value head (not one per query head), and whole-head pruning removes query heads while the one key-value head every
    query head reads stays; the config follows and round-trips."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=32,
                                   use_cache=False, attn_implementation=attention)
    model, inputs = transformers.LlamaForCausalLM(cfg).eval(), {"input_ids": _ids(6)}
    sizes = pe.plan.attention_sizes(pe.DependencyGraph().build_dependency(model, inputs))
    assert sizes == {f"model.layers.{i}.self_attn": {"num_heads": 4, "num_key_value_heads": 1, "head_dim": 16}
                     for i in range(2)}
    pr = pe.pruner.MagnitudePruner(model, inputs, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                   ignored_layers=[model.lm_head], output_transform=_logits_only,
                                   prune_num_heads=True, head_pruning_ratio=0.5, prune_head_dims=False)
    pr.step()
    attn = model.model.layers[0].self_attn
    assert pe.plan.attention_sizes(pr.DG)["model.layers.0.self_attn"] == {
        "num_heads": 2, "num_key_value_heads": 1, "head_dim": 16}
    assert attn.q_proj.out_features == 2 * 16 and attn.k_proj.out_features == attn.v_proj.out_features == 16
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (2, 1)
    _round_trip(model, inputs, tmp_path)


def test_transformers_is_not_imported_with_prune_explorer():
    code = ("import sys, prune_explorer, prune_explorer.hf, prune_explorer.pruner; "
            "assert 'transformers' not in sys.modules, 'transformers imported'")
    root = os.path.dirname(os.path.dirname(os.path.abspath(pe.__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": root})
