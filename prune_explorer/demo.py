"""Headless demo of the explorer: the same walk the JupyterLab app offers, driven from a script.

    python -m prune_explorer.demo                      # torchvision resnet18, random weights (seed 0)
    python -m prune_explorer.demo --model resnet50 --ratio 0.3 --accept 5

It builds an :class:`~prune_explorer.explorer.ExplorerController` (no widgets), prints the header figures, shows
the first group card, accepts a few groups (adjusting one by hand), undoes the last one and checks the model is
restored exactly, runs the uniform-pruning sweep, accepts every remaining group and prints the final figures and
the first lines of the script ``ex.code()`` returns.

It needs the controller only: no widget library (ipywidgets, plotly, anywidget) is imported.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torchvision

from .explorer.controller import ExplorerController
from .explorer.text import fmt_count, fmt_pct


def _removed(share) -> str:
    """The removed share as "(-12.3%)", or "(none removed yet)" (never "-0.0%")."""
    return "(none removed yet)" if not share or share <= 0 else f"(-{fmt_pct(share)})"


def _header(c: ExplorerController) -> str:
    f = c.figures()
    lines = [
        f"  parameters  {f['params_now']:>12,} / {f['params_original']:,}   {_removed(f['params_removed'])}",
        f"  MACs        {fmt_count(f['macs_now']):>12} / {fmt_count(f['macs_original'])}   {_removed(f['macs_removed'])}",
        f"  groups      {f['groups_accepted']} accepted, {f['groups_skipped']} skipped, "
        f"{f['groups_guard_skipped']} skipped by guards, {f['groups_left']} left",
        f"  ratio       {f['pruning_ratio']:.2f}" + (f"   (current group: {f['current_ratio']:.2f})"
                                                    if f["current_ratio"] is not None else ""),
    ]
    return "\n".join(lines)


def _card(c: ExplorerController, max_rows: int = 6) -> str:
    card = c.card()
    if card is None:
        return "  (every group decided)"
    p = card["prediction"]
    lines = [f"  group {card['position']}: {card['root']} ({card['root_type']}, {card['channels']} channels, "
             f"{len(p['rows'])} members, scope {card['scope']})",
             f"  proposal: remove {p['n_removed']} channels -> parameters -{p['params_removed']:,} "
             f"(-{fmt_pct(p['params_removed_pct'], 2)}), MACs -{fmt_count(p['macs_removed'])}"]
    for r in p["rows"][:max_rows]:
        lines.append(f"    {r['name']:<28} {r['type']:<12} {r['side']:<7} {r['channels_before']:>5} -> "
                     f"{r['channels_after']:<5} -{r['params_removed']:,} params")
    if len(p["rows"]) > max_rows:
        lines.append(f"    ... {len(p['rows']) - max_rows} more members")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prune_explorer.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18", help="a torchvision classification model name (default resnet18)")
    ap.add_argument("--ratio", type=float, default=0.5, help="channel pruning ratio in [0, 1) (default 0.5)")
    ap.add_argument("--accept", type=int, default=3, help="groups to accept one by one before the undo (default 3)")
    ap.add_argument("--size", type=int, default=224, help="input resolution (default 224)")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    try:
        model = torchvision.models.get_model(args.model, weights=None).eval()
    except Exception as exc:  # noqa: BLE001
        print(f"error: cannot build torchvision model {args.model!r}: {exc}", file=sys.stderr)
        return 2
    x = torch.randn(1, 3, args.size, args.size)

    def progress(stage, done, total):
        if stage == "build":
            print(f"  [{stage} {done}/{total}]", flush=True)

    print(f"== prune_explorer demo: {args.model} (random weights, seed 0), pruning ratio {args.ratio}")
    t = time.perf_counter()
    try:
        c = ExplorerController(model, x, pruning_ratio=args.ratio, progress=progress)
    except Exception as exc:  # noqa: BLE001 - a clear message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built in {time.perf_counter() - t:.1f} s; ignoring {', '.join(c.ignored_names)} (the final classifier)")
    print(_header(c))
    print("\n-- the first group card")
    print(_card(c))

    print(f"\n-- accepting {args.accept} groups (the second one adjusted to half of the proposal)")
    for k in range(args.accept):
        if c.current is None:
            break
        if k == 1 and c.card()["proposed"]:
            n = len(c.card()["proposed"]) // 2
            allowed = c.allowed_counts()
            c.adjust(n=min(allowed, key=lambda a: abs(a - n)))
        t = time.perf_counter()
        d = c.accept()
        print(f"  accepted {d.root:<24} -{d.n_removed:>4} channels   params {d.params_after:>12,}   "
              f"({(time.perf_counter() - t) * 1e3:.0f} ms)")
    print(_header(c))

    print("\n-- undo the last accepted group")
    if any(d.action == "accept" for d in c.decisions):
        t = time.perf_counter()
        d = c.undo()
        ok = c.figures()["params_now"] == d.params_before
        print(f"  undid {d.root} in {(time.perf_counter() - t) * 1e3:.0f} ms: parameters back to "
              f"{c.figures()['params_now']:,} ({'exact' if ok else 'MISMATCH'}); current group: {c.current.root_name}")

    print("\n-- uniform-pruning sweep (from the group structure, nothing traced or pruned)")
    t = time.perf_counter()
    sw = c.sweep()
    print(f"  computed in {(time.perf_counter() - t) * 1e3:.0f} ms")
    print("    p    channels  params removed  1-(1-p)^2  MACs removed")
    for p, ch, pr, mr in zip(sw.ratios, sw.channels_removed, sw.params_removed, sw.macs_removed):
        print(f"  {p:4.1f}   {ch:7.1%}   {pr:13.1%}   {1 - (1 - p) ** 2:8.1%}   {mr:11.1%}")

    print("\n-- accept every remaining group as proposed")
    t = time.perf_counter()
    done = c.accept_all_remaining()
    print(f"  {len(done)} groups in {time.perf_counter() - t:.1f} s")
    print(_header(c))
    with torch.no_grad():
        out = model(x)
    print(f"  the pruned model runs: output {tuple(out.shape)}")
    print("\n-- ex.code() (first lines)")
    print("\n".join("  " + line for line in c.code(f"torchvision.models.{args.model}()").splitlines()[:12]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
