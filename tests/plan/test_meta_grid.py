"""Plans made on the meta device apply to real weights across decoder families and options (issue 18, item 1).

Written the way a user writes it: ONE config object, a meta model built from it for planning, then the real model
built from the same config. Pruning the meta model must not rewrite that config (it did: the graph rewrote
``model.config``, which is the caller's ``cfg``, so the real model came out already narrow and the plan did not fit:
``group ...q_proj:attention-dims can lose 112 root channels, not the planned 128``). Then applying the plan reaches
exactly the predicted parameter count and head counts, for Llama / Qwen2 / Mistral, grouped-query attention or not,
whole heads pruned or not, ``round_to`` 8 or none.
"""

import itertools
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import prune_explorer as pe  # noqa: E402
from prune_explorer.explorer import ExplorerController  # noqa: E402
from prune_explorer.plan import causal_lm_inputs  # noqa: E402

# (family, config class, model class, hidden, intermediate, heads, kv heads when grouped-query)
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", 64, 96, 4, 2),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", 96, 160, 6, 2),
    "mistral": ("MistralConfig", "MistralForCausalLM", 128, 128, 8, 2),
}
GRID = list(itertools.product(FAMILIES, (True, False), (True, False), (8, None)))
# one fast case per family, together covering every option; the rest of the grid is slow
FAST = {("llama", True, False, None), ("qwen2", False, True, 8), ("mistral", True, True, None),
        ("llama", False, False, 8)}


def _case(family, gqa, heads, round_to):
    marks = () if (family, gqa, heads, round_to) in FAST else (pytest.mark.slow,)
    return pytest.param(family, gqa, heads, round_to, marks=marks,
                        id=f"{family}-{'gqa' if gqa else 'mha'}-{'heads' if heads else 'dims'}-round{round_to}")


def _config(family, gqa):
    cfg_name, _, hidden, inter, n_heads, kv = FAMILIES[family]
    return getattr(transformers, cfg_name)(
        vocab_size=64, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2, num_attention_heads=n_heads,
        num_key_value_heads=kv if gqa else n_heads, max_position_embeddings=32, use_cache=False)


def _model(family, cfg, device):
    with torch.device(device):
        return getattr(transformers, FAMILIES[family][1])(cfg).eval()


@pytest.mark.parametrize("family, gqa, heads, round_to", [_case(*c) for c in GRID])
def test_a_meta_plan_applies_to_a_real_model_built_from_the_same_config(family, gqa, heads, round_to):
    cfg = _config(family, gqa)
    before = cfg.to_dict()
    meta = _model(family, cfg, "meta")
    options = {"round_to": round_to}
    if heads:
        options.update(prune_num_heads=True, head_pruning_ratio=0.5)
    walk = ExplorerController(meta, causal_lm_inputs(meta), pruning_ratio=0.5, ignored_layers=["lm_head"], **options)
    walk.accept_all_remaining()
    plan = pe.PruningPlan.from_json(walk.plan().to_json())
    assert plan.predicted["params"] < 0.7 * plan.base["params"]
    assert cfg.to_dict() == before, "pruning the meta model rewrote the caller's config"
    assert meta.config is not cfg and meta.config.hidden_size < cfg.hidden_size  # the meta model's own config

    real = _model(family, cfg, "cpu")
    x = causal_lm_inputs(real, tokens=5)
    pe.apply_plan(real, plan, example_inputs=x, importance=pe.importance.MagnitudeImportance(p=2))
    assert sum(p.numel() for p in real.parameters()) == plan.predicted["params"]
    graph = pe.DependencyGraph().build_dependency(real, x)
    assert pe.plan.attention_sizes(graph) == plan.predicted["attention"]
    if heads:
        assert any(s["num_heads"] < FAMILIES[family][4] for s in plan.predicted["attention"].values())
    if round_to:
        assert all(d.keep % round_to == 0 for d in plan if d.kind == "channels")
    assert real(**x).logits.shape == (1, 5, 64)
    assert cfg.to_dict() == before


def test_two_models_sharing_a_config_do_not_share_their_pruning():
    cfg = _config("llama", True)
    a, b = _model("llama", cfg, "cpu"), _model("llama", cfg, "cpu")
    assert a.config is cfg and b.config is cfg  # how transformers builds them
    x = causal_lm_inputs(a, tokens=5)
    pe.pruner.MagnitudePruner(a, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                              ignored_layers=[a.lm_head]).step()
    assert a.config.hidden_size == 32 and a.model.layers[0].self_attn.config is a.config
    assert cfg.hidden_size == 64 and b.config.hidden_size == 64
    b(**x)
    pe.hf.check_config_round_trip(a)


def test_a_plan_applied_to_another_architecture_says_so():
    meta = _model("llama", _config("llama", True), "meta")
    walk = ExplorerController(meta, causal_lm_inputs(meta), pruning_ratio=0.5, ignored_layers=["lm_head"])
    walk.accept_all_remaining()
    plan = walk.plan()
    cfg = _config("llama", True)
    cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads = 32, 2, 1  # narrower: not the planned model
    other = _model("llama", cfg, "cpu")
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(pe.plan.PlanError, match=r"has \d+ root channels here but had \d+ where the plan was made"):
        pe.apply_plan(other, plan, example_inputs=causal_lm_inputs(other, tokens=5))
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
