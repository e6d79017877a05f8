"""Dependency-graph speed: build, group enumeration, and pruning every group, against Torch-Pruning if installed.

Usage::

    python benchmarks/graph_build.py                 # the six models of issue 2 + the depth-scaling check
    python benchmarks/graph_build.py resnet50 --runs 5
    PYTHONPATH=/path/to/other/checkout python benchmarks/graph_build.py resnet50 --no-tp --cpu   # before/after

Conventions (shared/README.md): CPU, ``torch.set_flush_denormal(True)``, ``torch.set_num_threads(2)``, medians of
several runs, ratios measured in the same process. "prune" = for every group (classifier ignored), remove the
first half of its channels; each run starts from a freshly constructed model (same seed). ``--cpu`` times the
process's CPU time instead of wall-clock time (other programs on a shared machine disturb it less).
"""

from __future__ import annotations

import argparse
import signal
import statistics

import torch
import torch.nn as nn
import torchvision

import prune_explorer as pe
from timing import clock as timing_clock, medians  # noqa: E402

MODELS = ["resnet50", "densenet121", "densenet201", "swin_t", "vit_b_16", "mobilenet_v3_large"]


def fresh(name):
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval()


def classifier(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1000]


clock = timing_clock()  # --cpu: the process's CPU time


def time_ours(model, x):
    t0 = clock()
    dg = pe.DependencyGraph().build_dependency(model, x)
    t1 = clock()
    groups = list(dg.get_all_groups(ignored_layers=classifier(model)))
    t2 = clock()
    for g in dg.get_all_groups(ignored_layers=classifier(model)):
        units = g.units
        if len(units) >= 2:
            g.select([i for u in units[: len(units) // 2] for i in u]).prune()
    t3 = clock()
    return t1 - t0, t2 - t1, t3 - t2, len(groups)


def time_tp(tp, model, x):
    t0 = clock()
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    t1 = clock()
    groups = list(dg.get_all_groups(ignored_layers=classifier(model), root_module_types=[nn.Conv2d, nn.Linear]))
    t2 = clock()
    for g in dg.get_all_groups(ignored_layers=classifier(model), root_module_types=[nn.Conv2d, nn.Linear]):
        dep, idxs = g[0]
        if len(idxs) >= 2:
            dg.get_pruning_group(dep.target.module, dep.handler, idxs[: len(idxs) // 2]).prune()
    t3 = clock()
    return t1 - t0, t2 - t1, t3 - t2, len(groups)


def _too_slow(signum, frame):
    raise TimeoutError


def chain(depth, width=16):
    layers = []
    for _ in range(depth):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), *layers, nn.Conv2d(width, 4, 1)).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=MODELS)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tp-runs", type=int, default=1, help="Torch-Pruning is slow on some models")
    ap.add_argument("--tp-timeout", type=int, default=600, help="seconds before a Torch-Pruning run is abandoned")
    ap.add_argument("--no-tp", action="store_true", help="do not measure Torch-Pruning even if installed")
    ap.add_argument("--cpu", action="store_true", help="process CPU time instead of wall-clock time")
    args = ap.parse_args()
    global clock
    clock = timing_clock(args.cpu)
    torch.set_flush_denormal(True)
    torch.set_num_threads(2)
    try:
        import torch_pruning as tp
    except Exception:
        tp = None
    if args.no_tp:
        tp = None
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"torch_pruning {getattr(tp, '__version__', 'not measured')}, prune_explorer from {pe.__file__}, "
          f"{'CPU' if args.cpu else 'wall-clock'} seconds")
    print(f"{'model':20s} {'groups':>6s} {'build s':>9s} {'groups s':>9s} {'prune s':>9s}   "
          f"{'TP build':>9s} {'TP groups':>9s} {'TP prune':>9s}   {'speedup b/g/p (total)':>24s}")
    x = torch.randn(1, 3, 224, 224)
    for name in args.models:
        ours = medians(lambda: time_ours(fresh(name), x), args.runs)
        line = f"{name:20s} {ours[3]:6.0f} {ours[0]:9.3f} {ours[1]:9.4f} {ours[2]:9.3f}"
        if tp is not None:
            try:
                signal.signal(signal.SIGALRM, _too_slow)
                signal.alarm(args.tp_timeout)
                try:
                    ref = medians(lambda: time_tp(tp, fresh(name), x), args.tp_runs)
                finally:
                    signal.alarm(0)
                sp = [ref[k] / max(ours[k], 1e-9) for k in range(3)]
                total = sum(ref[:3]) / sum(ours[:3])
                line += (f"   {ref[0]:9.3f} {ref[1]:9.4f} {ref[2]:9.3f}   "
                         f"{sp[0]:6.1f}x/{sp[1]:6.1f}x/{sp[2]:6.1f}x ({total:5.1f}x)  TP groups={ref[3]:.0f}")
            except TimeoutError:
                total = sum(ours[:3])
                line += f"   Torch-Pruning did not finish in {args.tp_timeout} s: > {args.tp_timeout / total:.0f}x slower in total"
            except Exception as exc:  # Torch-Pruning fails on some models
                line += f"   Torch-Pruning failed: {type(exc).__name__}: {str(exc)[:60]}"
        print(line, flush=True)

    print("\nGroup enumeration vs depth (conv-BN-ReLU chain, 16 channels, 8x8 input):")
    base = None
    xs = torch.randn(1, 3, 8, 8)
    for depth in (50, 100, 200, 400, 800):
        m = chain(depth)
        dg = pe.DependencyGraph().build_dependency(m, xs)
        ts = []
        for _ in range(args.runs):
            t0 = clock()
            n = sum(1 for _ in dg.get_all_groups())
            ts.append(clock() - t0)
        t = statistics.median(ts)
        base = base or t
        print(f"  depth {depth:4d}: {n:4d} groups in {t * 1000:8.2f} ms  ({t / base:5.1f}x the 50-layer time, "
              f"depth ratio {depth / 50:4.0f}x)")


if __name__ == "__main__":
    main()
