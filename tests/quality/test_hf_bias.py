"""Bias compensation on a Hugging Face Llama (whose projections have no bias): the config's bias flags follow the
created biases, so save_pretrained -> from_pretrained gives the same logits; an undo restores model and config."""

import warnings

import pytest
import torch

import prune_explorer as pe
from prune_explorer.calibration import Calibration
from prune_explorer.compensation import Compensation

transformers = pytest.importorskip("transformers")


def _llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(cfg).eval()
    data = [torch.randint(0, 64, (4, 16)) for _ in range(2)]
    return model, data


def _round_trip(model, ids, tmp_path):
    model.save_pretrained(tmp_path)
    again, info = type(model).from_pretrained(tmp_path, output_loading_info=True)
    again.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
    return again


def test_mlp_bias_flag_follows_a_created_down_proj_bias_and_undo_restores_it(tmp_path):
    model, data = _llama()
    ids = data[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    comp = Compensation(bias=True)
    comp.calibrate(model, Calibration(data, progress=False))
    dg = pe.DependencyGraph().build_dependency(model, {"input_ids": ids})
    dg.undo_depth = 2
    for layer in model.model.layers:  # the same width in every layer, so that the config can describe it
        comp.prune(dg.get_pruning_group(layer.mlp.up_proj, pe.prune_linear_out_channels, [0, 5, 9]))
    mlp = model.model.layers[0].mlp
    assert mlp.down_proj.bias is not None and mlp.down_proj.bias.abs().sum() > 0
    assert model.config.mlp_bias is True and model.config.attention_bias is False
    # the other layers the flag covers get a zero bias, which computes nothing
    assert mlp.up_proj.bias is not None and not mlp.up_proj.bias.any()
    again = _round_trip(model, ids, tmp_path)
    assert again.config.mlp_bias is True
    dg.undo()
    dg.undo()
    assert model.config.mlp_bias is False
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def _step(model, data, ignored):
    pruner = pe.pruner.MagnitudePruner(model, {"input_ids": data[0]}, pe.importance.WandaImportance(),
                                       pruning_ratio=0.25, ignored_layers=ignored,
                                       calibration=Calibration(data, progress=False),
                                       compensation=Compensation(bias=True))
    pruner.step()


def test_a_compensated_pruner_step_saves_and_loads(tmp_path):
    """Head dims and MLP channels pruned (the hidden width kept): o_proj and down_proj get biases, the config
    says so, the round trip gives the same logits."""
    model, data = _llama()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        _step(model, data, [model.lm_head, model.model.embed_tokens])
    assert model.model.layers[0].self_attn.o_proj.bias is not None
    assert model.config.attention_bias is True and model.config.mlp_bias is True
    _round_trip(model, data[0], tmp_path)


def test_a_bias_no_config_field_describes_is_warned_about():
    """Pruning the hidden width compensates lm_head too, whose bias no Llama config field builds: a warning names
    it and the fix."""
    model, data = _llama()
    with pytest.warns(UserWarning, match=r"lm_head\.bias.*save_pruned"):
        _step(model, data, [model.lm_head])


def test_no_bias_is_created_without_create_bias(tmp_path):
    model, data = _llama()
    comp = Compensation(bias=True, least_squares=True, create_bias=False)
    comp.calibrate(model, Calibration(data, progress=False))
    dg = pe.DependencyGraph().build_dependency(model, {"input_ids": data[0]})
    for layer in model.model.layers:
        comp.prune(dg.get_pruning_group(layer.mlp.up_proj, pe.prune_linear_out_channels, [0, 5]))
    assert model.model.layers[0].mlp.down_proj.bias is None and model.config.mlp_bias is False
    _round_trip(model, data[0], tmp_path)
