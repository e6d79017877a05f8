"""What pruning does to a trained model's quality: every method side by side, on the same trained models.

    .venv/bin/python benchmarks/quality.py                      # both models (a few minutes on 2 CPU cores)
    .venv/bin/python benchmarks/quality.py --models digits --recover-steps 0

Models (``benchmarks/quality_models.py``, checkpoints in ``assets/quality/``): the digits CNN (test accuracy, %) and
the byte-level Llama (held-out perplexity per byte). For each, at 20% and 50% of the parameters removed (the width
methods share one ``pruning_ratio`` per target, found by bisection on the magnitude criterion), without any gradient
training, rows:

    magnitude | Taylor | Wanda-sp | FLAP fluctuation        criteria (pruner defaults, local ranking)
    <calibrated> + bias                                     bias compensation (FLAP)
    <calibrated> + bias + LS                                least-squares reconstruction of the consumers, with the bias
    magnitude + BN | Wanda-sp + bias + LS + BN              BatchNorm statistics re-estimated on the calibration data
                                                            (``pe.calibration.reestimate_batchnorm``; models with BN)
    depth only                                              lowest block-influence blocks replaced / deleted
    width + depth                                           one block removed, then the best calibrated row's method

and, after a fixed recovery budget (``pe.recover``, ``--recover-steps`` steps of distillation from the dense model),
the same metric for the magnitude row, the best calibrated row, depth only and width + depth (the other rows' last
column is empty). The targets of issue 21 are printed as met or not.

Measured (2 shared CPU cores, ~15 minutes, ``--recover-steps 100``): byte-level Llama dense 5.833; at 50% of the
parameters removed magnitude 17.805, Taylor 10.933, Wanda-sp 10.314, FLAP 13.218, Wanda-sp + bias + LS 6.498
(6.150 / 5.967 after recovery for magnitude / Wanda-sp + bias + LS): the three Llama targets are met. Digits CNN
dense 99.72%; at 2x fewer MACs (48%) magnitude 32.78%, Wanda-sp 52.50%, Wanda-sp + bias + LS 99.44% (the 1-point
target is met by 0.72 points; the convolutions' bias compensation counts the zero padding each kernel tap reads,
without which the same row gave 94.17%), magnitude + BN 97.50%, Wanda-sp + bias + LS + BN 99.44%.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import quality_models as qm  # noqa: E402

import prune_explorer as pe  # noqa: E402
from prune_explorer.calibration import Calibration, calibrate  # noqa: E402

TARGETS = (0.2, 0.5)


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------------------------------------------------
# one model = a few callables
# ----------------------------------------------------------------------------------------------------------------------
class Task:
    budget = "params"  # what the targets count: "params" or "macs"
    batchnorm = False  # has BatchNorm layers (the "+ BN" rows re-estimate their statistics)
    name = ""
    metric = ""
    higher_is_better = True

    def model(self):
        raise NotImplementedError

    def evaluate(self, m) -> float:
        raise NotImplementedError

    def pruner_kwargs(self, m) -> dict:
        return {}


class Digits(Task):
    name, metric, budget, batchnorm = "digits CNN", "test accuracy %", "macs", True

    def __init__(self):
        xtr, ytr, self.xte, self.yte = qm.digits_data()
        g = torch.Generator().manual_seed(0)
        perm = torch.randperm(len(xtr), generator=g)
        self.cal = Calibration([(xtr[perm[i:i + 64]], ytr[perm[i:i + 64]]) for i in range(0, 512, 64)],
                               progress=False)
        self.example = xtr[:1]
        self.recover_data = Calibration([xtr[perm[i:i + 64]] for i in range(0, len(xtr) - 63, 64)], progress=False)

    def model(self):
        return qm.load_digits_cnn()

    def evaluate(self, m) -> float:
        return qm.accuracy(m, self.xte, self.yte)


class ByteLlama(Task):
    name, metric, higher_is_better = "byte-level Llama", "held-out perplexity", False

    def __init__(self):
        train = qm.stdlib_bytes("train")
        self.cal = Calibration(qm.lm_batches(train, 128, 8, n=8, seed=1), progress=False)
        self.recover_data = Calibration(qm.lm_batches(train, 128, 8, n=64, seed=2), progress=False)
        self.heldout = qm.heldout_batches()
        self.example = self.heldout[0][:1, :32]

    def model(self):
        return qm.load_byte_llama()

    def evaluate(self, m) -> float:
        return qm.perplexity(m, self.heldout)


# ----------------------------------------------------------------------------------------------------------------------
# methods
# ----------------------------------------------------------------------------------------------------------------------
def _importance(kind: str):
    return {"magnitude": lambda: pe.importance.MagnitudeImportance(p=2),
            "Taylor": lambda: pe.importance.TaylorImportance(),
            "Wanda-sp": lambda: pe.importance.WandaImportance(),
            "FLAP": lambda: pe.importance.FluctuationImportance()}[kind]()


def prune_width(task: Task, m, kind: str, ratio: float, bias=False, ls=False, bn=False):
    """Prune ``m`` in place by criterion ``kind`` at channel ``ratio``, optionally compensating and re-estimating
    the BatchNorm statistics (``bn``) on the calibration data."""
    imp = _importance(kind)
    collectors = [imp] if hasattr(imp, "attach") else []
    comp = pe.compensation.Compensation(bias=bias, least_squares=ls) if (bias or ls) else None
    if comp is not None:
        collectors.append(comp)
    if collectors:
        calibrate(m, task.cal, collectors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = pe.pruner.MagnitudePruner(m, task.example, imp, pruning_ratio=ratio)
        if comp is None:
            pruner.step()
        else:
            for g in pruner.step(interactive=True):
                comp.prune(g)
    if bn:
        pe.calibration.reestimate_batchnorm(m, task.cal)
    m.zero_grad(set_to_none=True)
    return m


def cost(task: Task, m) -> int:
    return pe.utils.count_ops_and_params(m, task.example)[0] if task.budget == "macs" else n_params(m)


def ratio_for(task: Task, target: float, start=None) -> float:
    """The smallest channel ``pruning_ratio`` (bisection, magnitude criterion) that removes at least ``target`` of
    the parameters (or MACs: ``task.budget``); ``start()``: the model to prune (default: the dense one)."""
    start = start or task.model
    dense = cost(task, task.model())
    lo, hi = 0.0, 0.95
    for _ in range(7):
        mid = (lo + hi) / 2
        removed = 1 - cost(task, prune_width(task, start(), "magnitude", mid)) / dense
        lo, hi = (mid, hi) if removed < target else (lo, mid)
    return hi


def depth_blocks(task: Task, m):
    return pe.depth.find_blocks(m, task.example)


def prune_depth_to(task: Task, m, target: float):
    """Remove the lowest-influence blocks until ``target`` of the parameters are gone (at least one block, never
    all of them)."""
    dense = n_params(m)
    groups = depth_blocks(task, m)
    scores = pe.depth.block_influence(m, groups, task.cal)
    order = sorted(range(len(groups)), key=lambda k: float(scores[k]))
    chosen, removed = [], 0
    for k in order[:-1]:
        if chosen and removed >= target * dense:
            break
        chosen.append(groups[k])
        removed += groups[k].num_params
    pe.depth.remove_blocks(m, chosen)
    return m


# ----------------------------------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------------------------------
def run_task(task: Task, recover_steps: int, recover_lr: float):
    dense_model = task.model()
    dense_params = n_params(dense_model)
    dense_macs, _ = pe.utils.count_ops_and_params(dense_model, task.example)
    dense = task.evaluate(dense_model)
    rows = []  # (target, label, params, macs, metric, recovered or None)
    print(f"\n## {task.name}: dense {task.metric} {dense:.3f}, {dense_params:,} parameters, {dense_macs:,} MACs "
          f"(per example input)", flush=True)
    for target in TARGETS:
        t0 = time.time()
        ratio = ratio_for(task, target)
        methods = [("magnitude", dict(kind="magnitude")), ("Taylor", dict(kind="Taylor")),
                   ("Wanda-sp", dict(kind="Wanda-sp")), ("FLAP", dict(kind="FLAP")),
                   ("Wanda-sp + bias", dict(kind="Wanda-sp", bias=True)),
                   ("FLAP + bias", dict(kind="FLAP", bias=True)),
                   ("Wanda-sp + bias + LS", dict(kind="Wanda-sp", bias=True, ls=True)),
                   ("FLAP + bias + LS", dict(kind="FLAP", bias=True, ls=True))]
        if task.batchnorm:
            methods += [("magnitude + BN", dict(kind="magnitude", bn=True)),
                        ("Wanda-sp + bias + LS + BN", dict(kind="Wanda-sp", bias=True, ls=True, bn=True))]
        results = {}
        for label, kw in methods:
            m = prune_width(task, task.model(), ratio=ratio, **kw)
            results[label] = m
        m = prune_depth_to(task, task.model(), target)
        results["depth only"] = m
        calibrated = [k for k in results if k not in ("magnitude", "Taylor", "depth only")]
        scores = {k: task.evaluate(v) for k, v in results.items()}
        sign = 1 if task.higher_is_better else -1
        best = max(calibrated, key=lambda k: sign * scores[k])
        # width + depth: one block, then the best calibrated method at the ratio that reaches the same target
        wd = prune_depth_to(task, task.model(), 0.0)
        if cost(task, wd) > (1 - target) * cost(task, dense_model):
            wd_ratio = ratio_for(task, target, start=lambda: prune_depth_to(task, task.model(), 0.0))
            wd = prune_width(task, wd, ratio=wd_ratio, **dict(methods)[best])
        results[f"width + depth ({best})"] = wd
        scores[f"width + depth ({best})"] = task.evaluate(wd)
        recover_rows = {"magnitude", best, f"width + depth ({best})", "depth only"}
        for label, m in results.items():
            macs, params = pe.utils.count_ops_and_params(m, task.example)
            rec = None
            if recover_steps and label in recover_rows:
                pe.recover(m, dense_model, task.recover_data, steps=recover_steps, lr=recover_lr, progress=False)
                rec = task.evaluate(m)
            rows.append((target, label, params, macs, scores[label], rec))
        print(f"   ({target:.0%} of the {task.budget} target: pruning_ratio {ratio:.3f}, {time.time() - t0:.0f} s)", flush=True)
    print_table(task, dense, dense_params, dense_macs, rows)
    return dense, rows


def print_table(task, dense, dense_params, dense_macs, rows):
    print(f"\n| target | method | parameters | MACs | {task.metric} | after recovery |")
    print("|---|---|---|---|---|---|")
    print(f"| - | dense | {dense_params:,} | {dense_macs:,} | {dense:.3f} | |")
    for target, label, params, macs, metric, rec in rows:
        r = f"{rec:.3f}" if rec is not None else ""
        print(f"| {target:.0%} | {label} | {params:,} ({params / dense_params:.0%}) | {macs:,} ({macs / dense_macs:.0%}) "
              f"| {metric:.3f} | {r} |")


def check_targets(results: dict) -> None:
    print("\n## Targets (issue 21)")
    if "llama" in results:
        dense, rows = results["llama"]
        for target in TARGETS:
            sub = [r for r in rows if r[0] == target]
            mag = next(r[4] for r in sub if r[1] == "magnitude")
            best = min((r for r in sub if r[1] not in ("magnitude", "Taylor")), key=lambda r: r[4])
            inc_mag, inc_best = mag - dense, best[4] - dense
            ok = inc_best <= inc_mag / 3
            print(f"- byte-level Llama, {target:.0%} removed, no training: best calibrated row ({best[1]}) "
                  f"perplexity +{inc_best:.3f} vs magnitude +{inc_mag:.3f}: need <= 1/3 of it "
                  f"({inc_mag / 3:.3f}): {'MET' if ok else f'NOT MET (ratio {inc_best / max(inc_mag, 1e-9):.2f})'}")
        rec = [r for r in rows if r[0] == 0.5 and r[5] is not None]
        if rec:
            bestr = min(rec, key=lambda r: r[5])
            ok = bestr[5] <= 1.1 * dense
            print(f"- byte-level Llama, 50% removed, after recovery: best {bestr[1]} {bestr[5]:.3f} vs dense "
                  f"{dense:.3f} (+{bestr[5] / dense - 1:.1%}; need <= +10%): {'MET' if ok else 'NOT MET'}")
    if "digits" in results:
        dense, rows = results["digits"]
        cand = [r for r in rows if r[1] not in ("magnitude", "Taylor")]
        dense_macs = results["digits_macs"]
        at2x = [r for r in cand if r[3] <= dense_macs / 2]
        if at2x:
            for label, pool in (("", at2x), (" without BN re-estimation", [r for r in at2x if "BN" not in r[1]])):
                if not pool:
                    continue
                b = max(pool, key=lambda r: r[4])
                ok = b[4] >= dense - 1.0
                print(f"- digits CNN at >= 2x fewer MACs, no training{label}: best {b[1]} ({b[0]:.0%} target, "
                      f"{b[3] / dense_macs:.0%} MACs) accuracy {b[4]:.2f}% vs dense {dense:.2f}% "
                      f"(loss {dense - b[4]:.2f} points; need <= 1): "
                      f"{'MET' if ok else f'NOT MET (by {dense - 1.0 - b[4]:.2f} points)'}")
        else:
            print("- digits CNN at 2x fewer MACs: no row reached half the MACs (NOT MEASURED)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="digits,llama")
    ap.add_argument("--recover-steps", type=int, default=100)
    ap.add_argument("--recover-lr", type=float, default=1e-3)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    results = {}
    for name in args.models.split(","):
        task = Digits() if name == "digits" else ByteLlama()
        results[name] = run_task(task, args.recover_steps, args.recover_lr)
        if name == "digits":
            results["digits_macs"] = pe.utils.count_ops_and_params(task.model(), task.example)[0]
    check_targets(results)


if __name__ == "__main__":
    main()
