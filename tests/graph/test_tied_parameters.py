"""Tied parameters are never untied: the users of one tensor are in one group, it is pruned once and stays one
tensor (users that never run included), undo restores the tie, and users that cannot agree keep it whole."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.graph.edit.tied import tied_parameters


class TiedLM(nn.Module):
    """Embedding -> MLP -> head, the head's weight tied to the embedding; ``unused`` holds the same tensor and never
    runs (as T5's ``shared``)."""

    def __init__(self, vocab=20, dim=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.unused = nn.Embedding(vocab, dim)
        self.fc1 = nn.Linear(dim, 32)
        self.fc2 = nn.Linear(32, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight
        self.unused.weight = self.embed.weight

    def forward(self, ids):
        h = self.embed(ids)
        h = h + self.fc2(torch.relu(self.fc1(h)))
        return self.head(h)


def _n_params(model):
    return sum(p.numel() for p in model.parameters())  # shared tensors once


def test_tied_parameters_lists_every_holder():
    model = TiedLM()
    (aliases,) = tied_parameters(model)
    assert [name for _, name in aliases] == ["embed.weight", "unused.weight", "head.weight"]


def test_the_users_of_a_tied_parameter_are_one_group_and_stay_one_tensor():
    torch.manual_seed(0)
    model, ids = TiedLM(), torch.randint(0, 20, (2, 5))
    n_before = _n_params(model)
    pruner = pe.pruner.MagnitudePruner(model, ids, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       ignored_layers=[model.head])
    pruner.DG.undo_depth = 10
    step_records = len(pruner.DG.history)
    pruner.step()
    assert model.embed.weight is model.head.weight is model.unused.weight
    assert model.embed.weight.shape == (20, 8)
    assert model.embed.embedding_dim == model.unused.embedding_dim == model.head.in_features == 8
    assert _n_params(model) < n_before
    assert model(ids).shape == (2, 5, 20)
    while len(pruner.DG.history) > step_records:
        pruner.DG.undo()
    assert model.embed.weight is model.head.weight is model.unused.weight
    assert model.embed.weight.shape == (20, 16) and model.unused.embedding_dim == 16


class TiedThroughAnOutput(TiedLM):
    """The same, but the embedding's features are also a model output: the tied head's inputs stay too."""

    def forward(self, ids):
        h = self.embed(ids)
        return self.head(h + self.fc2(torch.relu(self.fc1(h)))), h


def test_a_user_whose_channels_are_fixed_keeps_the_whole_tied_parameter():
    model, ids = TiedThroughAnOutput(), torch.randint(0, 20, (1, 4))
    pruner = pe.pruner.MagnitudePruner(model, ids, pe.importance.MagnitudeImportance(), pruning_ratio=0.5,
                                       ignored_layers=[model.head])
    pruner.step()
    assert model.embed.weight is model.head.weight and model.embed.weight.shape == (20, 16)
    assert model.fc1.out_features == 16  # the rest still prunes


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_hugging_face_tied_embeddings_stay_tied(kind):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (1, 6))
    if kind == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=32, n_layer=1, n_head=2, n_positions=16, vocab_size=64, tie_word_embeddings=True)).eval()
        inputs = {"input_ids": ids}
    else:
        model = transformers.T5ForConditionalGeneration(transformers.T5Config(
            vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, decoder_start_token_id=0,
            tie_word_embeddings=True)).eval()
        inputs = {"input_ids": ids, "decoder_input_ids": ids}
    tied_before = [[n for _, n in a] for a in tied_parameters(model)]
    assert tied_before
    pruner = pe.pruner.MagnitudePruner(model, inputs, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       ignored_layers=[model.lm_head])
    pruner.step()
    assert [[n for _, n in a] for a in tied_parameters(model)] == tied_before  # still one tensor each
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    model(**inputs).logits.sum().backward()
