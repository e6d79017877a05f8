"""Multi-head attention, in one place, used only when a model has attention.

- :mod:`.heads`: the attention blocks the dependency graph finds (heads, key-value heads, head size, what was removed);
- :mod:`.head_bookkeeping`: attention modules' own head counts and sizes, kept in line with their weights;
- :mod:`.proposals`: what ``num_heads`` declarations mean to the pruner, and head-dim groups next to whole heads;
- :mod:`.hf_config`: the Hugging Face config side of heads (attention temperature, rotary frequencies).

The graph, the pruner and :mod:`prune_explorer.hf` import these modules on first need: a model whose trace meets no
attention product (a plain CNN) never loads them. The ``nn.MultiheadAttention`` layer family stays with the other
layer families in :mod:`prune_explorer.layers.attention` (the tracer needs every registered family for any model).
"""
