"""Hugging Face transformers models after pruning: ``model.config`` follows the pruned module sizes, and
``save_pretrained`` -> ``from_pretrained`` works whenever the config can describe the pruned model.

A transformers model is rebuilt from its config: ``from_pretrained`` constructs every layer from ``hidden_size``,
``intermediate_size``, ``num_attention_heads``, ``num_key_value_heads``, ``head_dim`` (or the model's own names:
T5's ``d_model`` / ``d_ff`` / ``d_kv`` / ``num_heads``, GPT-2's ``n_embd`` / ``n_inner`` / ``n_head``) and only
then loads the weights. After pruning, :func:`sync_config` (run automatically after every pruning and undo on a
model that has a Hugging Face config) measures those widths on the modules and writes them into the config when
every layer agrees. It also brings the attention modules' own bookkeeping in line with their weights
(``num_heads``, ``num_key_value_groups``, ``all_head_size``...), and keeps the attention temperature: when the head
size shrinks, a module whose ``scaling`` was ``head_dim ** -0.5`` gets the new ``head_dim ** -0.5`` and the ratio
is folded into the query projection, so the pruned model computes exactly what a model rebuilt from the config
computes.

T5-style models (``T5ForConditionalGeneration`` and its relatives) scale the decoder output fed to the tied
``lm_head`` by ``model.model_dim ** -0.5``, with ``model_dim`` taken from ``config.d_model`` when the model is built.
When the hidden width is pruned, ``model.model_dim`` is set to the new width (as ``from_pretrained`` would) and the
ratio ``sqrt(new / old)`` is folded into the decoder's final layer norm weight (an RMS norm: its output scales
with its weight), so the logits are unchanged (up to float rounding). The decoder's last hidden state (the final
norm's output, ``decoder_hidden_states[-1]``) is therefore rescaled by that constant. Undo restores both exactly.

When widths differ from layer to layer (a global or per-layer ratio), or a size the config cannot express changed
(rotary frequencies of pruned head dims, a head size the model derives as ``hidden_size / num_attention_heads``),
:func:`check_config_round_trip` says so, naming the sizes, and points to ``pe.save_pruned`` / ``pe.load_pruned``,
which replay the pruning history on a freshly built model instead.

transformers is an optional dependency: nothing here imports it until a function is called on a model that has a
Hugging Face config (detected by duck typing).

Example (requires ``transformers``)::

    >>> import torch, prune_explorer as pe
    >>> from transformers import LlamaConfig, LlamaForCausalLM    # doctest: +SKIP
    >>> model = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...     num_attention_heads=4, num_key_value_heads=2, vocab_size=128))   # doctest: +SKIP
    >>> ids = torch.randint(0, 128, (1, 16))                     # doctest: +SKIP
    >>> pe.pruner.MagnitudePruner(model, {"input_ids": ids}, pe.importance.MagnitudeImportance(),
    ...     pruning_ratio=0.5, ignored_layers=[model.lm_head], prune_num_heads=True,
    ...     head_pruning_ratio=0.5).step()                       # doctest: +SKIP
    >>> model.config.hidden_size, model.config.num_attention_heads   # doctest: +SKIP
    (32, 2)
    >>> pe.hf.check_config_round_trip(model)                     # doctest: +SKIP
    >>> model.save_pretrained("pruned-llama")                    # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import warnings
import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .errors import PruningError
from .attention.head_bookkeeping import (HEAD_DIM_ATTRS, HEADS_ATTRS, AttentionWidths, K_NAMES, Q_NAMES,
                                         attention_modules as _attentions, child as _child,
                                         out_features as _out_features, set_module_attrs)
from .hf_bias import bias_flags_changed, sync_bias_flags
from .attention.hf_config import (carry_rotary_frequencies, keep_temperature, mirror_hidden, rotary_differences,
                                  scale_param)

__all__ = ["is_hf_model", "sync_config", "config_problems", "check_config_round_trip", "warn_config_problems",
           "AttentionWidths", "measure_widths", "stacked_experts", "config_mismatches", "ModelModules", "scan_modules",
           "sync_targets"]

#: the up projection of an MLP block (its output width is the intermediate size), by child name
MLP_UP_NAMES = ("up_proj", "gate_proj", "fc1", "wi", "wi_0", "c_fc", "fc_in", "w1", "lin1", "dense_h_to_4h")
#: the name of a mixture-of-experts block's always-on MLP (its width has a config field of its own)
SHARED_EXPERT_NAMES = ("shared_expert", "shared_experts", "shared_mlp")
#: config fields holding the width of each routed expert's MLP, first match wins (else ``INTERMEDIATE_FIELDS``)
EXPERT_FIELDS = ("moe_intermediate_size", "expert_intermediate_size")
#: config fields holding the shared expert's MLP width
SHARED_EXPERT_FIELDS = ("shared_expert_intermediate_size",)
#: config fields holding the MLP width, first match wins
INTERMEDIATE_FIELDS = ("intermediate_size", "d_ff", "n_inner", "ffn_dim", "ffn_hidden_size")
#: on a T5-style decoder's final norm weight (the tensor): the ``model_dim`` it is calibrated for
_MODEL_DIM_ATTR = "_prune_explorer_model_dim"
#: on the model: its ``model_dim`` before any pruning
_ORIGINAL_MODEL_DIM = "_prune_explorer_original_model_dim"


def is_hf_model(model) -> bool:
    """True for a model with a Hugging Face config (``model.config`` with ``to_dict`` and ``model_type``) and
    ``save_pretrained``: a ``transformers.PreTrainedModel`` or anything built like one (no import needed)."""
    cfg = getattr(model, "config", None)
    return (isinstance(model, nn.Module) and cfg is not None and callable(getattr(cfg, "to_dict", None))
            and hasattr(cfg, "model_type") and callable(getattr(model, "save_pretrained", None)))


# ----------------------------------------------------------------------------------------------------------------------
# measuring the pruned model
# ----------------------------------------------------------------------------------------------------------------------
def _hidden_widths(model: nn.Module) -> List[int]:
    """The residual width: the input embedding's width (``get_input_embeddings``), or a patch embedding's channels."""
    try:
        emb = model.get_input_embeddings()
    except Exception:  # models without input embeddings raise NotImplementedError
        emb = None
    if isinstance(emb, nn.Embedding):
        return [int(emb.weight.shape[1])]
    if isinstance(emb, nn.Module):
        for m in emb.modules():
            if isinstance(m, nn.modules.conv._ConvNd):
                return [int(m.out_channels)]
    return []


@dataclass(frozen=True)
class ModelModules:
    """The modules :func:`measure_widths` and :func:`sync_config` read, found by one walk of the module tree
    (:func:`scan_modules`). Pruning changes widths, never the module tree, so a caller that syncs after every
    pruning (the dependency graph) scans once and passes the scan: each sync then reads a few attributes per block
    instead of walking the whole model several times."""

    attention: List[Tuple[str, nn.Module]]  # modules with q / k projections (attention_candidates)
    mlp_up: List[nn.Module]  # the up projection of every MLP block but shared experts (its width: intermediate)
    shared_up: List[nn.Module]  # the up projection of every shared-experts MLP
    experts: List[Tuple[str, nn.Module]]  # modules holding stacked 3-D expert parameters (``down_proj``)
    rotary: List[nn.Module]  # modules with a 1-D ``inv_freq`` buffer (rotary embeddings)


def _mlp_up(name: str, m: nn.Module) -> Optional[nn.Module]:
    up = _child(m, MLP_UP_NAMES)
    if up is None and name.rsplit(".", 1)[-1] == "intermediate":
        up = _child(m, ("dense",))  # BERT-style: layer.intermediate.dense
    return up if up is not None and _child(m, Q_NAMES) is None else None


def scan_modules(model: nn.Module) -> ModelModules:
    """One walk of ``model``'s module tree: the modules whose widths the config describes (:class:`ModelModules`)."""
    attention, mlp_up, shared_up, experts, rotary = [], [], [], [], []
    for name, m in model.named_modules():
        if _child(m, Q_NAMES) is not None and _child(m, K_NAMES) is not None:
            attention.append((name, m))
        up = _mlp_up(name, m)
        if up is not None:
            (shared_up if name.rsplit(".", 1)[-1] in SHARED_EXPERT_NAMES else mlp_up).append(up)
        down = m._parameters.get("down_proj")
        if isinstance(down, torch.Tensor) and down.dim() == 3:
            experts.append((name, m))
        inv = m._buffers.get("inv_freq")
        if isinstance(inv, torch.Tensor) and inv.dim() == 1:
            rotary.append(m)
    return ModelModules(attention, mlp_up, shared_up, experts, rotary)


def _mlp_widths(model: nn.Module, shared: bool = False, modules: Optional[ModelModules] = None) -> List[int]:
    """The MLP widths (``shared=False``: of every MLP but the shared experts of mixture-of-experts blocks;
    ``shared=True``: of those only)."""
    modules = scan_modules(model) if modules is None else modules
    return [int(_out_features(up)) for up in (modules.shared_up if shared else modules.mlp_up)]


def stacked_experts(model: nn.Module, modules: Optional[ModelModules] = None) -> List[Tuple[str, nn.Module, int]]:
    """``(name, module, width)`` of every mixture-of-experts module that holds its experts as stacked 3-D
    parameters (transformers 5: ``gate_up_proj`` or ``up_proj`` of shape (experts, 2 * width or width, hidden) and
    ``down_proj`` (experts, hidden, width); the transposed layout (``is_transposed``) swaps the last two dims).
    ``width``: each expert's MLP width, in channels (the same for every expert: one tensor holds them all).
    ``modules``: :func:`scan_modules` of ``model``, when the caller kept it."""
    out = []
    for name, m in (scan_modules(model) if modules is None else modules).experts:
        down = m._parameters.get("down_proj")
        if not isinstance(down, torch.Tensor) or down.dim() != 3:
            continue
        width = down.shape[1] if getattr(m, "is_transposed", False) else down.shape[2]
        out.append((name, m, int(width)))
    return out


def measure_widths(model: nn.Module, modules: Optional[ModelModules] = None,
                   attentions: Optional[List[AttentionWidths]] = None) -> Dict[str, List[int]]:
    """The widths the config describes, as the modules have them now: ``{"hidden", "intermediate", "heads",
    "kv_heads", "head_dim"}`` -> the values found (one per layer; a uniformly pruned model has one distinct value
    each). Mixture-of-experts models also have ``experts`` (each routed expert's MLP width, per block) and
    ``shared_intermediate`` (the blocks' shared, always-on, experts' widths). In channels, except ``heads`` / ``kv_heads`` (heads).
    ``modules``: :func:`scan_modules` of ``model``, when the caller kept it (one walk of the model instead of four);
    ``attentions``: its attention modules' widths as the weights give them now, when the caller just measured them."""
    modules = scan_modules(model) if modules is None else modules
    att = _attentions(model, candidates=modules.attention) if attentions is None else attentions
    out = {
        "hidden": _hidden_widths(model),
        "intermediate": _mlp_widths(model, modules=modules),
        "heads": [a.heads for a in att],
        "kv_heads": [a.kv_heads for a in att],
        "head_dim": [a.head_dim for a in att],
    }
    experts, shared = [w for _, _, w in stacked_experts(model, modules)], _mlp_widths(model, True, modules)
    if experts or shared:  # mixture-of-experts models only
        out.update(experts=experts, shared_intermediate=shared)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# syncing
# ----------------------------------------------------------------------------------------------------------------------
def _config_field(cfg, *names) -> Optional[str]:
    """The first of ``names`` the config has (through its ``attribute_map`` aliases)."""
    amap = getattr(cfg, "attribute_map", {}) or {}
    for n in names:
        real = amap.get(n, n)
        if real in cfg.__dict__:
            return n
    return None


def _uniform(values: List[int]) -> Optional[int]:
    vals = set(values)
    return vals.pop() if len(vals) == 1 else None


def sync_config(model: nn.Module, trusted=frozenset(), modules: Optional[ModelModules] = None) -> List[str]:
    """Write the pruned widths into ``model.config`` (and the attention modules' own head bookkeeping), wherever
    every layer agrees; returns the problems a ``save_pretrained`` -> ``from_pretrained`` round trip would meet
    (empty when there is none that this function can see; :func:`check_config_round_trip` checks everything).

    Safe to call at any time and idempotent; a no-op (empty list) for a model without a Hugging Face config. Run
    automatically after each pruning and undo by :class:`~prune_explorer.DependencyGraph` (which passes as
    ``trusted`` the ``(id(module), name)`` of the attributes the forward reads, kept current by the graph, and as
    ``modules`` its :func:`scan_modules` of the model, made once)."""
    if not is_hf_model(model):
        return []
    cfg = model.config
    modules = scan_modules(model) if modules is None else modules
    att = _attentions(model, trusted, modules.attention)
    for a in att:
        set_module_attrs(a)
        keep_temperature(a)
    _sync_expert_modules(model, modules)
    widths = measure_widths(model, modules, att)
    problems = []

    def put(field_name: Optional[str], key: str, what: str) -> Optional[int]:
        vals = widths[key]
        if not vals or field_name is None:
            return None
        v = _uniform(vals)
        if v is None:
            problems.append(f"{what} differs between layers ({sorted(set(vals))}); config.{field_name} can hold one value")
            return None
        if getattr(cfg, field_name, None) != v:
            setattr(cfg, field_name, v)
        return v

    hidden_field = _config_field(cfg, "hidden_size", "d_model", "n_embd", "dim")
    old_hidden = getattr(cfg, hidden_field, None) if hidden_field is not None else None
    hidden = put(hidden_field, "hidden", "the hidden width")
    if hidden is not None and old_hidden is not None and hidden != old_hidden:
        mirror_hidden(att, {hidden_field, "hidden_size", "d_model"}, old_hidden, hidden)
    if hidden is not None:
        _keep_output_scale(model, cfg, hidden)
    widths.setdefault("experts", [])
    widths.setdefault("shared_intermediate", [])
    _sync_experts(cfg, widths, put)
    heads = put(_config_field(cfg, "num_attention_heads", "num_heads", "n_head"), "heads", "the number of attention heads")
    kv_field = _config_field(cfg, "num_key_value_heads", "num_kv_heads")
    if kv_field is not None:
        put(kv_field, "kv_heads", "the number of key-value heads")
    elif widths["kv_heads"] != widths["heads"]:
        problems.append("key-value heads differ from query heads but the config has no num_key_value_heads")
    hd_vals = widths["head_dim"]
    hd = _uniform(hd_vals) if hd_vals else None
    if hd_vals and hd is None:
        problems.append(f"the head size differs between layers ({sorted(set(hd_vals))})")
    elif hd is not None:
        hd_field = _config_field(cfg, "head_dim", "d_kv", "attention_head_dim")
        if hd_field is not None and getattr(cfg, hd_field, None) is not None:
            if getattr(cfg, hd_field) != hd:
                setattr(cfg, hd_field, hd)
        elif hidden is not None and heads is not None and hidden != heads * hd:
            # the model derives head_dim = hidden_size // num_attention_heads unless told otherwise; many read
            # config.head_dim when present (check_config_round_trip verifies that this one does)
            cfg.head_dim = hd
    carry_rotary_frequencies(model, cfg, modules.rotary)
    if bias_flags_changed(model):  # a compensation created biases the config did not build: the flags follow them
        problems += sync_bias_flags(model)
    return problems


def sync_targets(model: nn.Module, modules: Optional[ModelModules] = None) -> List[object]:
    """The objects whose own attributes (parameters and buffers included) :func:`sync_config` may rewrite (besides the bias flags of
    :mod:`prune_explorer.hf_bias`, which keep their own undo): the model itself (``model_dim``), ``model.config``,
    every attention module and its query projection (head counts, ``scaling``, the temperature folded into
    the query projection), the rotary embeddings, the stacked-expert modules and a T5-style decoder's final norm. The
    dependency graph snapshots them around each sync, so that undo restores exactly what the sync changed (the sync
    is not its own inverse: a folded temperature or a LongRoPE config stays once written). Empty for a model
    without a Hugging Face config."""
    if not is_hf_model(model):
        return []
    modules = scan_modules(model) if modules is None else modules
    out: List[object] = [model, model.config]
    for _, m in modules.attention:
        out += [m, _child(m, Q_NAMES)]
    out += modules.rotary
    out += [m for _, m in modules.experts]
    norm = _decoder_final_norm(model)
    if norm is not None:
        out.append(norm)
    return out


def config_mismatches(model: nn.Module) -> List[str]:
    """The config fields of a Hugging Face ``model`` that disagree with its modules (hidden size, attention heads,
    key-value heads, wherever every layer has one value), as sentences; empty when they agree (or the model has no
    Hugging Face config). Cheap: no model is built (:func:`config_problems` checks everything)."""
    if not is_hf_model(model):
        return []
    cfg, widths, out = model.config, measure_widths(model), []
    for key, names in (("hidden", ("hidden_size", "d_model", "n_embd", "dim")),
                       ("heads", ("num_attention_heads", "num_heads", "n_head")),
                       ("kv_heads", ("num_key_value_heads", "num_kv_heads"))):
        name, value = _config_field(cfg, *names), _uniform(widths.get(key) or [])
        if name is None or value is None or getattr(cfg, name, None) is None:
            continue
        if getattr(cfg, name) != value:
            out.append(f"config.{name} is {getattr(cfg, name)} but the modules have {value}")
    return out


def _sync_experts(cfg, widths: Dict[str, List[int]], put) -> None:
    """The MLP widths: dense MLPs in ``intermediate_size`` (or the model's name for it); the routed experts in
    ``moe_intermediate_size`` where the config has one, else with the dense MLPs (Mixtral's experts are built from
    ``intermediate_size``); shared experts in ``shared_expert_intermediate_size``. Each stacked-experts module's own
    width attribute (``intermediate_dim``) follows its weights, as a module built from the new config has it."""
    mlp_field = _config_field(cfg, *INTERMEDIATE_FIELDS)
    expert_field = _config_field(cfg, *EXPERT_FIELDS)
    if expert_field is not None:
        put(mlp_field, "intermediate", "the MLP width")
        put(expert_field, "experts", "the experts' MLP width")
    else:
        widths["intermediate"] = widths["intermediate"] + widths["experts"]
        put(mlp_field, "intermediate", "the MLP width")
    shared_field = _config_field(cfg, *SHARED_EXPERT_FIELDS)
    if shared_field is not None:
        put(shared_field, "shared_intermediate", "the shared experts' MLP width")


def _sync_expert_modules(model: nn.Module, modules: Optional[ModelModules] = None) -> None:
    for _, m, width in stacked_experts(model, modules):
        down = m._parameters["down_proj"]
        hidden = int(down.shape[2] if getattr(m, "is_transposed", False) else down.shape[1])
        for attrs, value in ((("intermediate_dim", "intermediate_size", "expert_dim"), width),
                             (("hidden_dim", "hidden_size"), hidden)):
            for attr in attrs:
                v = m.__dict__.get(attr)
                if isinstance(v, int) and not isinstance(v, bool) and v != value:
                    setattr(m, attr, value)


def _decoder_final_norm(model: nn.Module) -> Optional[nn.Module]:
    dec = getattr(model, "decoder", None)
    norm = getattr(dec, "final_layer_norm", None) if isinstance(dec, nn.Module) else None
    w = getattr(norm, "weight", None) if isinstance(norm, nn.Module) else None
    return norm if isinstance(w, torch.Tensor) and w.dim() == 1 else None


def _keep_output_scale(model: nn.Module, cfg, hidden: int) -> None:
    """T5-style ``lm_logits = lm_head(decoder_output * model.model_dim ** -0.5)``: set ``model.model_dim`` to the
    pruned ``hidden`` width (what ``from_pretrained`` builds from ``config.d_model``) and fold ``sqrt(hidden /
    calibrated)`` into the decoder's final (RMS) norm weight, ``calibrated`` being the ``model_dim`` that weight
    tensor was made for. The folded factor only matters where the model scales (``config.scale_decoder_outputs``,
    or ``tie_word_embeddings`` in older transformers); elsewhere ``model_dim`` alone follows.

    The calibration is recorded on the weight tensor itself, because undo puts back an older tensor (the norm's
    weight is a loose parameter, its module dict is not restored). An untagged weight is either a fresh slice made
    by the pruning since the last sync (made for the current ``model_dim``) or, at the model's original width, the
    original tensor put back by undo (made for the original ``model_dim``, recorded on the model at the first sync)."""
    dim = model.__dict__.get("model_dim")
    if not isinstance(dim, int) or isinstance(dim, bool):
        return
    original = model.__dict__.get(_ORIGINAL_MODEL_DIM)
    if original is None:
        original = model.__dict__[_ORIGINAL_MODEL_DIM] = dim  # the first sync: nothing has changed model_dim yet
    norm = _decoder_final_norm(model)
    scales = getattr(cfg, "scale_decoder_outputs", None)
    if scales is None:
        scales = getattr(cfg, "tie_word_embeddings", False)
    if norm is not None and scales:
        w = norm.weight
        calibrated = w.__dict__.get(_MODEL_DIM_ATTR)
        if calibrated is None:
            calibrated = original if w.numel() == original else dim
        if hidden != calibrated:
            scale_param(norm, "weight", math.sqrt(hidden / calibrated))
        norm.weight.__dict__[_MODEL_DIM_ATTR] = hidden
    model.model_dim = hidden


# ----------------------------------------------------------------------------------------------------------------------
# checking the round trip
# ----------------------------------------------------------------------------------------------------------------------
_ADVICE = ("Save it with pe.save_pruned(model, path) and load it with pe.load_pruned(fresh_model, path), which replay "
           "the pruning history on a freshly built model (or prune with one ratio for every layer, e.g. without "
           "global_pruning or pruning_ratio_dict, so that the config can describe it).")


def config_problems(model: nn.Module) -> List[str]:
    """Why ``type(model).from_pretrained`` would not rebuild ``model`` from ``model.config`` (empty if it would).

    Syncs the config first (:func:`sync_config`), then builds the model from the config on the meta device (no
    memory, no weights) and compares every parameter and buffer shape, the attention modules' int and float
    attributes, and the rotary frequencies with the pruned model's."""
    if not is_hf_model(model):
        raise TypeError(f"{type(model).__name__} has no Hugging Face config (model.config with to_dict / model_type "
                        "and save_pretrained); config_problems applies to transformers models only")
    problems = sync_config(model)
    try:
        fresh = _build_like(model)
    except Exception as exc:  # the config itself is inconsistent (e.g. hidden_size not divisible by heads)
        return problems + [f"transformers cannot build {type(model).__name__} from the synced config "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"]
    own = dict(model.state_dict(keep_vars=True))
    for k, t in fresh.state_dict(keep_vars=True).items():
        mine = own.get(k)
        if mine is None:
            problems.append(f"{k} exists in a model built from the config but not in the pruned model")
        elif tuple(mine.shape) != tuple(t.shape):
            problems.append(f"{k}: the pruned model has shape {tuple(mine.shape)}, a model built from the config "
                            f"{tuple(t.shape)}")
    problems += _attribute_differences(model, fresh)
    problems += rotary_differences(model)
    return problems


def check_config_round_trip(model: nn.Module) -> None:
    """Raise :class:`~prune_explorer.PruningError` when ``save_pretrained`` -> ``from_pretrained`` would not
    reproduce the pruned ``model`` (see :func:`config_problems`); the message lists each size the config cannot
    express and says to use ``pe.save_pruned`` / ``pe.load_pruned`` instead. Returns None when the round trip works."""
    problems = config_problems(model)
    if problems:
        shown = "; ".join(problems[:6]) + (f"; ... ({len(problems) - 6} more)" if len(problems) > 6 else "")
        raise PruningError(f"model.config cannot describe this pruned {type(model).__name__}: {shown}. {_ADVICE}")


#: models :func:`warn_config_problems` already warned about (once per model)
_WARNED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def warn_config_problems(model: nn.Module) -> bool:
    """Warn once per model when ``model.config`` can no longer describe the pruned ``model`` (see
    :func:`config_problems`): the warning names the sizes the config cannot express and says to save with
    ``pe.save_pruned``. Called by the pruners after each ``step()``; a no-op (False) for a model without a Hugging
    Face config, one the config still describes, or one already warned about. Returns whether it warned."""
    if not is_hf_model(model) or model in _WARNED:
        return False
    try:
        problems = config_problems(model)
    except Exception:  # noqa: BLE001 - a check that cannot run must never break a pruning step
        return False
    if not problems:
        return False
    _WARNED.add(model)
    shown = "; ".join(problems[:3]) + (f"; ... ({len(problems) - 3} more)" if len(problems) > 3 else "")
    warnings.warn(f"prune_explorer: model.config cannot describe this pruned {type(model).__name__}, so "
                  f"save_pretrained -> from_pretrained would fail: {shown}. {_ADVICE}", stacklevel=3)
    return True


def _build_like(model: nn.Module) -> nn.Module:
    cfg = copy.deepcopy(model.config)
    with torch.device("meta"):
        if hasattr(type(model), "_from_config"):
            return type(model)._from_config(cfg)
        return type(model)(cfg)


def _attribute_differences(model: nn.Module, fresh: nn.Module) -> List[str]:
    """Int / float attributes of the attention modules and of the model itself (T5's ``model_dim``, which scales the
    logits) that differ between the pruned model and a fresh one."""
    out = []
    fresh_mods = dict(fresh.named_modules())
    for name, mod in ([(a.name, a.module) for a in _attentions(model)] + _head_attribute_modules(model)
                      + [(n, m) for n, m, _ in stacked_experts(model)] + [("", model)]):
        other = fresh_mods.get(name)
        if other is None:
            continue
        for k, v in mod.__dict__.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (mod is model and k.startswith("_")):
                continue
            w = other.__dict__.get(k)
            if isinstance(w, (int, float)) and not isinstance(w, bool) and not math.isclose(float(v), float(w), rel_tol=1e-6):
                where = f"{name}.{k}" if name else f"{type(model).__name__}.{k}"
                out.append(f"{where} is {v} in the pruned model but {w} in a model built from the config")
    return out


def _head_attribute_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Modules with a head size or head count attribute that :func:`_attentions` does not describe (a fused
    ``query_key_value`` projection, as Falcon's): their attributes (the attention temperature) are compared too."""
    described = {id(a.module) for a in _attentions(model)}
    return [(n, m) for n, m in model.named_modules() if id(m) not in described
            and any(isinstance(m.__dict__.get(k), int) for k in HEAD_DIM_ATTRS + HEADS_ATTRS)]
