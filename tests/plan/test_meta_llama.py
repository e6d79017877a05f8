"""A small Llama (grouped-query attention) planned on the meta device and applied to the same config with real random
weights: a uniform 0.5 plan, a plan that removes whole heads, and one made in the explorer. The real model reaches
exactly the predicted parameter count and head counts, runs, and its config says so."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import prune_explorer as pe  # noqa: E402
from prune_explorer.explorer import ExplorerController, ExplorerError  # noqa: E402
from prune_explorer.plan import causal_lm_inputs  # noqa: E402

HEADS = {"prune_num_heads": True, "head_pruning_ratio": 0.5, "prune_head_dims": False}  # whole heads only
HEADS_AND_DIMS = {"prune_num_heads": True, "head_pruning_ratio": 0.5}  # whole heads, then narrower ones (the default)


def _config():
    # a fresh config per model: pruning rewrites the config object the model holds
    return transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                    use_cache=False)


def _llama(device: str, seed: int = 0):
    torch.manual_seed(seed)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(_config())
    return model.eval()


def _heads(model):
    attn = [layer.self_attn for layer in model.model.layers]
    return {(a.q_proj.out_features // a.head_dim, a.k_proj.out_features // a.head_dim, a.head_dim) for a in attn}


def _uniform(**options):
    meta = _llama("meta")
    plan = pe.sensitivity.uniform_plan(meta, causal_lm_inputs(meta), ratio=0.5, kind="params",
                                       ignored_layers=[meta.lm_head], pruner_options=options or None)
    assert pe.plan.is_meta_model(meta) and meta.config.hidden_size == 64  # planned on a copy
    return plan


@pytest.fixture(scope="module")
def uniform_plan():
    return _uniform()


@pytest.fixture(scope="module")
def heads_plan():
    return _uniform(**HEADS)


@pytest.fixture(scope="module")
def heads_and_dims_plan():
    return _uniform(**HEADS_AND_DIMS)


def _apply(plan, seed: int = 0):
    real = _llama("cpu", seed)
    x = causal_lm_inputs(real, tokens=6)
    pe.apply_plan(real, pe.PruningPlan.from_json(plan.to_json()), example_inputs=x,
                  importance=pe.importance.MagnitudeImportance(p=2))
    return real, x


def _check_config(model):
    c = model.config
    layer = model.model.layers[0]
    assert c.hidden_size == model.model.embed_tokens.embedding_dim
    assert c.intermediate_size == layer.mlp.gate_proj.out_features
    assert c.num_attention_heads * layer.self_attn.head_dim == layer.self_attn.q_proj.out_features
    assert c.num_key_value_heads * layer.self_attn.head_dim == layer.self_attn.k_proj.out_features
    pe.hf.check_config_round_trip(model)


def test_uniform_meta_plan_applied_to_real_weights(uniform_plan):
    plan = uniform_plan
    assert plan.importance is None and plan.predicted["params"] < 0.5 * plan.base["params"]
    real, x = _apply(plan)
    assert sum(p.numel() for p in real.parameters()) == plan.predicted["params"]
    assert pe.plan.attention_sizes(pe.DependencyGraph().build_dependency(real, x)) == plan.predicted["attention"]
    assert real(**x).logits.shape == (1, 6, 128)
    _check_config(real)


@pytest.mark.parametrize("fixture, head_dim", [("heads_plan", 16), ("heads_and_dims_plan", 8)])
def test_heads_meta_plan_removes_whole_heads_on_real_weights(request, fixture, head_dim, tmp_path):
    plan = request.getfixturevalue(fixture)
    assert any(d.kind == "attention-heads" for d in plan)
    assert len(plan.base["attention"]) == 2
    assert all(v == {"num_heads": 4, "num_key_value_heads": 2, "head_dim": 16} for v in plan.base["attention"].values())
    for block, sizes in plan.predicted["attention"].items():
        assert sizes == {"num_heads": 2, "num_key_value_heads": 1, "head_dim": head_dim}, block
    assert f"heads 4->2, kv heads 2->1, head_dim 16->{head_dim}" in plan.summary()
    real, x = _apply(plan)
    assert sum(p.numel() for p in real.parameters()) == plan.predicted["params"]
    assert _heads(real) == {(2, 1, head_dim)}
    _check_config(real)
    want = real(**x).logits
    real.save_pretrained(tmp_path)
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(**x).logits, want)


def test_the_real_weights_choose_the_channels(heads_plan):
    """Same plan, other weights: same sizes, other channels kept; and the pruner's own choice at 0.5 on the same
    weights is exactly what the meta plan gives."""
    a, x = _apply(heads_plan, seed=0)
    b, _ = _apply(heads_plan, seed=1)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    ref = _llama("cpu", seed=0)
    pe.pruner.MagnitudePruner(ref, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                              ignored_layers=[ref.lm_head], **HEADS).step()
    sa, sr = a.state_dict(), ref.state_dict()
    assert sa.keys() == sr.keys() and all(torch.equal(sa[k], sr[k]) for k in sa)


def test_explorer_walk_on_meta_llama_exports_a_plan_for_the_real_one(tmp_path):
    meta = _llama("meta")
    x_meta = causal_lm_inputs(meta)
    with pytest.raises(ExplorerError, match="RandomImportance"):
        ExplorerController(meta, x_meta, importance=pe.importance.MagnitudeImportance(p=2))
    c = ExplorerController(meta, x_meta, pruning_ratio=0.5, ignored_layers=["lm_head"], **HEADS)
    c.accept_all_remaining()
    plan = c.export_plan(tmp_path / "llama.json")
    assert plan.options["prune_num_heads"] is True and plan.options["ignored_layers"] == ["lm_head"]
    assert plan.predicted["attention"] == pe.plan.attention_sizes(c.DG)
    real, x = _apply(pe.PruningPlan.load(tmp_path / "llama.json"))
    assert sum(p.numel() for p in real.parameters()) == c.figures()["params_now"]
    assert _heads(real) == _heads(meta)
    real(**x)


def test_a_meta_forward_that_needs_values_says_what_to_do():
    meta = _llama("meta")
    ids = {"input_ids": torch.zeros(1, 6, dtype=torch.long, device="meta")}  # a 2-D mask path: data-dependent
    with pytest.raises(ExplorerError, match=r"causal_lm_inputs"):
        ExplorerController(meta, ids, ignored_layers=["lm_head"])
