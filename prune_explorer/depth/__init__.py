"""Depth: whole residual blocks as groups of their own kind (``kind == "depth"``): found (:func:`find_blocks`),
scored by block influence on calibration data (:func:`block_influence`), removed and undone exactly
(:func:`remove_blocks`, :class:`DepthRecord`), chosen by the lowest influence (:func:`prune_depth`); groups of a pruner's walk with ``prune_depth=True``
(:mod:`.source`: proposed, pruned and undone through the pruner's driver, in plans and budgets)."""

from .blocks import DEPTH_KIND, DepthGroup, find_blocks
from .influence import BlockInfluence, block_influence
from .remove import DepthRecord, remove_blocks
from .source import DepthCandidate, DepthProposal, DepthSource, attach_depth

__all__ = ["DEPTH_KIND", "DepthGroup", "find_blocks", "BlockInfluence", "block_influence", "DepthRecord",
           "remove_blocks", "prune_depth", "DepthSource", "DepthCandidate", "DepthProposal", "attach_depth"]


def prune_depth(model, calibration, n_blocks: int, example_inputs=None, groups=None, scores=None) -> DepthRecord:
    """Remove the ``n_blocks`` depth groups of lowest block influence on ``calibration`` (or lowest ``scores``,
    one per group). Returns the :class:`DepthRecord` (``.undo()``)."""
    groups = list(groups) if groups is not None else find_blocks(model, example_inputs)
    if not 0 < n_blocks < len(groups) + (0 if any(g.mode == "delete" for g in groups) else 1):
        raise ValueError(f"prune_depth: n_blocks={n_blocks} must be between 1 and the {len(groups)} depth groups "
                         "(a layer stack keeps at least one layer)")
    s = scores if scores is not None else block_influence(model, groups, calibration)
    order = sorted(range(len(groups)), key=lambda k: (float(s[k]), k))
    return remove_blocks(model, [groups[k] for k in sorted(order[:n_blocks])])
