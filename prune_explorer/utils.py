"""Torch-Pruning's ``tp.utils``: measuring (MACs, parameters) and progressive pruning to a target speed-up.

    >>> import torch, torchvision, prune_explorer as pe
    >>> macs, params = pe.utils.count_ops_and_params(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224))
    >>> f"{macs / 1e9:.2f} GMACs, {params / 1e6:.2f} M parameters"
    '1.82 GMACs, 11.69 M parameters'

The names live in :mod:`prune_explorer.measure` (counting), :mod:`prune_explorer.measure.benchmark` (``benchmark``:
latency, fps, throughput, memory), :mod:`prune_explorer.draw` (``draw_*`` pictures), :mod:`prune_explorer.model_diff`
(printing) and :mod:`prune_explorer.pruner.progressive` (``progressive_pruning(pruner, example_inputs,
target_speedup)``, with an example).
"""

from __future__ import annotations

from .draw import draw_computational_graph, draw_dependency_graph, draw_groups
from .measure import benchmark, count_macs, count_ops_and_params, count_params
from .model_diff import flatten_as_list, print_tool
from .pruner.progressive import progressive_pruning

__all__ = ["count_ops_and_params", "count_macs", "count_params", "progressive_pruning", "print_tool",
           "flatten_as_list", "benchmark", "draw_computational_graph", "draw_dependency_graph", "draw_groups"]
