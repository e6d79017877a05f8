"""The downloaded script runs as downloaded (the model built by model_fn, or from a timm / transformers model's own
description) and "Verify script" runs it in a subprocess: same parameter count, same outputs."""

import pytest
import torch

from small_models import SmallNet
from prune_explorer.explorer import ExplorerController, ExplorerError


def build_small():
    torch.manual_seed(1)  # other weights than the explorer's model: the verify passes the original ones
    return SmallNet()


def test_script_from_a_builder_function_runs_as_downloaded_and_verifies(tmp_path):
    torch.manual_seed(0)
    c = ExplorerController(SmallNet().eval(), torch.randn(2, 3, 16, 16), model_fn=build_small)
    c.accept()
    c.skip()
    c.accept()
    code = c.code()
    assert "class SmallNet" in code and "model = build_small()" in code and "model = ..." not in code
    r = c.verify_script()
    assert r["ok"] and r["params_script"] == c.params_now() < c.params0 and r["max_abs_diff"] <= 1e-5
    assert "reproduces this model" in c.status.text


def test_script_without_a_builder_says_what_to_fill_in_and_verify_refuses():
    torch.manual_seed(0)
    c = ExplorerController(SmallNet().eval(), torch.randn(1, 3, 16, 16))
    c.accept()
    assert "raise SystemExit(" in c.code() and "model_fn" in c.code()
    with pytest.raises(ExplorerError, match="model_fn="):
        c.verify_script()


def _llama_explorer(**options):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32, use_cache=False)
    model = LlamaForCausalLM(cfg).eval()
    c = ExplorerController(model, {"input_ids": torch.randint(0, 64, (1, 8))}, **options)
    c.accept_all_remaining()
    return c, model


HEADS = {"heads": dict(prune_num_heads=True, head_pruning_ratio=0.5, prune_head_dims=False),
         "heads+dims": dict(prune_num_heads=True, head_pruning_ratio=0.5)}


@pytest.mark.parametrize("options", list(HEADS))
def test_script_of_a_llama_with_fewer_heads_rebuilds_it(options, monkeypatch):
    """Whole heads (and narrower heads) of a grouped-query Llama: the script replays the pruning history with the
    size attributes each entry rewrote (head_dim), so the model it builds is this one, shapes and head sizes."""
    c, model = _llama_explorer(**HEADS[options])
    code = c.code()
    assert "pe.history.apply_history(model, HISTORY)" in code and "DependencyGraph" not in code
    assert ("'attr': 'head_dim'" in code) == (options == "heads+dims")
    monkeypatch.delenv("PE_VERIFY", raising=False)
    scope = {}
    exec(compile(code, "reproduce_pruning.py", "exec"), scope)
    built = scope["model"]
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    for a, b in zip(model.model.layers, built.model.layers):
        assert (b.self_attn.head_dim, b.self_attn.num_key_value_groups) == (a.self_attn.head_dim,
                                                                             a.self_attn.num_key_value_groups)
    assert c.params_now() < c.params0


def test_rebuilding_the_pruner_keeps_a_head_dims_decision_next_to_the_heads_one():
    """A whole-heads group and its head-dims group share their root layer: replaying the decisions (after a
    rebuild, as Verify script does) takes both again, by group key."""
    c, model = _llama_explorer(**HEADS["heads+dims"])
    params, keys = c.params_now(), [d.key for d in c.walk.decisions if d.action == "accept"]
    assert len(keys) == len(set(keys)) > len({k.split(":")[0] for k in keys})
    c.set_options(global_pruning=False)  # the default: the same pruner, rebuilt and the decisions replayed
    c.set_options(head_pruning_ratio=0.5001)
    assert [d.key for d in c.walk.decisions if d.action == "accept"] == keys and c.params_now() == params


@pytest.mark.slow
@pytest.mark.parametrize("options", ["channels"] + list(HEADS))
def test_transformers_model_script_verifies(options):
    c, _ = _llama_explorer(**HEADS.get(options, {}))
    assert "transformers.LlamaForCausalLM(config)" in c.code()
    r = c.verify_script()
    assert r["ok"] and r["max_abs_diff"] == 0.0, r
