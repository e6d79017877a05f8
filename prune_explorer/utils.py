"""Torch-Pruning's ``tp.utils``: measuring (MACs, parameters) and progressive pruning to a target speed-up.

Example::

    >>> import torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> x = torch.randn(1, 3, 224, 224)
    >>> macs, params = pe.utils.count_ops_and_params(model, x)        # 1.82 GMACs, 11.69 M parameters
    >>> pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), iterative_steps=50,
    ...                                    pruning_ratio=0.9, ignored_layers=[model.fc])
    >>> speedup = pe.utils.progressive_pruning(pruner, x, target_speedup=2.0)   # stops once MACs halved
"""

from __future__ import annotations

from typing import Callable, Optional

from .errors import PruningError
from .measure import count_macs, count_ops_and_params, count_params
from .model_diff import flatten_as_list, print_tool

__all__ = ["count_ops_and_params", "count_macs", "count_params", "progressive_pruning", "print_tool",
           "flatten_as_list"]


def progressive_pruning(pruner, example_inputs, target_speedup: float, forward_fn: Optional[Callable] = None) -> float:
    """Call ``pruner.step()`` until MACs drop by ``target_speedup`` (original / current) or the steps run out.

    Returns the speed-up reached (a float >= 1). Choose ``iterative_steps`` large (e.g. 50-200) and
    ``pruning_ratio`` high enough that the target is reachable; each step prunes a little more, so the result
    lands just past the target. Raises :class:`~prune_explorer.PruningError` for a target below 1.
    """
    if not target_speedup or target_speedup < 1:
        raise PruningError(f"target_speedup must be >= 1 (original MACs / pruned MACs), got {target_speedup!r}")
    model = getattr(pruner, "model", None) or pruner.DG.model
    base = count_macs(model, example_inputs, forward_fn=forward_fn)
    speedup = 1.0
    while speedup < target_speedup and pruner.current_step < pruner.iterative_steps:
        pruner.step()
        speedup = base / max(count_macs(model, example_inputs, forward_fn=forward_fn), 1)
    return float(speedup)
