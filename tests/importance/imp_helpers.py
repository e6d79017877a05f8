"""Helpers shared by the importance tests (their models are in tests/small_models.py)."""

from __future__ import annotations

import torch
from torch import nn

import prune_explorer as pe


def group_of(model, module, example, fn=pe.prune_conv_out_channels):
    """The full group rooted at ``module``'s outputs."""
    DG = pe.DependencyGraph().build_dependency(model, example)
    for g in DG.get_all_groups():
        if g.root_module is module and g.pruning_fn == fn:
            return DG, g
    raise AssertionError(f"no group rooted at {module}")
