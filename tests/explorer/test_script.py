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


@pytest.mark.slow
def test_transformers_model_script_verifies():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32)
    model = LlamaForCausalLM(cfg).eval()
    c = ExplorerController(model, {"input_ids": torch.randint(0, 64, (1, 8))})
    c.accept_all_remaining()
    assert "transformers.LlamaForCausalLM(config)" in c.code()
    r = c.verify_script()
    assert r["ok"], r
