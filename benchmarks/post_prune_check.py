"""What does the post-prune check cost, as a fraction of the pruning step it checks?

    .venv/bin/python benchmarks/post_prune_check.py [--repeats 3] [--threads 2]
        [--models resnet50,mobilenet_v3_large,densenet121,vit_b_16,llama]

After every ``pruner.step()`` the pruned model runs once on shape-only stand-ins (``prune_explorer.pruner.post_check``:
meta tensors for every parameter, buffer and input; nothing is computed), and the step keeps the replaced tensors of
its groups until that run passes (what an exact rollback needs). On the common path, where the model runs, that is
the whole cost. For each model (random init, seed 0, CPU, ``--threads`` threads, denormals flushed; ``MagnitudePruner`` with L2
importance at ``pruning_ratio=0.5``, the classifier / LM head ignored; a fresh copy of the model every time) it
prints medians of:

* ``step``: one ``pruner.step()`` with the check off (``post_prune_check=False``);
* ``step+check``: the same step with the check on (the default);
* ``check``: the check alone, on the pruned model (``pruner.check.error()``);
* ``fraction``: ``check / step``, and ``overhead``: ``(step+check) / step - 1``;
* ``check ms CPU``: the check alone in the process's CPU time (``time.process_time``; other programs on a shared
  machine disturb it little), the best and the median of ``--repeats`` checks of the same pruned model (the check
  keeps its meta stand-ins from one run to the next, as it does across a pruner's steps).

Models: torchvision resnet50, mobilenet_v3_large, densenet121 and vit_b_16 at 224x224, and a Llama-style causal LM built from a
transformers ``LlamaConfig`` (hidden 512, 4 layers, 8 query / 4 key-value heads, MLP 1376, vocabulary 8000; 64
tokens), skipped when transformers is not installed.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import warnings

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import prune_explorer as pe  # noqa: E402
from timing import seconds, timed  # noqa: E402

MODELS = ["resnet50", "mobilenet_v3_large", "densenet121", "vit_b_16", "llama"]


def build(name: str):
    """``(model, example_inputs, ignored layers)``."""
    torch.manual_seed(0)
    if name == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8,
                             num_key_value_heads=4, vocab_size=8000, tie_word_embeddings=False)
        model = LlamaForCausalLM(config).eval()
        return model, {"input_ids": torch.randint(0, 8000, (1, 64))}, [model.lm_head]
    model = torchvision.models.get_model(name, weights=None).eval()
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    return model, torch.randn(1, 3, 224, 224), [head]


def measure(template, x, ignored_names, check: bool, repeats: int = 1):
    """``(step seconds, check seconds or None, [check CPU seconds] * repeats)`` on a fresh copy of ``template``."""
    model = copy.deepcopy(template)
    modules = dict(model.named_modules())
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       ignored_layers=[modules[n] for n in ignored_names], post_prune_check=check)
    step = seconds(pruner.step)
    if check:
        return step, None, []
    c, error = timed(pruner.check.error)
    alone = c.wall
    if error is not None:
        raise RuntimeError(f"the pruned model does not run: {error}")
    cpu = [timed(pruner.check.error)[0].cpu for _ in range(repeats)]
    return step, alone, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(ns.threads)
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, pruning_ratio 0.5, repeats {ns.repeats}, "
          "medians of wall-clock seconds")
    print(f"{'model':<20}{'step':>10}{'step+check':>12}{'check':>10}{'fraction':>10}{'overhead':>10}"
          f"{'check ms CPU best / median':>30}")
    for name in ns.models.split(","):
        try:
            template, x, ignored = build(name)
        except ImportError as exc:
            print(f"{name:<20}skipped ({exc})")
            continue
        names = {id(m): n for n, m in template.named_modules()}
        ignored_names = [names[id(m)] for m in ignored]
        plain, alone, checked, cpu = [], [], [], []
        for _ in range(ns.repeats):  # alternate, so that drift on a shared machine affects both alike
            s, c, cc = measure(template, x, ignored_names, check=False, repeats=ns.repeats)
            plain.append(s)
            alone.append(c)
            cpu += cc
            checked.append(measure(template, x, ignored_names, check=True)[0])
        step, both, check = (statistics.median(v) for v in (plain, checked, alone))
        print(f"{name:<20}{step:>10.3f}{both:>12.3f}{check:>10.3f}{check / step:>10.1%}{both / step - 1:>10.1%}"
              f"{min(cpu) * 1e3:>18.1f} / {statistics.median(cpu) * 1e3:.1f}", flush=True)


if __name__ == "__main__":
    main()
