"""Torch-Pruning's serialization names — ``pe.state_dict``, ``pe.load_state_dict``, ``pe.save``, ``pe.load`` — made safe.

A pruned model no longer matches the architecture its code builds. Torch-Pruning's ``tp.state_dict(model)`` therefore
pickles every module's ``__dict__`` and must be loaded with ``weights_only=False``, which runs whatever code the file
names. Here the same names hold only plain data — the JSON-able pruning history, the weights and the modules' plain
attributes (:func:`prune_explorer.history.pruned_state`, the dict :func:`~prune_explorer.save_pruned` writes) — and
:func:`load_state_dict` rebuilds the pruned architecture on a freshly constructed model by replaying the history::

    >>> import os, tempfile, torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18().eval()
    >>> x = torch.randn(1, 3, 64, 64)
    >>> pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.5).step()
    >>> path = os.path.join(tempfile.mkdtemp(), "r18_pruned.pth")
    >>> pe.save(pe.state_dict(model), path)
    >>> fresh = pe.load_state_dict(torchvision.models.resnet18().eval(), pe.load(path))
    >>> torch.equal(fresh(x), model(x)), fresh.conv1.out_channels
    (True, 32)
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Union

import torch
import torch.nn as nn

from .history import load_pruned_state, pruned_state

__all__ = ["state_dict", "load_state_dict", "save", "load"]

PathOrFile = Union[str, os.PathLike, BinaryIO]


def state_dict(model: nn.Module) -> dict:
    """The state of a (pruned) model as plain data: ``{"format", "model_class", "history", "state_dict",
    "attributes"}`` (see :func:`prune_explorer.history.pruned_state`). Save it with :func:`save` or ``torch.save``;
    it loads with ``torch.load(weights_only=True)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"pe.state_dict expects an nn.Module, got {type(model).__name__}")
    return pruned_state(model)


def load_state_dict(model: nn.Module, state_dict: dict, strict: bool = True) -> nn.Module:
    """Rebuild ``model`` — freshly constructed, same class and constructor arguments, unpruned — into the saved
    pruned model: replay the pruning history, restore the saved attributes, load the weights. Returns ``model``.

    All or nothing: a state dict that does not fit (another model, a plain ``model.state_dict()``) raises
    :class:`~prune_explorer.PruningError` naming the problem, and the model is left unchanged."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"pe.load_state_dict expects an nn.Module first, got {type(model).__name__}")
    if isinstance(state_dict, dict) and "full_state_dict" in state_dict:
        from .errors import PruningError

        raise PruningError("this is a Torch-Pruning state dict (pickled module dicts); prune_explorer loads only its "
                           "own plain-data format. Load the model with Torch-Pruning once, then pe.save(pe.state_dict"
                           "(model), path)")
    return load_pruned_state(model, state_dict, strict=strict)


def save(obj: Any, f: PathOrFile, **kwargs) -> None:
    """``torch.save`` for plain data (e.g. :func:`state_dict`'s result). A whole ``nn.Module`` is refused: pickling
    it stores code that loading would have to run; save ``pe.state_dict(model)`` instead."""
    if isinstance(obj, nn.Module):
        raise TypeError(
            "pe.save writes plain data only, not a pickled nn.Module; use pe.save(pe.state_dict(model), path) and "
            "later pe.load_state_dict(fresh_model, pe.load(path)) (or pe.save_pruned / pe.load_pruned)"
        )
    torch.save(obj, f, **kwargs)


def load(f: PathOrFile, map_location=None, weights_only: bool = True, **kwargs) -> Any:
    """``torch.load`` with ``weights_only=True`` by default: plain tensors and containers only, no code runs.

    Pass ``weights_only=False`` only for a file you trust (it can run arbitrary code)."""
    return torch.load(f, map_location=map_location, weights_only=weights_only, **kwargs)
