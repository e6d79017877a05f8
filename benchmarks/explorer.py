"""Explorer responsiveness: build the app, render a group card, accept a group, undo, draw the graph, sweep, report.

    python benchmarks/explorer.py                 # resnet50, vit_b_16 and a small Llama
    python benchmarks/explorer.py --models resnet18 swin_t densenet121 --repeats 5

CPU only, ``torch.set_flush_denormal(True)``, ``torch.set_num_threads(--threads)`` (2 by default); every figure is the median of
``--repeats`` runs (build: of ``--build-repeats``). ``llama`` is a small Hugging Face Llama from its config (6
layers, hidden size 256, random weights, 64 tokens); every other name is a torchvision model (random weights, one
224 x 224 image). Rows:

* "click: accept / undo / adjust": what a click costs in the kernel, split in three. "controller" is the
  controller's own work (prune or restore the model, plan the next group, the figures); "widgets" is every view
  refreshing and sending what changed; "output change (after)" is the forward pass that measures the output change,
  run once the page has been sent the decision (the controller's ``defer_output``; none on undo: the state was
  measured before). Accepts take successive groups, each a real prune; the undos then walk them back. "share" is
  controller / forward pass in wall-clock time, "cpu share" the same in the process's CPU time (``process_time``:
  far less disturbed by other programs on a shared machine; use ``--threads 1`` so that it is not inflated by
  threads waiting on each other): the goal is at most 1. The browser round trip comes on top (measured by
  ``tests/browser/test_explorer_speed_browser.py``).
* "accept / undo (controller)": ``ExplorerController.accept()`` / ``undo()`` alone, the same group again and again;
  target < 200 ms on resnet50;
* "accept / undo (app)": the same through the app, as after a click, output change included;
* "card": the controller's card data plus the group card view's refresh (table, prediction, histogram);
* "graph: dot source" (what to draw, :class:`GraphState`) and "graph: render" (Graphviz ``dot`` to SVG) for the
  opening drawing, and "graph: render, a big block open" for the largest block expanded (a decision does not
  render: the SVG is laid out once per set of open blocks and its boxes restyled);
* "sweep" (uniform pruning at p = 0 .. 0.9 from the group structure) and "report" (the finish view's per-layer
  table, one counting forward pass).

References measured in the same process: one forward pass of the model (``model(x)`` under ``no_grad``), the
pruner's own construction (``pe.pruner.BasePruner(...)``, which traces the model), and the naive sweep -- for
each ratio, copy the model, build a pruner, ``step()`` and count the parameters -- timed on 3 ratios and scaled to
the 10 of the curve; the two sweeps' figures are compared too.
"""

from __future__ import annotations

import argparse
import copy
import os
from statistics import median

import time

import torch
import torchvision

torch.set_flush_denormal(True)
torch.set_num_threads(2)

import prune_explorer as pe  # noqa: E402
from prune_explorer.explorer import Explorer  # noqa: E402
from prune_explorer.explorer.graph_dot import _SVG_CACHE, render_svg  # noqa: E402
from prune_explorer.explorer.graph_state import GraphState  # noqa: E402
from timing import Clock, seconds, timed  # noqa: E402

TARGETS = {"card": 0.2, "accept (controller)": 0.2, "undo (controller)": 0.2, "accept (app)": 0.5,
           "undo (app)": 0.5, "sweep": 3.0}
ROWS = ("build", "card", "accept (controller)", "undo (controller)", "accept (app)", "undo (app)",
        "accept (3rd group, app)", "graph: dot source", "graph: render", "graph: render, a big block open", "sweep",
        "report")


def render_uncached(src: str) -> None:
    _SVG_CACHE.pop(src, None)
    render_svg(src)


def make_model(name: str):
    """(model, example inputs): ``"llama"`` is a small Hugging Face Llama (random weights), else torchvision."""
    torch.manual_seed(0)
    if name == "llama":
        import transformers

        cfg = transformers.LlamaConfig(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=6,
                                       num_attention_heads=8, num_key_value_heads=4, use_cache=False)
        return transformers.LlamaForCausalLM(cfg).eval(), torch.randint(0, 2048, (1, 64))
    return getattr(torchvision.models, name)().eval(), torch.randn(1, 3, 224, 224)


class ClickSplit:
    """Splits a click's time in the kernel: the controller's work, the views' refresh, and the deferred output
    change. Wraps each view's ``refresh`` (an instance attribute) and listens to the controller after the app."""

    def __init__(self, ex):
        self.ex = ex
        self.views_s = self.views_cpu = 0.0
        self.heard = None  # (perf_counter, process_time) when the app's views had refreshed for the action's event
        for v in ex.views:
            v.refresh = self._timed(v.refresh)
        ex.controller.subscribe(self._heard)

    def _timed(self, fn):
        def refresh(event: str = ""):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(event)
            finally:
                if event != "output":
                    self.views_s += time.perf_counter() - t
                    self.views_cpu += time.process_time() - c
        return refresh

    def _heard(self, event: str) -> None:
        if event not in ("output", "status") and self.heard is None:
            self.heard = (time.perf_counter(), time.process_time())

    def click(self, action) -> tuple:
        """(controller s, widgets s, deferred output-change s, controller CPU s) of ``ex.run(action)``."""
        self.views_s = self.views_cpu = 0.0
        self.heard = None
        t0, c0 = time.perf_counter(), time.process_time()
        assert self.ex.run(action), self.ex.controller.status.text
        t1, c1 = time.perf_counter(), time.process_time()
        heard, heard_cpu = self.heard if self.heard is not None else (t1, c1)
        return heard - t0 - self.views_s, self.views_s, t1 - heard, heard_cpu - c0 - self.views_cpu


def click_split(ex, repeats: int) -> dict:
    """Median (controller, widgets, output, controller CPU) seconds of successive accepts, the undos back, and
    adjusts."""
    c = ex.controller
    k = max(1, min(repeats, c.n_groups_left - 1))
    sp = ClickSplit(ex)
    acc = [sp.click(lambda c: c.accept()) for _ in range(k)]
    und = [sp.click(lambda c: c.undo()) for _ in range(k)]
    allowed = c.allowed_counts()
    adj = [sp.click(lambda c, n=allowed[j % len(allowed)]: c.adjust(n=n)) for j in range(k)]
    c.use_proposal()
    med = lambda rows: tuple(median(r[i] for r in rows) for i in range(4))  # noqa: E731
    return {"accept": med(acc), "undo": med(und), "adjust": med(adj), "clicks": k}


def bench(name: str, repeats: int, build_repeats: int, clicks_only: bool = False) -> dict:
    model, x = make_model(name)
    pristine = copy.deepcopy(model)
    with torch.no_grad():
        model(x)
        fwds = [timed(lambda: model(x))[0] for _ in range(repeats)]
        fwd, fwd_cpu = median(c.wall for c in fwds), median(c.cpu for c in fwds)
    builds = []
    ex = None
    for _ in range(build_repeats):
        c, ex = timed(lambda: Explorer(model, x, importance=pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5))
        builds.append(c.wall)
    assert ex.controller is not None, ex.error
    c = ex.controller
    clicks = click_split(ex, repeats)
    if clicks_only:
        return {"clicks": clicks, "model": name, "params": c.params0, "groups": c.figures()["groups_total"],
                "nodes": len(GraphState(c).nodes), "biggest block": None, "forward": fwd, "forward cpu": fwd_cpu,
                "build": median(builds)}

    def card():
        c.measures.clear()
        c.card()
        ex.card.refresh("adjust")

    cards = [seconds(card) for _ in range(repeats)]
    ctrl_accept, ctrl_undo, app_accept, app_undo = [], [], [], []
    for _ in range(repeats):
        ctrl_accept.append(seconds(lambda: c.accept()))
        ctrl_undo.append(seconds(lambda: c.undo()))
    for _ in range(repeats):
        app_accept.append(seconds(lambda: ex.run(lambda c: c.accept())))
        app_undo.append(seconds(lambda: ex.run(lambda c: c.undo())))
    # accepting deeper in the walk (a later, bigger group) as well
    c.skip()
    c.skip()
    deep = seconds(lambda: ex.run(lambda c: c.accept()))
    ex.run(lambda c: c.undo())
    # the graph: what to draw, and Graphviz's layout of it (no cache), at opening and with the biggest block open
    gs = GraphState(c)
    dots = [seconds(gs.dot_source) for _ in range(repeats)]
    src = gs.dot_source()
    renders = [seconds(lambda: render_uncached(src)) for _ in range(repeats)]
    biggest = max((b for b in gs.blocks if b not in gs.expanded), key=lambda b: gs.blocks[b], default=None)
    big_renders = [float("nan")]
    if biggest is not None:
        gs.expand(biggest)
        big_src = gs.dot_source()
        big_renders = [seconds(lambda: render_uncached(big_src)) for _ in range(max(1, repeats // 2))]
    sweeps = [seconds(lambda: c.sweep()) for _ in range(repeats)]
    c.accept()
    reports = [seconds(lambda: c.report()) for _ in range(max(1, repeats // 2))]
    c.undo()
    # references: the pruner alone, and the naive sweep (prune a copy for real at each ratio)
    imp = pe.importance.MagnitudeImportance(p=2)
    classifier = c.ignored_names
    pruner_builds, naive, diffs = [], [], []
    sw = c.sweep_result
    for p in (0.3, 0.5, 0.7):
        with Clock() as whole:
            m2 = copy.deepcopy(pristine)
            mods = dict(m2.named_modules())
            build, pr = timed(lambda: pe.pruner.BasePruner(m2, x, imp, pruning_ratio=p,
                                                           ignored_layers=[mods[n] for n in classifier]))
            pruner_builds.append(build.wall)
            pr.step()
            n = sum(q.numel() for q in m2.parameters())
        naive.append(whole.wall)
        k = min(range(len(sw.ratios)), key=lambda i: abs(sw.ratios[i] - p))
        diffs.append(abs((1 - n / c.params0) - sw.params_removed[k]))
    return {
        "clicks": clicks,
        "model": name, "params": c.params0, "groups": c.figures()["groups_total"], "nodes": len(gs.nodes),
        "biggest block": biggest,
        "build": median(builds), "card": median(cards),
        "accept (controller)": median(ctrl_accept), "undo (controller)": median(ctrl_undo),
        "accept (app)": median(app_accept), "undo (app)": median(app_undo), "accept (3rd group, app)": deep,
        "graph: dot source": median(dots), "graph: render": median(renders),
        "graph: render, a big block open": median(big_renders),
        "sweep": median(sweeps), "report": median(reports), "forward": fwd, "forward cpu": fwd_cpu,
        "pruner build": median(pruner_builds), "naive sweep (10 ratios)": median(naive) * len(sw.ratios),
        "sweep vs naive, max |params removed| diff": max(diffs),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50", "vit_b_16", "llama"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--build-repeats", type=int, default=3)
    ap.add_argument("--clicks-only", action="store_true", help="only the click split (and the forward pass)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1: CPU times not inflated by waiting)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {load:.1f}, medians of "
          f"{args.repeats} runs (build: {args.build_repeats})")
    for name in args.models:
        r = bench(name, args.repeats, args.build_repeats, args.clicks_only)
        print(f"\n{name}: {r['params']:,} parameters, {r['groups']} groups, {r['nodes']} graph nodes "
              f"(biggest closed block: {r['biggest block']})")
        fwd, fwd_cpu = r["forward"], r["forward cpu"]
        cl = r["clicks"]
        print(f"  {'click (median of ' + str(cl['clicks']) + ')':<24} {'controller':>10} {'widgets':>9} "
              f"{'output change (after)':>22} {'forward':>9}   share = controller / forward   "
              f"controller CPU / forward CPU = cpu share")
        for action in ("accept", "undo", "adjust"):
            ctrl, views, out, ctrl_cpu = cl[action]
            print(f"  {action:<24} {ctrl * 1e3:7.1f} ms {views * 1e3:6.1f} ms {out * 1e3:19.1f} ms {fwd * 1e3:6.1f} ms"
                  f"   {ctrl / fwd:5.2f}{'':25}{ctrl_cpu * 1e3:7.1f} ms / {fwd_cpu * 1e3:6.1f} ms = "
                  f"{ctrl_cpu / fwd_cpu:5.2f}")
        if args.clicks_only:
            print(f"  {'reference: forward pass':<33} {fwd * 1e3:9.1f} ms  ({fwd_cpu * 1e3:.1f} ms CPU)")
            continue
        for k in ROWS:
            tgt = TARGETS.get(k)
            mark = "" if tgt is None else ("  target < %.0f ms: %s" % (tgt * 1e3, "ok" if r[k] < tgt else "MISSED"))
            print(f"  {k:<33} {r[k] * 1e3:9.1f} ms  = {r[k] / fwd:6.2f} forward passes{mark}")
        print(f"  {'reference: forward pass':<33} {fwd * 1e3:9.1f} ms")
        print(f"  {'reference: pruner build':<33} {r['pruner build'] * 1e3:9.1f} ms  (app build / pruner build = "
              f"{r['build'] / r['pruner build']:.2f})")
        print(f"  {'reference: naive sweep':<33} {r['naive sweep (10 ratios)'] * 1e3:9.1f} ms  (naive / explorer "
              f"sweep = {r['naive sweep (10 ratios)'] / r['sweep']:.0f}x; max difference in parameters removed "
              f"{100 * r['sweep vs naive, max |params removed| diff']:.3f} points)")


if __name__ == "__main__":
    main()
