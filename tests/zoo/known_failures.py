"""What fails in the zoo today, per check and model, with the exact error and its root cause in prune_explorer.

Each entry turns the matching test into ``xfail(strict=True)``: the suite stays green while the failure is real,
and the test fails (XPASS, strict) as soon as a fix makes it pass, so whoever fixes it deletes the entry here.
The root causes are explained at length in the zoo findings (see the lead's notes for issues 13 / 14).

Checks (the ``kind`` keys): ``runs`` (prune half, forward / backward run, output shapes unchanged, parameters
strictly fewer, no group rolled back with an error), ``tied`` (tied parameters stay one tensor), ``config``
(Hugging Face ``model.config`` agrees with the module sizes), ``heads`` (``prune_num_heads=True,
head_pruning_ratio=0.5`` removes heads and shrinks hidden and MLP widths), ``head_dims`` (``prune_head_dims=True``
narrows heads and shrinks hidden and MLP widths), ``round_trip`` (``save_pretrained`` -> ``from_pretrained``
gives the same logits).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

import pytest

_SDPA_HEADS = (
    "forward: RuntimeError: The size of tensor a (2) must match the size of tensor b (4) at non-singleton dimension 1. "
    "query/key lose 2 of 4 whole heads, value keeps 4. Root cause: graph/op_rules.py _einsum_general (used by sdpa() "
    "and matmul()) drops every label field that varies along a contracted dim even when it also varies along a kept "
    "dim (the heads dim), and sdpa() builds the scores Value without fields; value's heads then meet unlabeled scores "
    "and are fixed ('contracts these channels with a tensor ... that carries no prunable channel') while "
    "view(..., -1, head_dim) makes whole heads the units of query and key"
)
_CONFIG = "model.config is not rewritten after pruning (issue 14: config fields follow the module sizes): "
_ROUND_TRIP_STALE_CONFIG = (
    "from_pretrained: RuntimeError: You set `ignore_mismatched_sizes` to `False`, thus raising an error (checkpoint "
    "tensors are narrower than the stale config says). Root cause: model.config not rewritten after pruning"
)
_NO_HEADS = (
    "no head is removed / narrowed without declaring num_heads (issue 14); the first failing check: "
)

KNOWN_FAILURES: Dict[Tuple[str, str], str] = {
    # ---- timm -----------------------------------------------------------------------------------------------------
    ("runs", "timm/nfnet_l0"): (
        "forward: RuntimeError: weight should contain 8 elements not 16. Root cause: timm's ScaledStdConv2d (an "
        "nn.Conv2d subclass) falls to the conv family (layers/conv.py): ConvPruner.prune_out_channels and conv_parts "
        "handle weight and bias only; its per-output-channel gain (out_channels, 1, 1, 1) keeps the old size"
    ),
    ("runs", "timm/fastvit_t8"): (
        "group rolled back with an error: final_conv.conv_scale.conv Conv2d(384, 768, groups=384): 'output channels "
        "can only be removed in whole blocks of 2'. Root cause: layers/conv.py conv_channel_map() treats groups "
        "== in_channels < out_channels as a grouped conv (same offsets in every group: units = all even / all odd "
        "outputs, all 384 inputs one unit) while layers/conv.py treats it as depthwise with channel multiplier 2 "
        "(whole blocks of 2 per input channel); the proposal (every odd output) is refused by the layer"
    ),
    # ---- transformers ---------------------------------------------------------------------------------------------
    ("runs", "hf/bert"): _SDPA_HEADS,
    ("runs", "hf/bert_cls"): _SDPA_HEADS,
    ("runs", "hf/vit"): _SDPA_HEADS,
    ("runs", "hf/vit_cls"): _SDPA_HEADS,
    ("runs", "hf/t5"): (
        "forward: RuntimeError: The size of tensor a (2) must match the size of tensor b (4) at non-singleton dimension "
        "1: q/k lose heads, v and the relative position bias keep 4. Root cause: as bert (graph/op_rules.py "
        "_einsum_general / sdpa drop the scores' head labels), and sdpa() only fixes the attn_mask's labels (T5 passes "
        "relative_attention_bias, shape (1, n_heads, L, S), as the mask) instead of unifying them with the scores' heads"
    ),
    ("runs", "hf/gpt2"): (
        "nothing pruned (112384 parameters before and after). Root cause: transformers' Conv1D has no layer family "
        "(layers/family.py registry), so the tracer walks its forward, whose view(size_out) uses the literal "
        "attribute self.nf: every Conv1D output is fixed ('view' to [1, 16, 64]: the new size is a literal), the "
        "residual stream with them"
    ),
    ("tied", "hf/llama_gqa"): (
        "('model.embed_tokens.weight', 'lm_head.weight') untied: two tensors after pruning. Root cause: "
        "layers/base.py Plan.select -> derive_param gives every pruned module its own new nn.Parameter, and the graph "
        "(graph/tracing.py: spaces per module) does not know that two modules share one parameter"
    ),
    ("tied", "hf/t5"): (
        "('shared.weight', 'encoder.embed_tokens.weight', 'decoder.embed_tokens.weight', 'lm_head.weight') untied. "
        "Root cause: as llama_gqa (layers/base.py derive_param per module); also `shared` never runs in forward and "
        "the encoder's embed_tokens is in a fixed group (the encoder output is a model output) while the decoder's "
        "is pruned: one tensor in two groups"
    ),
    ("config", "hf/bert"): _CONFIG + "config.intermediate_size=128 but modules have [64]",
    ("config", "hf/bert_cls"): _CONFIG + "config.hidden_size=64 but modules have [32]",
    ("config", "hf/llama_gqa"): _CONFIG + "config.hidden_size=64 but modules have [32]",
    ("config", "hf/qwen2"): _CONFIG + "config.hidden_size=64 but modules have [32]",
    ("config", "hf/vit"): _CONFIG + "config.intermediate_size=128 but modules have [64]",
    ("config", "hf/vit_cls"): _CONFIG + "config.hidden_size=64 but modules have [32]",
    ("config", "hf/t5"): _CONFIG + "config.d_model=64 but modules have [32]",
    ("round_trip", "hf/bert_cls"): "the pruned model does not run: " + _SDPA_HEADS,
    ("round_trip", "hf/vit_cls"): "the pruned model does not run: " + _SDPA_HEADS,
    ("round_trip", "hf/t5"): "the pruned model does not run (see runs/hf/t5)",
    ("round_trip", "hf/gpt2"): "nothing pruned (see runs/hf/gpt2)",
    ("round_trip", "hf/llama_gqa"): _ROUND_TRIP_STALE_CONFIG,
    ("round_trip", "hf/qwen2"): _ROUND_TRIP_STALE_CONFIG,
}
for _name in ("hf/bert_cls", "hf/vit_cls", "hf/t5"):
    KNOWN_FAILURES[("heads", _name)] = _NO_HEADS + "the pruned model does not run (see runs)"
    KNOWN_FAILURES[("head_dims", _name)] = _NO_HEADS + "the pruned model does not run (see runs)"
KNOWN_FAILURES[("heads", "hf/gpt2")] = _NO_HEADS + "nothing pruned (see runs/hf/gpt2)"
KNOWN_FAILURES[("head_dims", "hf/gpt2")] = _NO_HEADS + "nothing pruned (see runs/hf/gpt2)"
for _name in ("hf/llama_gqa", "hf/qwen2"):
    _why = (
        "config not rewritten (config.hidden_size=64 but modules have [32]); and q/k/v keep every head and head dim: "
        "rotary `q * cos` fixes the whole q/k field (graph/op_rules.py elementwise() fixes a field that meets an "
        "unlabeled operand on one of its dims, here head_dim, instead of tying along that dim), and sdpa with "
        "enable_gqa=True (4 q heads, 2 kv heads) raises inside op_rules.sdpa (ValueError: shape mismatch ... (16, 1, "
        "1, 1, 4) and ... (16, 1, 1, 1, 2)), which freezes every channel it touches"
    )
    KNOWN_FAILURES[("heads", _name)] = _NO_HEADS + _why
    KNOWN_FAILURES[("head_dims", _name)] = _NO_HEADS + _why


def params(kind: str, names: Iterable[str]) -> List:
    """``pytest.param(name, id=short name)`` per case, strictly xfailed where :data:`KNOWN_FAILURES` lists it."""
    out = []
    for name in names:
        reason = KNOWN_FAILURES.get((kind, name))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(name, id=name.split("/", 1)[1], marks=marks))
    return out
