"""Progressive pruning: step a pruner until the model's MACs drop by a target factor (Torch-Pruning's
``tp.utils.progressive_pruning``, also available as ``pe.utils.progressive_pruning``).

    >>> import torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> x = torch.randn(1, 3, 64, 64)
    >>> pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), iterative_steps=10,
    ...                                    pruning_ratio=0.9, ignored_layers=[model.fc])
    >>> speedup = progressive_pruning(pruner, x, target_speedup=2.0)   # stops once MACs halved
    >>> speedup >= 2.0 and pruner.current_step < pruner.iterative_steps   # reached before the last step
    True
"""

from __future__ import annotations

from typing import Callable, Optional

from ..errors import PruningError
from ..measure import count_macs

__all__ = ["progressive_pruning"]


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
