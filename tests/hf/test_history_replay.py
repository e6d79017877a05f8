"""``pe.history.apply_history`` of a pruned Hugging Face Llama's ``model_history`` alone rebuilds it exactly: whole
heads removed (grouped-query attention) and heads narrowed too. The history entries carry the size attributes the
pruning rewrote (``head_dim``), the rest of the heads' bookkeeping follows from the weights."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import prune_explorer as pe  # noqa: E402
from prune_explorer.graph.edit.records import model_history  # noqa: E402

VOCAB = 64


def _llama(seed):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   use_cache=False)
    return transformers.LlamaForCausalLM(cfg).eval()


def _attention_attrs(model):
    return {name: {k: v for k, v in vars(m).items() if not k.startswith("_") and isinstance(v, (int, float))}
            for name, m in model.named_modules() if name.endswith("self_attn")}


@pytest.mark.parametrize("head_dims", [False, True], ids=["heads", "heads+dims"])
def test_apply_history_rebuilds_a_llama_with_fewer_heads(head_dims):
    model = _llama(0)
    ids = torch.randint(0, VOCAB, (1, 10), generator=torch.Generator().manual_seed(1))
    attrs0 = _attention_attrs(model)
    pr = pe.pruner.MagnitudePruner(model, {"input_ids": ids}, pe.importance.MagnitudeImportance(p=2),
                                   pruning_ratio=0.5, ignored_layers=[model.lm_head], prune_num_heads=True,
                                   head_pruning_ratio=0.5, prune_head_dims=head_dims)
    pr.step()
    attrs = _attention_attrs(model)
    a = model.model.layers[0].self_attn
    assert a.k_proj.out_features == 1 * a.head_dim and a.q_proj.out_features == 2 * a.head_dim  # 2 of 4, 1 of 2 kv
    assert (a.head_dim < 16) == head_dims and (attrs != attrs0) == head_dims  # this Llama keeps no head count

    history = json.loads(json.dumps(model_history(model)))  # plain data, as a script or a file holds it
    fresh = _llama(7)  # other weights: only the architecture comes from the history
    pe.history.apply_history(fresh, history)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert _attention_attrs(fresh) == attrs
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids).logits, model(input_ids=ids).logits)
