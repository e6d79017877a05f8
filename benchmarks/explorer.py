"""Explorer responsiveness: build the app, render a group card, accept a group, undo, run the sweep.

    python benchmarks/explorer.py                 # resnet50 and swin_t
    python benchmarks/explorer.py --models resnet18 --repeats 5

CPU only, ``torch.set_flush_denormal(True)``, ``torch.set_num_threads(2)``; every figure is the median of
``--repeats`` runs (build: of ``--build-repeats``). "card" is the controller's card data plus the group card
view's refresh (table, prediction, histogram); "accept" and "undo" include refreshing every view as the app does
after a click (header, card, graph SVG, curves, ignored list). Targets on 2 cores: card and accept < 200 ms,
undo < 500 ms, sweep < 3 s on resnet50.

References measured in the same process: one forward pass of the model (``model(x)`` under ``no_grad``), the
pruner's own construction (``pe.pruner.BasePruner(...)``, which traces the model), and the naive sweep -- for
each ratio, copy the model, build a pruner, ``step()`` and count the parameters -- timed on 3 ratios and scaled to
the 10 of the curve; the two sweeps' figures are compared too.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torchvision

torch.set_flush_denormal(True)
torch.set_num_threads(2)

import prune_explorer as pe  # noqa: E402
from prune_explorer.explorer import Explorer  # noqa: E402

TARGETS = {"card": 0.2, "accept": 0.2, "undo": 0.5, "sweep": 3.0}


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median(xs):
    return statistics.median(xs)


def bench(name: str, repeats: int, build_repeats: int) -> dict:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    pristine = copy.deepcopy(model)
    with torch.no_grad():
        model(x)
        fwd = median([timed(lambda: model(x)) for _ in range(repeats)])
    builds = []
    ex = None
    for _ in range(build_repeats):
        t = time.perf_counter()
        ex = Explorer(model, x, importance=pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5)
        builds.append(time.perf_counter() - t)
    assert ex.controller is not None, ex.error
    c = ex.controller

    def card():
        c._cache.clear()
        c.card()
        ex.card.refresh("adjust")

    cards = [timed(card) for _ in range(repeats)]
    accepts, undos = [], []
    for _ in range(repeats):
        accepts.append(timed(lambda: ex.run(lambda c: c.accept())))
        undos.append(timed(lambda: ex.run(lambda c: c.undo())))
    # accepting deeper in the walk (a later, bigger group) as well
    c.skip()
    c.skip()
    deep = [timed(lambda: ex.run(lambda c: c.accept())) for _ in range(1)]
    ex.run(lambda c: c.undo())
    sweeps = [timed(lambda: c.sweep()) for _ in range(repeats)]
    ctrl_accept = []
    for _ in range(repeats):
        ctrl_accept.append(timed(lambda: c.accept()))
        c.undo()
    # references: the pruner alone, and the naive sweep (prune a copy for real at each ratio)
    imp = pe.importance.MagnitudeImportance(p=2)
    classifier = c.ignored_names
    pruner_builds = []
    naive, diffs = [], []
    sw = c.sweep_result
    for p in (0.3, 0.5, 0.7):
        t = time.perf_counter()
        m2 = copy.deepcopy(pristine)
        mods = dict(m2.named_modules())
        t1 = time.perf_counter()
        pr = pe.pruner.BasePruner(m2, x, imp, pruning_ratio=p, ignored_layers=[mods[n] for n in classifier])
        pruner_builds.append(time.perf_counter() - t1)
        pr.step()
        n = sum(q.numel() for q in m2.parameters())
        naive.append(time.perf_counter() - t)
        k = min(range(len(sw.ratios)), key=lambda i: abs(sw.ratios[i] - p))
        diffs.append(abs((1 - n / c.params0) - sw.params_removed[k]))
    return {
        "model": name,
        "params": c.params0,
        "groups": c.figures()["groups_total"],
        "build": median(builds),
        "card": median(cards),
        "accept": median(accepts),
        "accept (controller only)": median(ctrl_accept),
        "accept (3rd group)": deep[0],
        "undo": median(undos),
        "sweep": median(sweeps),
        "forward": fwd,
        "pruner build": median(pruner_builds),
        "naive sweep (10 ratios)": median(naive) * len(sw.ratios),
        "sweep vs naive, max |params removed| diff": max(diffs),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50", "swin_t"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--build-repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, medians of {args.repeats} runs "
          f"(build: {args.build_repeats})")
    for name in args.models:
        r = bench(name, args.repeats, args.build_repeats)
        print(f"\n{name}: {r['params']:,} parameters, {r['groups']} groups")
        fwd = r["forward"]
        for k in ("build", "card", "accept", "accept (controller only)", "accept (3rd group)", "undo", "sweep"):
            tgt = TARGETS.get(k)
            mark = "" if tgt is None else ("  target < %.0f ms: %s" % (tgt * 1e3, "ok" if r[k] < tgt else "MISSED"))
            print(f"  {k:<26} {r[k] * 1e3:9.1f} ms  = {r[k] / fwd:6.2f} forward passes{mark}")
        print(f"  {'reference: forward pass':<26} {fwd * 1e3:9.1f} ms")
        print(f"  {'reference: pruner build':<26} {r['pruner build'] * 1e3:9.1f} ms  (app build / pruner build = "
              f"{r['build'] / r['pruner build']:.2f})")
        print(f"  {'reference: naive sweep':<26} {r['naive sweep (10 ratios)'] * 1e3:9.1f} ms  (naive / explorer sweep = "
              f"{r['naive sweep (10 ratios)'] / r['sweep']:.0f}x; max difference in parameters removed "
              f"{100 * r['sweep vs naive, max |params removed| diff']:.3f} points)")


if __name__ == "__main__":
    main()
