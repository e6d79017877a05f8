"""Pruning of ``nn.Embedding`` and ``nn.EmbeddingBag``.

``weight`` has shape ``(num_embeddings, embedding_dim)``. The output channels are the ``embedding_dim``
features (weight columns). The input side is a vocabulary of token ids, not a feature dimension:
``get_in_channels`` is ``None`` and ``prune_embedding_in_channels`` raises
:class:`~prune_explorer.errors.PruningError` (removing rows would renumber every token id after them).

Example::

    >>> import torch, torch.nn as nn
    >>> emb = nn.Embedding(10, 6)
    >>> prune_embedding_out_channels(emb, [0, 1])
    Embedding(10, 4)
    >>> emb(torch.tensor([[1, 2]])).shape
    torch.Size([1, 2, 4])
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import BasePruningFunc
from .family import LayerFamily, register_family
from .slicing import Part, Rows

__all__ = ["EmbeddingPruner", "EMBEDDING_PRUNER", "EMBEDDING_FAMILY", "prune_embedding_out_channels",
           "prune_embedding_in_channels"]


class EmbeddingPruner(BasePruningFunc):
    """Prunes the ``embedding_dim`` features of ``nn.Embedding`` / ``nn.EmbeddingBag`` (weight columns).

    >>> EmbeddingPruner().prune_out_channels(nn.Embedding(5, 3), [2]).weight.shape
    torch.Size([5, 2])
    """

    TARGET_MODULES = (nn.Embedding, nn.EmbeddingBag)

    CHANNEL_ATTRS = ("embedding_dim", None)  # the input is token ids, not channels

    SLICED_TENSORS = {"out": {"weight": 1}}  # embedding features: columns of the weight
    COMPOSABLE_CUTS = True

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        """Not supported: the input of an embedding is token ids (``num_embeddings``), not channels."""
        raise self.error(
            layer, "in", None,
            f"its input is {layer.num_embeddings} token ids (num_embeddings), not a channel dimension; "
            "removing rows would renumber the tokens",
            "prune the embedding features with prune_embedding_out_channels, or build a new vocabulary",
        )


EMBEDDING_PRUNER = EmbeddingPruner()
prune_embedding_out_channels, prune_embedding_in_channels = EMBEDDING_PRUNER.pruning_fns()


def embedding_channel_map(ctx, module: nn.Module, name: str, call, x) -> None:
    """A lookup: the new last dim holds the embedding channels; labels of the index tensor (rare) stay on their dims."""
    out = call.outputs[0]
    ctx.label(out, out.ndim - 1, ctx.channels(module, name, "out"), ctx.unsqueezed(x, out))


def embedding_parts(layer: nn.Module, space, idx) -> list:
    """Out: ``weight[:, c]``; the input side (token ids) owns nothing."""
    return [Part(layer.weight, Rows(1, idx), False)] if space.side == "out" else []


EMBEDDING_FAMILY = register_family(LayerFamily(
    "embedding", EMBEDDING_PRUNER, channel_map=embedding_channel_map, parts=embedding_parts,
    functional_ops=("embedding", "embedding_bag"), standard_types=(nn.Embedding, nn.EmbeddingBag),
))
