"""Explorer responsiveness: build the app, render a group card, accept a group, undo, run the sweep.

    python benchmarks/explorer.py                 # resnet50 and swin_t
    python benchmarks/explorer.py --models resnet18 --repeats 5

CPU only, ``torch.set_flush_denormal(True)``, ``torch.set_num_threads(2)``; every figure is the median of
``--repeats`` runs (build: of ``--build-repeats``). "card" is the controller's card data plus the group card
view's refresh (table, prediction, histogram); "accept" and "undo" include refreshing every view as the app does
after a click (header, card, graph SVG, curves, ignored list). Targets on 2 cores: card and accept < 200 ms,
undo < 500 ms, sweep < 3 s on resnet50.
"""

from __future__ import annotations

import argparse
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
        for k in ("build", "card", "accept", "accept (controller only)", "accept (3rd group)", "undo", "sweep"):
            tgt = TARGETS.get(k)
            mark = "" if tgt is None else ("  (target < %.0f ms: %s)" % (tgt * 1e3, "ok" if r[k] < tgt else "MISSED"))
            print(f"  {k:<26} {r[k] * 1e3:9.1f} ms{mark}")


if __name__ == "__main__":
    main()
