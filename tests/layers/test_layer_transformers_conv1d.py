"""transformers' ``Conv1D`` (a linear layer with a transposed weight, GPT / GPT-2) through the layer registry, on the
real class: pruning either side keeps what the kept channels compute, and GPT-2 prunes and runs."""

from __future__ import annotations

import os

import pytest
import torch

import prune_explorer as pe
from prune_explorer.layers import CONV1D_PRUNER, DEFAULT_REGISTRY, FAMILIES

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
Conv1D = pytorch_utils.Conv1D


def test_the_registry_knows_conv1d_without_importing_transformers_itself():
    layer = Conv1D(6, 4)
    assert FAMILIES.family_of(layer).name == "transformers_conv1d"
    assert DEFAULT_REGISTRY.get(layer) is CONV1D_PRUNER
    assert CONV1D_PRUNER.get_out_channels(layer) == 6 and CONV1D_PRUNER.get_in_channels(layer) == 4


def test_pruning_outputs_and_inputs_keeps_what_the_kept_channels_compute():
    torch.manual_seed(0)
    layer = Conv1D(nf=6, nx=5)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, 5)
    with torch.no_grad():
        before = layer(x)
    CONV1D_PRUNER.prune_out_channels(layer, [0, 4])
    assert (layer.nf, tuple(layer.weight.shape), tuple(layer.bias.shape)) == (4, (5, 4), (4,))
    with torch.no_grad():
        assert torch.allclose(layer(x), before[..., [1, 2, 3, 5]], atol=1e-6)
    x_kept = x.clone()
    x_kept[..., 2] = 0  # what input channel 2 contributes is gone after pruning it
    with torch.no_grad():
        want = layer(x_kept)
    CONV1D_PRUNER.prune_in_channels(layer, [2])
    assert (layer.nx, tuple(layer.weight.shape)) == (4, (4, 4))
    with torch.no_grad():
        assert torch.allclose(layer(x[..., [0, 1, 3, 4]]), want, atol=1e-6)
    assert "nf=4, nx=4" in repr(layer)


def test_tiny_gpt2_prunes_its_mlp_and_width_and_runs():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=32, vocab_size=50)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 50, (1, 8))
    n_before = sum(p.numel() for p in model.parameters())
    pruner = pe.pruner.MagnitudePruner(model, {"input_ids": ids}, pe.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=0.5, ignored_layers=[model.lm_head])
    pruner.step()
    mlp = model.transformer.h[0].mlp
    assert mlp.c_fc.nf < 4 * 32 and mlp.c_proj.nx == mlp.c_fc.nf
    assert sum(p.numel() for p in model.parameters()) < n_before
    assert [s.kind for s in pruner.skipped if s.kind in ("error", "check")] == []
    out = model(input_ids=ids).logits
    assert out.shape == (1, 8, 50)
    out.sum().backward()
