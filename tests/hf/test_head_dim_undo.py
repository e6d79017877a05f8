"""Narrowing attention heads (``prune_head_dims=True``) on a Hugging Face Llama, then undoing, gives back the very
model: weights, rotary ``inv_freq``, the attention modules' attributes (``head_dim``, ``scaling``) and the config
(``head_dim``, ``rope_parameters``: the pruning writes the kept rotary frequencies as LongRoPE factors, and folds the
attention temperature into ``q_proj``). The sync that writes them is not its own inverse, so undo must restore what
it changed. Redo gives the first pruning's model again. Tiny configs, random weights, offline; the suite's lint runs
after every prune and undo (tests/conftest.py)."""

from __future__ import annotations

import copy
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import prune_explorer as pe  # noqa: E402
from prune_explorer.explorer.controller import ExplorerController  # noqa: E402

VOCAB = 128


def _llama(kv_heads: int):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=32,
                                   use_cache=False)
    return transformers.LlamaForCausalLM(cfg)


def _inputs():
    return {"input_ids": torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(1))}


def _state(model):
    """Everything undo must restore: parameters and buffers (``inv_freq`` included), the attention modules' own
    attributes, the config."""
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tensors.update({f"buffer:{k}": v.detach().clone() for k, v in model.named_buffers()})
    attrs = {name: (m.head_dim, m.scaling, m.num_key_value_groups) for name, m in model.named_modules()
             if type(m).__name__ == "LlamaAttention"}
    return tensors, attrs, copy.deepcopy(model.config.to_dict())


def _assert_same(expected, model):
    tensors, attrs, cfg = _state(model)
    want_t, want_a, want_c = expected
    assert tensors.keys() == want_t.keys()
    changed = [k for k in want_t if want_t[k].shape != tensors[k].shape or not torch.equal(want_t[k], tensors[k])]
    assert changed == []
    assert attrs == want_a
    assert {k: v for k, v in cfg.items() if cfg.get(k) != want_c.get(k)} == {}
    assert cfg == want_c


def _pruner(model):
    p = pe.pruner.MagnitudePruner(model, _inputs(), pe.importance.MagnitudeImportance(), pruning_ratio=0.5,
                                  prune_head_dims=True, ignored_layers=[model.lm_head])
    p.DG.undo_depth = 100
    return p


def _assert_pruned(model, original):
    """The pruning took the paths under test: narrower heads, rotary frequencies carried into the config as LongRoPE
    factors, the temperature folded into the query projections."""
    assert model.config.head_dim == 8 and original[2]["head_dim"] == 16
    assert model.config.rope_parameters["rope_type"] == "longrope"
    assert original[2]["rope_parameters"]["rope_type"] == "default"
    attn = model.model.layers[0].self_attn
    assert attn.head_dim == 8 and attn.scaling == pytest.approx(8 ** -0.5)


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_head_dims_undo_and_redo_are_exact(kv_heads):
    model = _llama(kv_heads)
    original = _state(model)
    p = _pruner(model)
    start = len(p.DG.history)
    p.step()
    records = p.DG.history[start:]
    assert records
    _assert_pruned(model, original)
    pruned = _state(model)
    for rec in reversed(records):
        rec.undo()
    _assert_same(original, model)
    for rec in records:
        p.DG.redo(rec)
    _assert_same(pruned, model)
    while p.DG.history and not p.DG.history[-1].undone:
        p.DG.undo()
    _assert_same(original, model)
    ids = _inputs()["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, _llama(kv_heads)(input_ids=ids).logits)


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_explorer_accept_undo_is_exact(kv_heads):
    model = _llama(kv_heads)
    original = _state(model)
    c = ExplorerController(model, _inputs(), pruning_ratio=0.5, prune_head_dims=True, ignored_layers=[model.lm_head])
    accepted = 0
    while c.walk.current is not None:  # one group at a time, each cut and synced on its own
        c.accept()
        accepted += 1
    assert accepted
    _assert_pruned(model, original)
    for _ in range(accepted):
        c.undo()
    _assert_same(original, model)
    c.accept_all_remaining()  # the batched path (one cut for the independent groups)
    _assert_pruned(model, original)
    c.undo_since(0)
    _assert_same(original, model)


def _bert():
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(cfg), "classifier"


def _qwen2():
    cfg = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   use_cache=False)
    return transformers.Qwen2ForCausalLM(cfg), "lm_head"


def _plain_state(model):
    """Parameters, buffers, every module's scalar attributes and the config."""
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tensors.update({f"buffer:{k}": v.detach().clone() for k, v in model.named_buffers()})
    attrs = {(n, k): v for n, m in model.named_modules() for k, v in m.__dict__.items()
             if isinstance(v, (int, float, str, bool))}
    return tensors, attrs, copy.deepcopy(model.config.to_dict())


@pytest.mark.parametrize("build", [_bert, _qwen2], ids=["bert", "qwen2"])
def test_temperature_fold_and_rope_undo_exactly_on_other_models(build):
    """BERT folds the attention temperature into ``query`` (no rotary); Qwen2 also carries LongRoPE factors."""
    model, head = build()
    ids = {"input_ids": _inputs()["input_ids"]}
    before = _plain_state(model)
    p = pe.pruner.MagnitudePruner(model, ids, pe.importance.MagnitudeImportance(), pruning_ratio=0.5,
                                  prune_head_dims=True, ignored_layers=[getattr(model, head)])
    p.DG.undo_depth = 100
    start = len(p.DG.history)
    p.step()
    assert model.config.to_dict() != before[2]
    while len(p.DG.history) > start:
        p.DG.undo()
    after = _plain_state(model)
    assert [k for k in before[0] if not torch.equal(before[0][k], after[0][k])] == []
    assert after[0].keys() == before[0].keys()
    assert {k: v for k, v in after[1].items() if before[1].get(k, "absent") != v} == {}
    assert after[1].keys() == before[1].keys()
    assert after[2] == before[2]
