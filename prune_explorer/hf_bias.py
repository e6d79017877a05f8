"""Bias flags of a Hugging Face config that follow the modules: a bias created on a layer the config builds without
one (bias compensation, :mod:`prune_explorer.compensation`, on a Llama ``o_proj`` or ``down_proj``) is described
by turning the config's flag on (``attention_bias``, ``mlp_bias``, or any boolean ``*bias*`` field that makes
transformers build that bias), so ``save_pretrained`` -> ``from_pretrained`` rebuilds the same model.

A flag covers several layers (Llama's ``attention_bias``: ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj`` of
every layer), so every layer the flag gives a bias that has none gets a zero bias: the model computes exactly
what it computed, and the checkpoint holds every tensor the rebuilt model expects (no "newly initialized"
weights). When the created biases go away again (an undo of the compensated pruning), :func:`sync_bias_flags`
(run after every pruning and undo with :func:`prune_explorer.hf.sync_config`, once it changed something) removes
the zero biases it added and puts the flags back, so an undo restores the model and its config exactly.

A bias that no flag describes (a model that hard-codes ``bias=False``) is reported: the model still computes the
right thing but ``from_pretrained`` would drop that bias; save it with ``pe.save_pruned`` (which replays the pruning
history), or compensate with ``Compensation(create_bias=False)``.
"""

from __future__ import annotations

import copy
import weakref
from typing import Dict, List, Set

import torch
import torch.nn as nn

__all__ = ["sync_bias_flags", "bias_flags_changed"]

# model -> {"flags": {config field: old value}, "zeros": [modules given a zero bias]}
_CHANGED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def bias_flags_changed(model: nn.Module) -> bool:
    """Whether :func:`sync_bias_flags` turned a flag of ``model``'s config on (then it must run after every pruning
    and undo, to follow the biases)."""
    return model in _CHANGED


def _own_bias(module: nn.Module):
    return dict(module.named_parameters(recurse=False)).get("bias")


def _bias_keys(model: nn.Module, skip_zero: Set[int] = frozenset()) -> Set[str]:
    """``"<module>.bias"`` of every module holding a ``bias`` parameter (the zero biases of modules in ``skip_zero``
    left out)."""
    out = set()
    for name, m in model.named_modules():
        b = _own_bias(m)
        if b is None or (id(m) in skip_zero and not b.detach().any()):
            continue
        out.add(f"{name}.bias" if name else "bias")
    return out


#: (model class, the config's structure) -> bias keys of a model built from it (widths never change which layers
#: have a bias, so pruning steps reuse one build)
_BUILT: Dict[tuple, Set[str]] = {}


def _structure(cfg) -> str:
    """What decides which layers exist and have a bias: every config field but the widths (ints and floats), the
    layer counts (``*layers*`` fields) and per-layer lists kept."""
    d = cfg.to_dict()
    return repr(sorted((k, repr(v)) for k, v in d.items()
                       if not (isinstance(v, (int, float)) and not isinstance(v, bool)) or "layer" in k.lower()))


def _built_bias_keys(model: nn.Module, cfg) -> Set[str]:
    """The bias keys of ``type(model)`` built from ``cfg`` on the meta device (no memory, no weights)."""
    key = (type(model), _structure(cfg))
    hit = _BUILT.get(key)
    if hit is None:
        hit = _BUILT[key] = _build_bias_keys(model, cfg)
        if len(_BUILT) > 64:
            _BUILT.pop(next(iter(_BUILT)))
    return hit


def _build_bias_keys(model: nn.Module, cfg) -> Set[str]:
    with torch.device("meta"):
        build = getattr(type(model), "_from_config", None)
        fresh = build(copy.deepcopy(cfg)) if build is not None else type(model)(copy.deepcopy(cfg))
    return _bias_keys(fresh)


def _flag_candidates(cfg) -> List[str]:
    return sorted(k for k, v in cfg.to_dict().items() if isinstance(v, bool) and not v and "bias" in k.lower())


def _set_bias(module: nn.Module, value) -> None:
    if value is None:
        module.register_parameter("bias", None)
    else:
        module.bias = value


def sync_bias_flags(model: nn.Module) -> List[str]:
    """Make ``model.config``'s bias flags describe the biases ``model`` has (module docstring); returns the biases
    no flag can describe, as sentences (empty when the config describes every bias). A no-op for a model whose
    biases the config already describes."""
    cfg = model.config
    state = _CHANGED.get(model)
    zeros = {id(m) for m in (state["zeros"] if state else [])}
    old_flags: Dict[str, bool] = dict(state["flags"]) if state else {}
    base_cfg = copy.deepcopy(cfg)
    for flag, value in old_flags.items():
        setattr(base_cfg, flag, value)
    own = _bias_keys(model, skip_zero=zeros)
    base = _built_bias_keys(model, base_cfg)
    extra = own - base
    needed: Dict[str, Set[str]] = {}
    covered: Set[str] = set()
    for flag in (_flag_candidates(base_cfg) if extra else []):
        trial = copy.deepcopy(base_cfg)
        setattr(trial, flag, True)
        gives = _built_bias_keys(model, trial) - base
        if gives & extra:
            needed[flag] = gives
            covered |= gives & extra
    problems = [f"{k} has a bias that no field of {type(cfg).__name__} describes (from_pretrained would drop it)"
                for k in sorted(extra - covered)]
    # undo what an earlier sync did, then do what is needed now (unchanged flags keep their zero biases)
    if state and set(needed) != set(old_flags):
        for m in state["zeros"]:
            b = _own_bias(m)
            if b is not None and not b.detach().any():
                _set_bias(m, None)
        for flag, value in old_flags.items():
            setattr(cfg, flag, value)
        del _CHANGED[model]
        state, old_flags = None, {}
    if not needed:
        return problems
    modules = dict(model.named_modules())
    added = list(state["zeros"]) if state else []
    for key in sorted(set().union(*needed.values()) - _bias_keys(model)):
        m = modules.get(key[: -len(".bias")])
        w = getattr(m, "weight", None)
        if m is None or not isinstance(w, torch.Tensor):
            problems.append(f"{key}: config flag {sorted(needed)} builds a bias there but the module has no weight")
            continue
        _set_bias(m, nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device),
                                  requires_grad=w.requires_grad))
        added.append(m)
    for flag in needed:
        old_flags.setdefault(flag, getattr(cfg, flag))
        setattr(cfg, flag, True)
    _CHANGED[model] = {"flags": old_flags, "zeros": added}
    return problems
