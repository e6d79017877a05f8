"""Hugging Face transformers from tiny configs (hidden 64, 2 layers, 4 heads; random weights, offline).

The recipe of issue 13 (see ``test_zoo_timm.py``; head / classifier ignored), plus what issue 14 asks of
transformers: tied parameters stay one tensor, ``model.config`` agrees with the pruned module sizes, whole heads
(``prune_num_heads``) or head dims (``prune_head_dims``) shrink without ``num_heads`` being declared, and
``save_pretrained`` -> ``from_pretrained`` reproduces the pruned model's outputs.
"""

import pytest
import torch

import zoo_models as Z
from known_failures import params

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Z.has_library("transformers"), reason="transformers is not installed (extra [hf])")]

HF = [n for n, c in Z.CASES.items() if c.library == "transformers"]
TIED = ["hf/gpt2", "hf/llama_gqa", "hf/t5"]  # built with tie_word_embeddings=True
HEADED = ["hf/bert_cls", "hf/gpt2", "hf/llama_gqa", "hf/qwen2", "hf/vit_cls", "hf/t5"]  # hidden width not an output


@pytest.mark.parametrize("pruned", params("runs", HF), indirect=True)
def test_transformers_prunes_half_and_runs(pruned, record_kept):
    record_kept(pruned)
    assert Z.acceptance_problems(pruned) == []


@pytest.mark.parametrize("pruned", params("tied", TIED), indirect=True)
def test_tied_weights_stay_tied(pruned):
    model = pruned.model
    assert pruned.tied_before, "the config ties the word embeddings, so some parameter must be shared"
    assert pruned.untied == []
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


@pytest.mark.parametrize("pruned", params("config", HF), indirect=True)
def test_config_matches_pruned_modules(pruned):
    assert pruned.config_mismatch == []


def _pruned_with(name, **kwargs):
    case = Z.CASES[name]
    torch.manual_seed(0)
    out = Z.prune_case(case, **kwargs)
    before = case.hf_dims(case.build()[0].config)
    return out, before, case.hf_dims(out.model.config)


@pytest.mark.parametrize("name", params("heads", HEADED))
def test_whole_heads_pruned_without_declaring_them(name):
    """prune_num_heads=True, head_pruning_ratio=0.5: fewer heads (same head size), hidden and MLP widths shrink,
    the model runs and its config says so."""
    out, before, after = _pruned_with(name, prune_num_heads=True, head_pruning_ratio=0.5, prune_head_dims=False)
    assert Z.acceptance_problems(out) == []
    assert out.config_mismatch == []
    assert after["heads"] < before["heads"]
    assert after["hidden"] < before["hidden"] and after["intermediate"] < before["intermediate"]


@pytest.mark.parametrize("name", params("head_dims", HEADED))
def test_head_dims_pruned_without_declaring_them(name):
    """prune_head_dims=True (the default): narrower heads, hidden and MLP widths shrink, the model runs and its
    config says so."""
    out, before, after = _pruned_with(name, prune_head_dims=True)
    assert Z.acceptance_problems(out) == []
    assert out.config_mismatch == []
    assert after["head_dim"] < before["head_dim"]
    assert after["hidden"] < before["hidden"] and after["intermediate"] < before["intermediate"]


@pytest.mark.parametrize("pruned", params("round_trip", HEADED), indirect=True)
def test_save_pretrained_round_trip(pruned, tmp_path):
    """Uniform pruning (one ratio everywhere): save_pretrained -> from_pretrained gives the pruned model's outputs."""
    assert Z.acceptance_problems(pruned) == []
    assert pruned.params_after < pruned.params_before
    model = pruned.model
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        want = Z.tensors_of(Z.call(model.eval(), pruned.inputs))
        got = Z.tensors_of(Z.call(loaded, pruned.inputs))
    assert [t.shape for t in got] == [t.shape for t in want]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want))
