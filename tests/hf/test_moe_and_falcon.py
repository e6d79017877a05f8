"""Falcon (fused ``query_key_value`` of ``FalconLinear``, multi-query attention, parallel attention and MLP) and
mixture-of-experts decoders (transformers 5 holds the experts as stacked 3-D parameters run by ``grouped_mm``)
prune like the other decoders: at ``pruning_ratio=0.5`` they keep at most 0.45 of their parameters, forward and
backward run, the logits keep their shape.

Experts: one stacked tensor holds every expert at one width, so each MoE block's expert width is one group that
removes the same offsets from every expert (importance summed over the experts); the router and the number of
experts stay; ``config.intermediate_size`` (Mixtral) / ``moe_intermediate_size`` (Qwen2-MoE) follow, and a model
built from the synced config loads the pruned weights and computes the same logits."""

from __future__ import annotations

import copy
import os
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import prune_explorer as pe  # noqa: E402
from prune_explorer import hf  # noqa: E402

VOCAB = 256


def _ids(seed, n=12):
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def _falcon():
    cfg = transformers.FalconConfig(hidden_size=128, num_attention_heads=8, num_hidden_layers=2, vocab_size=VOCAB)
    assert cfg.multi_query and cfg.parallel_attn  # the forms the test is about
    return transformers.FalconForCausalLM(cfg)


def _mixtral():
    cfg = transformers.MixtralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                                     vocab_size=VOCAB, max_position_embeddings=32)
    return transformers.MixtralForCausalLM(cfg)


def _qwen2_moe():
    cfg = transformers.Qwen2MoeConfig(hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                                      shared_expert_intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, num_experts=4,
                                      num_experts_per_tok=2, vocab_size=VOCAB, max_position_embeddings=32)
    return transformers.Qwen2MoeForCausalLM(cfg)


MODELS = {"falcon": _falcon, "mixtral": _mixtral, "qwen2_moe": _qwen2_moe}


def _params(model):
    return sum(p.numel() for p in model.parameters())


def _prune(model, ids):
    pruner = pe.pruner.BasePruner(model, ids, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                  ignored_layers=[model.lm_head])
    pruner.step()
    return pruner


@pytest.mark.parametrize("name", list(MODELS))
def test_prunes_below_045_and_runs(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    ids = _ids(1)
    with torch.no_grad():
        before = model(ids).logits.shape
    n0 = _params(model)
    _prune(model, ids)
    assert _params(model) / n0 <= 0.45
    out = model(_ids(2)).logits
    assert out.shape == before
    out.float().pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p.numel())


def test_falcon_layers_are_grouped():
    """FalconLinear runs x @ weight.T + bias in its own forward: it is a linear layer, every projection of a block
    is in a group (no fixed reason), and the fused query_key_value loses head dims."""
    model = _falcon().eval()
    ids = _ids(3)
    DG = pe.DependencyGraph().build_dependency(model, ids)
    groups = list(DG.get_all_groups(ignored_layers=[model.lm_head]))
    assert len(groups) >= 4
    for block in model.transformer.h:
        for layer in (block.self_attention.query_key_value, block.self_attention.dense, block.mlp.dense_h_to_4h,
                      block.mlp.dense_4h_to_h):
            assert DG.fixed_reason(layer) is None, DG.fixed_reason(layer)
    assert any(g.kind == "attention-dims" for g in groups)
    qkv = model.transformer.h[0].self_attention.query_key_value
    heads, hd = 8, 128 // 8
    _prune(model, ids)
    # multi-query: 8 query heads + one key and one value head, each at the pruned head size
    new_hd = model.transformer.h[0].self_attention.head_dim
    assert new_hd < hd and qkv.out_features == (heads + 2) * new_hd


@pytest.mark.parametrize("name,field", [("mixtral", "intermediate_size"), ("qwen2_moe", "moe_intermediate_size")])
def test_experts_widths_and_config(name, field):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    ids = _ids(4)
    experts = [m for _, m, _ in hf.stacked_experts(model)]
    n_exp = [m.gate_up_proj.shape[0] for m in experts]
    widths = [w for _, _, w in hf.stacked_experts(model)]
    routers = [tuple(m.mlp.gate.weight.shape[:1]) for m in model.model.layers]
    DG = pe.DependencyGraph().build_dependency(model, ids)
    roots = {g.root_name for g in DG.get_all_groups(ignored_layers=[model.lm_head])}
    assert {f"model.layers.{i}.mlp.experts.gate_up_proj" for i in range(2)} <= roots
    _prune(model, ids)
    after = hf.stacked_experts(model)
    assert [m.gate_up_proj.shape[0] for _, m, _ in after] == n_exp  # the number of experts stays
    assert [tuple(m.mlp.gate.weight.shape[:1]) for m in model.model.layers] == routers  # so does the router's
    assert all(w == old // 2 for (_, _, w), old in zip(after, widths))
    for _, m, w in after:
        assert m.gate_up_proj.shape[1] == 2 * w and m.intermediate_dim == w
    assert getattr(model.config, field) == widths[0] // 2
    assert hf.config_problems(model) == []
    rebuilt = type(model)(copy.deepcopy(model.config)).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(ids).logits, model(ids).logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["eager", "grouped_mm"])
def test_experts_implementations(impl):
    """transformers' experts implementations: the eager loop (``F.linear`` on ``gate_up_proj[e]``, rows added back
    with ``index_add_``) and ``grouped_mm`` give the same groups: every expert width prunes, no op is unknown."""
    torch.manual_seed(0)
    model = _mixtral()
    model.config._experts_implementation = impl
    model.eval()
    ids = _ids(5)
    n0 = _params(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "operations not understood" warning
        _prune(model, ids)
    assert _params(model) / n0 <= 0.45
    assert all(w == 64 for _, _, w in hf.stacked_experts(model))
    assert model(ids).logits.shape == (1, 12, VOCAB)


def test_falcon_config_says_what_it_cannot_hold(tmp_path):
    """Falcon derives its head size and attention temperature from ``hidden_size / num_attention_heads``: the pruned
    model's temperature is the one its weights were trained with, so ``config_problems`` names it and
    ``pe.save_pruned`` / ``pe.load_pruned`` rebuild the pruned model exactly."""
    torch.manual_seed(0)
    model = _falcon().eval()
    ids = _ids(6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the step warns that the config cannot describe the model
        _prune(model, ids)
    assert any("inv_norm_factor" in p for p in hf.config_problems(model))
    pe.save_pruned(model, tmp_path / "falcon")
    torch.manual_seed(0)
    fresh = _falcon().eval()
    pe.load_pruned(fresh, tmp_path / "falcon")
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, model(ids).logits)
