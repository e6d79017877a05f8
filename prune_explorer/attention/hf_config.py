"""The Hugging Face config side of attention heads: what a pruned attention module needs so that ``from_pretrained``
rebuilds it from ``model.config`` exactly (used by :mod:`prune_explorer.hf`).

- the attention temperature: a module whose ``scaling`` is ``head_dim ** -0.5`` gets the new head size's scaling, the
  ratio folded into the query projection (:func:`keep_temperature`);
- a hidden width the attention module keeps as its own attribute (T5's ``d_model``) follows the config's
  (:func:`mirror_hidden`);
- rotary frequencies of pruned head dims are written into ``config.rope_parameters`` (:func:`carry_rotary_frequencies`)
  and checked against a module rebuilt from the config (:func:`rotary_differences`).
"""

from __future__ import annotations

import copy
import math
from typing import List

import torch
import torch.nn as nn

from .head_bookkeeping import SCALE_ATTRS, AttentionWidths

__all__ = ["scale_param", "keep_temperature", "mirror_hidden", "carry_rotary_frequencies", "rotary_differences",
           "FOLD_ATTR"]

FOLD_ATTR = "_prune_explorer_scale_fold"  # on the query projection: the factor folded into its weights so far


def scale_param(layer: nn.Module, attr: str, factor: float) -> None:
    """Replace ``layer.<attr>`` (a tensor) by a new parameter holding it times ``factor`` (never in place)."""
    p = getattr(layer, attr, None)
    if isinstance(p, torch.Tensor):
        new = nn.Parameter(p.detach() * factor, requires_grad=p.requires_grad)
        setattr(layer, attr, new)



def keep_temperature(a: AttentionWidths) -> None:
    """Keep ``q . k * scaling`` unchanged while ``scaling`` follows the head size.

    A module whose ``scaling`` is ``head_dim ** -0.5`` is rebuilt by ``from_pretrained`` with the *new* head size's
    scaling. So the scaling is set to ``head_dim ** -0.5`` and the ratio to the one the weights were trained with
    is folded into the query projection (its weight and bias; the factor folded so far is recorded on the
    projection, next to the weights it describes, so undo and repeated calls stay exact)."""
    m = a.module
    for attr in SCALE_ATTRS:
        s = m.__dict__.get(attr)
        if isinstance(s, float):
            break
    else:
        return
    fold = float(a.q.__dict__.get(FOLD_ATTR, 1.0))
    effective = s * fold  # what the current weights compute with
    canonical = a.head_dim ** -0.5
    if math.isclose(s, canonical, rel_tol=1e-9):
        return
    # only a scaling of the canonical form for some integer head size follows the head size
    d_of_s = round(s ** -2) if s > 0 else 0
    if d_of_s <= 1 or not math.isclose(s, d_of_s ** -0.5, rel_tol=1e-6):  # 1.0: unscaled (T5), not a head size
        return
    new_fold = effective / canonical
    scale_param(a.q, "weight", new_fold / fold)
    scale_param(a.q, "bias", new_fold / fold)
    a.q.__dict__[FOLD_ATTR] = new_fold
    setattr(m, attr, canonical)



def mirror_hidden(att, names, old: int, new: int) -> None:
    """Attention modules that keep the config's hidden width as their own attribute without reading it in the forward
    (T5Attention's ``d_model``) get the new width, as a model built from the updated config would have."""
    for a in att:
        for n in names:
            v = a.module.__dict__.get(n)
            if isinstance(v, int) and not isinstance(v, bool) and v == old:
                setattr(a.module, n, new)



def carry_rotary_frequencies(model: nn.Module, cfg, rotary=None) -> None:
    """Pruned head dims keep their rotary frequencies (``inv_freq``, one per pair of dims), which a model built from
    ``rope_theta`` and the new ``head_dim`` would not compute. For the default rotary embedding they are written
    into ``config.rope_parameters`` exactly, as LongRoPE's per-frequency factors (``inv_freq_j = 1 / (factor_j *
    rope_theta ** (2j / head_dim))``, the same factors for short and long sequences, attention factor 1), so
    ``from_pretrained`` rebuilds the same frequencies. The live model's rotary module keeps its own buffer.
    ``rotary``: the modules of ``model`` with an ``inv_freq`` buffer, when the caller found them already (else the
    whole model is searched)."""
    params = getattr(cfg, "rope_parameters", None)
    if not isinstance(params, dict) or "rope_theta" not in params:
        return
    rope_type = params.get("rope_type", "default")
    if rope_type not in ("default", "longrope") or params.get("partial_rotary_factor", 1.0) != 1.0:
        return
    for m in (model.modules() if rotary is None else rotary):
        inv = m._buffers.get("inv_freq")
        if not isinstance(inv, torch.Tensor) or inv.device.type == "meta" or inv.dim() != 1:
            continue
        theta = float(params["rope_theta"])
        dim = 2 * inv.numel()
        default = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        kept = inv.detach().float().cpu()
        if rope_type == "default" and torch.allclose(kept, default, rtol=1e-6, atol=0):
            return
        if rope_type == "longrope":
            short, long = params.get("short_factor"), params.get("long_factor")
            if short == long and isinstance(short, list) and len(short) == kept.numel() and torch.allclose(
                    kept, default / torch.tensor(short, dtype=torch.float32), rtol=1e-6, atol=0):
                return
            if short != long or params.get("factor") != 1.0:  # a LongRoPE model of its own: not ours to rewrite
                return
        factors = (default / kept).tolist()
        max_pos = int(getattr(cfg, "max_position_embeddings", 0) or params.get("original_max_position_embeddings", 0))
        cfg.rope_parameters = {**{k: v for k, v in params.items() if k != "rope_type"}, "rope_type": "longrope",
                               "short_factor": factors, "long_factor": list(factors), "factor": 1.0,
                               "attention_factor": float(getattr(m, "attention_scaling", 1.0)),
                               "original_max_position_embeddings": max_pos}
        return



def rotary_differences(model: nn.Module) -> List[str]:
    """Rotary frequencies (``inv_freq``, not saved in the checkpoint): those of the kept head dims must be the ones a
    model built from the config computes."""
    out = []
    for name, m in model.named_modules():
        inv = m._buffers.get("inv_freq")
        if not isinstance(inv, torch.Tensor) or inv.device.type == "meta":
            continue
        try:
            fresh = type(m)(config=copy.deepcopy(model.config))
        except Exception:
            continue
        ref = fresh._buffers.get("inv_freq")
        if not isinstance(ref, torch.Tensor):
            continue
        if ref.shape != inv.shape or not torch.allclose(ref.float(), inv.detach().float().cpu(), rtol=1e-5, atol=0):
            out.append(f"{name or 'the model'}: the rotary frequencies of the kept head dims ({inv.numel()} pairs) are "
                       "not the ones a model built from the config computes (config.rope_theta / head_dim cannot "
                       "express a pruned subset)")
    return out
