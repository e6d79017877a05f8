"""Issue 14 evidence for Hugging Face transformers: small BERT / Llama (GQA) / Qwen2 / T5 configs (random weights,
offline), pruned at ``pruning_ratio=0.5`` with the classifier / LM head ignored, in three modes: whole heads
(``prune_num_heads=True, head_pruning_ratio=0.5, prune_head_dims=False``), narrower heads (``prune_head_dims=True``)
and both. Printed per model and mode: parameters before -> after, the widths (hidden, MLP, heads, key-value heads,
head size) after, and the ``save_pretrained`` -> ``from_pretrained`` result (``torch.allclose`` of the logits), or
what :func:`prune_explorer.hf.check_config_round_trip` says when the config cannot describe the pruned model.

The models and the recipe are those of ``tests/hf/test_hf_round_trip.py`` (which asserts on them).

    python benchmarks/hf_heads.py            # ~1 min on a 2-core VM
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hf"))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import prune_explorer as pe  # noqa: E402
from prune_explorer import hf  # noqa: E402

MODES = {
    "heads": dict(prune_num_heads=True, head_pruning_ratio=0.5, prune_head_dims=False),
    "dims": dict(prune_head_dims=True),
    "heads+dims": dict(prune_num_heads=True, head_pruning_ratio=0.5),
}


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _round_trip(model, inputs, logits) -> str:
    try:
        hf.check_config_round_trip(model)
    except pe.PruningError as exc:
        return "config cannot describe it: " + str(exc).split(":")[0][:70] + " -> use pe.save_pruned / pe.load_pruned"
    want = logits(model, inputs)
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        got = logits(type(model).from_pretrained(d), inputs)
    return f"save_pretrained -> from_pretrained: allclose={torch.allclose(got, want, rtol=1e-5, atol=1e-5)}"


def main() -> None:
    import test_hf_round_trip as T  # the models and the recipe the tests assert on

    warnings.simplefilter("ignore")
    print("model   mode        params before -> after    widths after (hidden, MLP, heads, kv heads, head dim)   round trip")
    for mode, kw in MODES.items():
        for name in ("bert", "llama", "qwen2", "t5"):
            torch.manual_seed(0)
            before = _params(T.MODELS[name]()[0])
            model, inputs, _, after = T._prune(name, **kw)
            w = tuple(after[k] for k in ("hidden", "intermediate", "heads", "kv_heads", "head_dim"))
            print(f"{name:7s} {mode:10s} {before:9d} -> {_params(model):8d}    {str(w):52s} "
                  f"{_round_trip(model, inputs, T._logits)}")


if __name__ == "__main__":
    main()
