"""Pruner options by name, so that they cross process boundaries and JSON files: modules and parameters are
replaced by their qualified names in the model (:func:`options_to_names`) and resolved again on another copy of the
same architecture (:func:`options_from_names`).
"""

from __future__ import annotations

import copy
from typing import Mapping

import torch.nn as nn

from ..validation import resolve_layer
from .decisions import PlanError

__all__ = ["options_to_names", "options_from_names", "json_options", "JSON_OPTIONS", "PRUNER_OPTIONS"]

#: pruner options a plan records (JSON-able once modules are replaced by their qualified names)
JSON_OPTIONS = ("ignored_layers", "round_to", "max_pruning_ratio", "num_heads", "in_channel_groups",
                "out_channel_groups", "prune_num_heads", "prune_head_dims", "prune_depth", "depth_pruning_ratio")
#: every pruner option :func:`options_to_names` accepts (the others are functions or types, kept as they are)
PRUNER_OPTIONS = JSON_OPTIONS + ("forward_fn", "output_transform", "customized_pruners", "unwrapped_parameters",
                                 "root_module_types", "head_pruning_ratio", "depth_importance")


def _names(model: nn.Module):
    mods = {id(m): n for n, m in model.named_modules()}
    params = {id(p): n for n, p in model.named_parameters()}
    return mods, params


def _name_of(obj, mods, params, option: str, model: nn.Module = None) -> str:
    if isinstance(obj, str):
        resolve_layer(model, obj, option, PlanError)  # a name the model has (else: close-name suggestions)
        return obj
    if isinstance(obj, nn.Parameter) and id(obj) in params:
        return params[id(obj)]
    if isinstance(obj, nn.Module) and id(obj) in mods:
        return mods[id(obj)]
    raise PlanError(f"{option}: {type(obj).__name__} {obj!r:.60} is not a submodule or parameter of the model. "
                    "Fix: pass modules from model.modules() (of this model, not a copy) or their qualified names")


def options_to_names(model: nn.Module, **options) -> dict:
    """Pruner options with every module (or parameter) replaced by its qualified name in ``model``.

    Accepts the :class:`~prune_explorer.pruner.BasePruner` options listed in ``PRUNER_OPTIONS``; modules may also
    be given by name already. Options left at None are dropped.

    >>> import torch.nn as nn
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> options_to_names(m, ignored_layers=[m[2]], round_to=4)
    {'ignored_layers': ['2'], 'round_to': 4}
    """
    unknown = sorted(set(options) - set(PRUNER_OPTIONS))
    if unknown:
        raise PlanError(f"unknown pruner option(s) {unknown}; supported: {list(PRUNER_OPTIONS)}")
    mods, params = _names(model)
    out = {}
    for k, v in options.items():
        if v is None:
            continue
        if k == "ignored_layers":
            out[k] = [_name_of(o, mods, params, k, model) for o in ([v] if isinstance(v, (str, nn.Module)) else v)]
        elif k in ("num_heads", "in_channel_groups", "out_channel_groups"):
            out[k] = {_name_of(m, mods, params, k, model): int(n) for m, n in dict(v).items()}
        elif k == "unwrapped_parameters":
            out[k] = [(_name_of(p, mods, params, k, model), int(dim)) for p, dim in v]
        else:
            out[k] = v
    return out


def options_from_names(model: nn.Module, options: Mapping) -> dict:
    """The inverse of :func:`options_to_names`: names resolved to ``model``'s modules and parameters."""
    def resolve(name: str, option: str):
        if not isinstance(name, str):
            return name
        if name == "":
            return model
        try:
            return resolve_layer(model, name, option, PlanError)
        except PlanError as exc:
            raise PlanError(f"{exc}; or use the same architecture the plan (or scan) was made for, or drop that "
                            "option") from None

    out = {}
    for k, v in dict(options).items():
        if k == "ignored_layers":
            out[k] = [resolve(n, k) for n in v]
        elif k in ("num_heads", "in_channel_groups", "out_channel_groups"):
            out[k] = {resolve(n, k): int(c) for n, c in dict(v).items()}
        elif k == "unwrapped_parameters":
            out[k] = [(resolve(n, k), int(dim)) for n, dim in v]
        else:
            out[k] = v
    return out


def json_options(options: Mapping) -> dict:
    """The JSON-able part of name-based pruner options (what a plan records)."""
    return {k: copy.deepcopy(v) for k, v in options.items() if k in JSON_OPTIONS}
