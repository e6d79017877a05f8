"""A pruning step whose result the Hugging Face config cannot describe warns once, naming the sizes and
``pe.save_pruned`` (issue 18, item 7): BERT's config derives the head size from ``hidden_size //
num_attention_heads``, and ``BertModel``'s hidden width is its output (kept), so narrower heads cannot be rebuilt by
``from_pretrained``. A Llama (``head_dim`` in its config) pruned the same way round-trips and does not warn."""

import os
import re
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import prune_explorer as pe  # noqa: E402


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32)
    return transformers.BertModel(cfg).eval(), {"input_ids": torch.randint(0, 100, (1, 8))}


def _config_warnings(caught):
    return [str(w.message) for w in caught if "model.config cannot describe" in str(w.message)]


def test_step_warns_once_when_the_config_cannot_describe_the_result(tmp_path):
    model, x = _bert()
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       prune_num_heads=True, head_pruning_ratio=0.5, iterative_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner.step()
        pruner.step()
    (msg,) = _config_warnings(caught)  # once, not once per step
    assert "BertModel" in msg and "pe.save_pruned" in msg
    # step 1 leaves 3 of 4 heads: the sizes named are those the config cannot hold
    assert re.search(r"hidden size \(64\) is not a multiple of the number of attention heads \(3\)", msg)
    with pytest.raises(pe.PruningError):  # what the warning announced
        pe.hf.check_config_round_trip(model)
    pe.save_pruned(model, tmp_path / "bert.pt")  # the way out it names works
    fresh, _ = _bert()
    pe.load_pruned(fresh, tmp_path / "bert.pt")
    torch.testing.assert_close(fresh(**x).last_hidden_state, model(**x).last_hidden_state)


@pytest.mark.parametrize("options", [{"prune_num_heads": True, "head_pruning_ratio": 0.5}, {}],
                         ids=["heads-and-dims", "widths"])
def test_no_warning_when_the_config_describes_the_result(options):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, use_cache=False)
    model = transformers.LlamaForCausalLM(cfg).eval()
    x = pe.plan.causal_lm_inputs(model, tokens=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                  ignored_layers=["lm_head"], **options).step()
    assert not _config_warnings(caught)
    assert model.config.hidden_size == 32
    pe.hf.check_config_round_trip(model)
