"""Which block of the model each traced node is drawn in (plain Python, no widgets).

Blocks are module paths (``layer3.1``); a layer sits in its parent module, an operation where the module that ran
it most likely is (:func:`assign_blocks`); modules that only call their children (:func:`container_blocks`) never
hold an operation. Also what the graph view knows of operations: :data:`ELEMENTWISE_OPS` (drawn as edges) and
:data:`CONCAT_OPS` (placed beside the blocks they join).

Example::

    >>> block_prefixes("layer3.1"), common_block("layer1.0", "layer1.1"), block_depth("")
    (['layer3', 'layer3.1'], 'layer1', 0)
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Set

__all__ = ["assign_blocks", "container_blocks", "ELEMENTWISE_OPS", "CONCAT_OPS", "parent_block", "block_prefixes",
           "block_depth", "common_block"]

#: Operations that keep every channel where it is and have one input: drawn as plain edges by default.
ELEMENTWISE_OPS = frozenset({
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "selu", "celu", "gelu",
    "silu", "silu_", "mish", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "sigmoid", "tanh",
    "softplus", "prelu", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "identity", "contiguous", "clone", "detach", "to", "float", "half", "type_as",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "interpolate", "upsample", "pad",
})
#: Operations that join their inputs along the channel dimension (placed beside the blocks they join).
CONCAT_OPS = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack"})


def parent_block(path: str) -> str:
    return path.rpartition(".")[0]


def block_prefixes(block: str) -> List[str]:
    """``"layer3.1" -> ["layer3", "layer3.1"]``."""
    if not block:
        return []
    parts = block.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def block_depth(block: str) -> int:
    return 0 if not block else block.count(".") + 1


def common_block(a: str, b: str) -> str:
    """The deepest block holding both ``a`` and ``b`` (``""`` is the model itself)."""
    pa, pb = block_prefixes(a), block_prefixes(b)
    out = ""
    for x, y in zip(pa, pb):
        if x != y:
            break
        out = x
    return out


def assign_blocks(nodes: Sequence, containers: Iterable[str] = ()) -> Dict[str, str]:
    """The block (module path) each traced node is drawn in.

    A layer or parameter lives in its parent module (``layer1.0.conv1`` in ``layer1.0``). An operation has no
    module of its own; it is placed where the module that ran it most likely is:

    * one input: with that input (an activation follows the layer before it);
    * several inputs of which two or more are layers: in the deepest block holding all of those layers (a
      residual add joins ``bn2`` and ``downsample.1`` in ``layer1.0``; DenseNet's concatenations sit in their
      dense block); a concatenation with one layer input sits beside that layer's block, not inside it;
    * otherwise with its deepest input (the latest one on ties: a transformer's residual add joins the block's
      attention output with what came in);

    and never in a ``containers`` block (``nn.Sequential`` and friends only call their children, so an operation
    joining tensors ran in the module around them).
    """
    containers = set(containers)
    block: Dict[str, str] = {}
    order = {n.name: k for k, n in enumerate(nodes)}
    for n in nodes:  # trace order: inputs come first
        if n.kind in ("layer", "param"):
            block[n.name] = parent_block(n.name)
            continue
        if n.kind in ("input", "output"):
            block[n.name] = ""
            continue
        ins = sorted((i for i in n.inputs if i.name in block), key=lambda i: order[i.name])
        if len(ins) <= 1:
            block[n.name] = block[ins[0].name] if ins else ""
            continue
        layer_ins = [block[i.name] for i in ins if i.kind in ("layer", "param")]
        if len(layer_ins) >= 2:
            b = layer_ins[0]
            for other in layer_ins[1:]:
                b = common_block(b, other)
        elif layer_ins and n.op in CONCAT_OPS:
            b = parent_block(layer_ins[0])  # a concatenation joins block outputs: it sits beside them, not inside
        else:
            b = max(reversed([block[i.name] for i in ins]), key=block_depth)
        while b and b in containers:
            b = parent_block(b)
        block[n.name] = b
    return block


def container_blocks(model) -> Set[str]:
    """Paths of the modules that only call their children (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``
    and subclasses that keep their ``forward``)."""
    import torch.nn as nn

    out = set()
    for name, m in model.named_modules():
        if not name:
            continue
        if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
            out.add(name)
        elif isinstance(m, (nn.ModuleList, nn.ModuleDict)) and type(m).forward in (nn.ModuleList.forward,
                                                                                 nn.ModuleDict.forward,
                                                                                 nn.Module.forward):
            out.add(name)
    return out
