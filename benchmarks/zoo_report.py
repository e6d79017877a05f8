"""Evidence table for issues 13 / 14: every zoo model pruned with the issue's recipe, by prune_explorer and (where it
is installed) Torch-Pruning 1.6, side by side.

Recipe (both libraries): random weights, ``MagnitudePruner(model, inputs, MagnitudeImportance(p=2),
pruning_ratio=0.5, ignored_layers=[classifier / head])``, one ``step()``, then a forward and a backward pass on the
example inputs. The models and the recipe are the ones ``tests/zoo`` asserts on (``tests/zoo/zoo_models.py``),
plus ViT-B sized models and issue 14's named models at 224 px (``big``; not in the test suite).

Printed per model: parameters before -> after, fraction kept, forward / backward OK (output shapes unchanged),
the first failure, Torch-Pruning's fraction kept and whether its pruned model runs; then, per model, the reasons
the graph keeps output widths fixed (``DG.fixed_reason(layer)``, counted over conv / linear / embedding / norm
layers).

Each library runs the models in a child process (1 torch thread, address space capped with ``--memory-gb``:
Torch-Pruning runs out of memory on some models); a child that dies is replaced and the model it died on reported,
so one crash cannot take the table down.

    python benchmarks/zoo_report.py                  # everything: ~3 min for prune_explorer, ~45 min for Torch-Pruning
                                                     # (2-core VM under load; 3 of its models time out at 400 s)
    python benchmarks/zoo_report.py --only timm/res  # models whose name contains the text
    python benchmarks/zoo_report.py --no-big --no-tp # the test-suite models, prune_explorer only
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "tests" / "zoo"
sys.path.insert(0, str(ZOO))
sys.path.insert(0, str(ROOT))


def _runs(o) -> bool:
    return o.error is None and o.shapes_after == o.shapes_before


def _one(case, lib_name: str, memory_gb: float) -> dict:
    """Prune ``case`` with ``lib_name`` (in this process) and return the JSON-able result."""
    import zoo_models as Z

    t0 = time.perf_counter()
    try:
        lib = __import__(lib_name)
        o = Z.prune_case(case, lib=lib, want_fixed_reasons=lib_name == "prune_explorer")
        r = {
            "before": o.params_before, "after": o.params_after, "kept": o.kept,
            "forward": o.forward_error is None and o.build_error is None and o.step_error is None,
            "shapes": o.shapes_after == o.shapes_before, "backward": o.backward_error is None and o.error is None,
            "runs": _runs(o), "problems": Z.acceptance_problems(o), "error": o.error,
            "untied": [list(t) for t in o.untied], "config": o.config_mismatch, "fixed": o.fixed_reasons,
        }
        del o
    except MemoryError as exc:
        r = {"error": f"MemoryError (over {memory_gb:g} GB) {exc}"[:200], "runs": False}
    except ImportError as exc:  # the model's library is missing
        r = {"error": f"skipped: {exc}", "runs": None}
    except Exception as exc:  # a failure outside the pruning library (building the model, out of memory...)
        r = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300], "runs": False}
    r["seconds"] = round(time.perf_counter() - t0, 2)
    return r


def _batch(names, lib_name: str, memory_gb: float) -> None:
    """Child process: one JSON line per model, in order (1 torch thread, address space capped)."""
    if memory_gb > 0:
        cap = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import gc

    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    import zoo_models as Z

    for name in names:
        r = _one(Z.CASES[name], lib_name, memory_gb)
        print(json.dumps({"name": name, "result": r}), flush=True)
        gc.collect()


def _pump(stream, lines: "queue.Queue") -> None:
    """Copy ``stream``'s lines into ``lines``, then None (end of stream)."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def _run_lib(names, lib_name: str, memory_gb: float, timeout: float) -> dict:
    """Run ``names`` through ``lib_name`` in a child process, reading one result line per model. A model that takes
    longer than ``timeout`` seconds, or kills the child, is reported as such and a new child takes the rest.
    Progress goes to stderr."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ZOO), os.environ.get("PYTHONPATH", "")]))
    out, todo = {}, list(names)
    while todo:
        cmd = [sys.executable, __file__, "--batch", ",".join(todo), "--libs", lib_name, "--memory-gb", str(memory_gb)]
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT)
            lines: "queue.Queue" = queue.Queue()
            threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
            why = None
            while todo:
                try:
                    line = lines.get(timeout=timeout)
                except queue.Empty:
                    why = f"timed out after {timeout:g} s"
                    break
                if line is None:
                    proc.wait()
                    err.seek(0)
                    why = f"child process died (exit {proc.returncode}): " + ((err.read().strip().splitlines() or ["?"])[-1])[:200]
                    break
                if line.startswith("{"):
                    rec = json.loads(line)
                    out[rec["name"]] = rec["result"]
                    todo.remove(rec["name"])
                    r = rec["result"]
                    print(f"  [{lib_name}] {rec['name']}: kept {r.get('kept', float('nan')):.3f}, "
                          f"{'runs' if r.get('runs') else r.get('error')}", file=sys.stderr, flush=True)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if todo:  # the model the child was on
            out[todo.pop(0)] = {"error": why, "runs": False}
    return out


def _fmt_runs(r) -> str:
    if r is None or r.get("runs") is None:
        return "n/a"
    return "yes" if r["runs"] else "NO"


def _err(r, width=110) -> str:
    if r is None:
        return ""
    e = r.get("error") or ""
    if not e and r.get("problems"):
        e = r["problems"][0]
    return e.replace("|", "/")[:width]


def _row(res: dict) -> str:
    name = res["name"]
    ours = res.get("prune_explorer", {})
    tp = res.get("torch_pruning")
    if "before" not in ours:
        return f"| {name} | | | | | {_err(ours)} | | | |"
    fwd = "yes" if ours["forward"] and ours["shapes"] else "NO"
    bwd = "yes" if ours["backward"] else "NO"
    tp_kept = f"{tp['kept']:.3f}" if tp and "kept" in tp else ""
    extra = []
    if ours.get("untied"):
        extra.append(f"untied: {ours['untied']}")
    if ours.get("config"):
        extra.append(f"config: {ours['config'][0]}")
    err = "; ".join([e for e in [_err(ours)] if e] + extra)
    return (f"| {name} | {ours['before'] / 1e6:.2f}M -> {ours['after'] / 1e6:.2f}M | {ours['kept']:.3f} | {fwd} | "
            f"{bwd} | {err} | {tp_kept} | {_fmt_runs(tp)} | {_err(tp, 80) if tp and not tp.get('runs') else ''} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated substrings; run the models whose name contains one")
    ap.add_argument("--no-big", action="store_true", help="skip the report-only ViT-B / 224 px models")
    ap.add_argument("--no-tp", action="store_true", help="do not run Torch-Pruning")
    ap.add_argument("--memory-gb", type=float, default=8.0, help="address-space cap per child process (0: none)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per model and library")
    ap.add_argument("--reasons", type=int, default=3, help="fixed-width reasons shown per model")
    ap.add_argument("--json", default="", help="also write the raw results to this file")
    ap.add_argument("--batch", default="", help=argparse.SUPPRESS)
    ap.add_argument("--libs", default="prune_explorer,torch_pruning", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.batch:
        _batch(args.batch.split(","), args.libs, args.memory_gb)
        return

    import zoo_models as Z

    libs = ["prune_explorer"]
    if not args.no_tp:
        try:
            import torch_pruning  # noqa: F401

            libs.append("torch_pruning")
        except ImportError:
            print("torch_pruning is not installed: its columns stay empty")
    only = [s for s in args.only.split(",") if s]
    names = [n for n, c in Z.CASES.items() if (not only or any(s in n for s in only)) and not (args.no_big and c.big)]

    print(f"zoo report: {len(names)} models, pruning_ratio=0.5, MagnitudeImportance(p=2), classifier/head ignored, "
          f"one step; libraries: {', '.join(libs)}\n")
    print("| model | params before -> after | kept | forward | backward | error (first line) | TP kept | TP runs | "
          "TP error |")
    print("|---|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    by_lib = {lib: _run_lib(names, lib, args.memory_gb, args.timeout) for lib in libs}
    results = [dict({"name": n, "note": Z.CASES[n].note}, **{lib: by_lib[lib][n] for lib in libs}) for n in names]
    for res in results:
        print(_row(res), flush=True)
    print(f"\n{len(names)} models in {time.perf_counter() - t0:.0f} s")

    if args.reasons:
        print("\nWhy widths stay fixed (prune_explorer; DG.fixed_reason over conv/linear/embedding/norm layers, "
              "number of layers per reason):")
        for res in results:
            fixed = res.get("prune_explorer", {}).get("fixed") or {}
            if not fixed:
                continue
            print(f"- {res['name']}:")
            for reason, n in sorted(fixed.items(), key=lambda kv: -kv[1])[: args.reasons]:
                print(f"    {n:3d} x {reason[:160]}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
