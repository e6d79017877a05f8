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

_T5_TIED = (
    "T5's d_model cannot shrink: `shared` is one tensor with the encoder's and decoder's embed_tokens and lm_head "
    "(kept tied: graph/edit/tied.py), and the encoder's embedding width reaches a model output (encoder_last_hidden_state), "
    "so the whole tied class is fixed; hidden widths stay 64"
)
_GPT2_CONFIG = (
    "GPT-2's config has one n_embd for the residual width and the attention width (attn.embed_dim / split_size, "
    "c_attn = 3 * n_embd): the residual width is pruned (wte, tied lm_head, MLP) while q/k/v keep their width, or "
    "head pruning narrows q/k/v alone, and the config cannot describe either"
)
_ROUND_TRIP_LOGITS = (
    "save_pretrained -> from_pretrained loads, but the reloaded model's logits differ from the pruned model's "
    "(torch.allclose fails); cause not analysed yet (issue 14, Hugging Face round trip)"
)

KNOWN_FAILURES: Dict[Tuple[str, str], str] = {
    # ---- timm -----------------------------------------------------------------------------------------------------
    # ---- transformers ---------------------------------------------------------------------------------------------
    ("config", "hf/bert"): (
        "BertModel's last_hidden_state is a model output, so the hidden width stays 64 while the head dims are pruned "
        "(4 heads of 8); BERT's config derives attention_head_size = hidden_size / num_attention_heads and has no "
        "head_dim field, so it cannot describe the pruned model (pe.hf.check_config_round_trip says so and points to "
        "pe.save_pruned / pe.load_pruned)"
    ),
    ("config", "hf/gpt2"): _GPT2_CONFIG + " (config.n_embd=32 but attn.embed_dim / split_size are 64)",
    ("round_trip", "hf/gpt2"): _ROUND_TRIP_LOGITS,
}
KNOWN_FAILURES[("heads", "hf/t5")] = _T5_TIED
KNOWN_FAILURES[("head_dims", "hf/t5")] = _T5_TIED
KNOWN_FAILURES[("heads", "hf/gpt2")] = _GPT2_CONFIG + " (config.3 * n_embd (c_attn)=96 but modules have [48])"
KNOWN_FAILURES[("head_dims", "hf/gpt2")] = _GPT2_CONFIG + " (config.n_embd=32 but attn.embed_dim is 64)"


def params(kind: str, names: Iterable[str]) -> List:
    """``pytest.param(name, id=short name)`` per case, strictly xfailed where :data:`KNOWN_FAILURES` lists it."""
    out = []
    for name in names:
        reason = KNOWN_FAILURES.get((kind, name))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(name, id=name.split("/", 1)[1], marks=marks))
    return out
