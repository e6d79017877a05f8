"""Measuring models: multiply-accumulates (MACs) and parameter counts.

``count_ops_and_params(model, example_inputs)`` mirrors ``torch_pruning.utils.count_ops_and_params``; the
conventions are written out in :mod:`prune_explorer.measure.ops_counter`.
"""

from .ops_counter import MacCounter, count_macs, count_ops_and_params
from .params import ParamCounter, count_params, params_per_module, unique_parameters

__all__ = [
    "MacCounter",
    "ParamCounter",
    "count_macs",
    "count_ops_and_params",
    "count_params",
    "params_per_module",
    "unique_parameters",
]
