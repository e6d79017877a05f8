"""The explorer's predicted MACs equal the measured MACs on attention models (issue 18, item 9): an attention block's
own MACs (``q @ k^T`` and ``attn @ v``) follow its heads and head sizes, in the prediction as in the model."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import prune_explorer as pe  # noqa: E402
from prune_explorer.explorer import ExplorerController  # noqa: E402
from prune_explorer.plan import causal_lm_inputs  # noqa: E402


def _llama(kv_heads):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=32,
                                   use_cache=False)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("kv_heads, options", [
    (2, {"prune_num_heads": True, "head_pruning_ratio": 0.5}),  # fewer and narrower heads
    (2, {"prune_num_heads": True, "head_pruning_ratio": 0.5, "prune_head_dims": False}),  # fewer heads
    (4, {}),  # narrower heads
], ids=["heads-and-dims", "heads", "dims"])
def test_predicted_macs_equal_measured_after_accepting_every_group(kv_heads, options):
    model = _llama(kv_heads)
    x = causal_lm_inputs(model, tokens=8)
    c = ExplorerController(model, x, pruning_ratio=0.5, ignored_layers=["lm_head"], **options)
    macs0 = c.figures()["macs_original"] if "macs_original" in c.figures() else c.macs0
    assert macs0 == pe.utils.count_ops_and_params(model, x)[0]
    c.accept_all_remaining()
    blocks = pe.plan.attention_sizes(c.DG)
    assert all(b["head_dim"] < 16 or b["num_heads"] < 4 for b in blocks.values())  # heads did change
    assert c.figures()["macs_now"] == pe.utils.count_ops_and_params(model, x)[0]
    # and every step on the way: undo one group, the prediction still equals the model
    c.undo()
    assert c.figures()["macs_now"] == pe.utils.count_ops_and_params(model, x)[0]
