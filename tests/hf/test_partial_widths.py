"""Models whose widths stayed partly fixed now follow them (tiny configs, random weights, offline), each at
``pruning_ratio=0.5`` with forward and backward running and the output shape unchanged:

* Gemma 3 ties ``lm_head`` to its scaled embedding, which calls ``F.embedding`` on the shared weight: the call
  belongs to the embedding (not to the linear head that holds the same tensor);
* ConvNeXt V2's global response norm uses ``torch.linalg.vector_norm`` over the spatial dims;
* Whisper's positional embeddings (an ``nn.Embedding`` subclass reading ``self.weight[positions]``) carry the
  embedding's channels.

Where widths do stay, ``pruner.report()`` says why (CLIP's hidden width reaches ``last_hidden_state``)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import prune_explorer as pe  # noqa: E402
from prune_explorer.graph.model.classes import OUTPUT_REASON  # noqa: E402


def _gemma3():
    cfg = transformers.Gemma3TextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=256,
                                        sliding_window=8, max_position_embeddings=64)
    m = transformers.Gemma3ForCausalLM(cfg)
    assert m.lm_head.weight is m.model.embed_tokens.weight
    return m, {"input_ids": torch.randint(0, 256, (1, 12))}, [m.lm_head], lambda o: o.logits


def _convnextv2():
    cfg = transformers.ConvNextV2Config(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=10)
    m = transformers.ConvNextV2ForImageClassification(cfg)
    return m, {"pixel_values": torch.randn(1, 3, 64, 64)}, [m.classifier], lambda o: o.logits


def _whisper():
    cfg = transformers.WhisperConfig(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                                     decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                                     num_mel_bins=16, max_source_positions=16, max_target_positions=16,
                                     vocab_size=128, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                     decoder_start_token_id=1)
    m = transformers.WhisperForConditionalGeneration(cfg)
    inputs = {"input_features": torch.randn(1, 16, 32), "decoder_input_ids": torch.randint(0, 128, (1, 6))}
    return m, inputs, [m.proj_out], lambda o: o.logits


# (builder, the most of its parameters it may keep at 0.5)
MODELS = {"gemma3": (_gemma3, 0.45), "convnextv2": (_convnextv2, 0.35), "whisper": (_whisper, 0.5)}


@pytest.mark.parametrize("name", list(MODELS))
def test_prunes_and_runs(name):
    build, bound = MODELS[name]
    torch.manual_seed(0)
    model, inputs, ignored, pick = build()
    model.eval()
    with torch.no_grad():
        shape = pick(model(**inputs)).shape
    n0 = sum(p.numel() for p in model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = pe.pruner.MagnitudePruner(model, inputs, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                           ignored_layers=ignored)
        pruner.step()
    assert sum(p.numel() for p in model.parameters()) / n0 <= bound
    assert not pruner.DG.internal_errors
    out = pick(model(**inputs))
    assert out.shape == shape
    out.float().pow(2).mean().backward()
    report = pruner.report()
    assert all(f.reason for f in report.fixed)


def test_clip_hidden_width_stays_with_its_reason():
    """``CLIPVisionModelWithProjection`` returns ``last_hidden_state``: the hidden width is part of the interface
    and stays, and the report says so; with ``output_transform`` picking ``image_embeds`` it prunes."""
    cfg = transformers.CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                        num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32)
    torch.manual_seed(0)
    model = transformers.CLIPVisionModelWithProjection(cfg).eval()
    x = {"pixel_values": torch.randn(1, 3, 32, 32)}
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5,
                                       ignored_layers=[model.visual_projection])
    fixed = {f.label: f.reason for f in pruner.report().fixed}
    assert fixed["vision_model.encoder.layers.0.mlp.fc2.out"] == OUTPUT_REASON
    model2 = transformers.CLIPVisionModelWithProjection(cfg).eval()
    pruner2 = pe.pruner.MagnitudePruner(model2, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5,
                                        ignored_layers=[model2.visual_projection],
                                        output_transform=lambda out: out.image_embeds)
    pruner2.step()
    assert model2.vision_model.encoder.layers[0].mlp.fc2.out_features == 32
    assert model2(**x).image_embeds.shape == (1, 32)
