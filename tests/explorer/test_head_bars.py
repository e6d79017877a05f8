"""A head group's chart has one bar per head (whole heads go: every removed bar scores at most every kept one);
channel groups keep the per-channel histogram."""

import torch

from prune_explorer.explorer import ExplorerController
from prune_explorer.explorer.views.group_card import head_bars_figure


def test_head_group_card_has_one_bar_per_head():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=8,
                      num_key_value_heads=2, max_position_embeddings=32)
    c = ExplorerController(LlamaForCausalLM(cfg).eval(), {"input_ids": torch.randint(0, 64, (1, 8))},
                           ignored_layers=["lm_head"], prune_num_heads=True, head_pruning_ratio=0.5)
    kinds = []
    while c.current is not None and c.card()["heads"] is None:
        kinds.append(getattr(c.walk.current, "kind", None))
        c.skip()
    # the first group is layer 0's whole heads (a head-size group's units are channel positions across heads: they
    # keep the per-channel histogram, and so do plain channel groups)
    assert kinds == [] and c.current is not None and c.walk.current.kind == "attention-heads"
    card = c.card()
    heads = card["heads"]
    assert len(heads) == len(c.current.units) and sum(h["channels"] for h in heads) == card["channels"]
    removed = [h["score"] for h in heads if h["removed"]]
    kept = [h["score"] for h in heads if not h["removed"]]
    assert removed and kept and max(removed) <= min(kept)  # ranked per head: no removed bar above a kept one
    assert sum(len(h["channels"] * [0]) for h in heads if h["removed"]) == len(card["selected"])
    fig = head_bars_figure(heads)
    assert [len(t.x) for t in fig.data] == [len(removed), len(kept)]
    # grouped-query attention (8 query heads, 2 key/value heads): a bar is a key/value head with its 4 query heads
    assert {h["query_heads"] for h in heads} == {cfg.num_attention_heads // cfg.num_key_value_heads}
    assert sorted(fig.data[0].x + fig.data[1].x) == sorted(f"kv head {h['head']}" for h in heads)
    assert "4 query heads" in fig.layout.xaxis.title.text and "4 query heads" in fig.data[0].name


def test_only_whole_head_groups_get_head_bars():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=32, use_cache=False)
    c = ExplorerController(LlamaForCausalLM(cfg).eval(), {"input_ids": torch.randint(0, 64, (1, 8))},
                           prune_num_heads=True, head_pruning_ratio=0.5)  # whole heads and head sizes
    seen = []
    while c.current is not None:
        kind, heads = getattr(c.walk.current, "kind", None), c.card()["heads"]
        seen.append(kind)
        assert (heads is not None) == (kind == "attention-heads"), (c.current.root_name, kind)
        if heads is not None:
            assert len(heads) == cfg.num_attention_heads and {h["channels"] for h in heads} == {16}
            assert {h["query_heads"] for h in heads} == {1}
            assert head_bars_figure(heads).data[0].x[0].startswith("head ")
        c.skip()
    assert seen.count("attention-heads") == cfg.num_hidden_layers and "attention-dims" in seen
