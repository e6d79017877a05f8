"""How long do the pruner's operations take, next to Torch-Pruning's (when ``import torch_pruning`` works)?

    .venv/bin/python benchmarks/pruner_step.py [--repeats 3] [--models resnet50,swin_t] [--ratio 0.5] [--no-tp]

Each model is measured in a fresh process (``--in-process`` measures them all in this one).

For each torchvision model (random init, seed 0, batch 1 at 224x224, CPU, 2 threads, denormals flushed) and each
library, on a fresh copy of the model every time, it measures:

* ``build``: constructing ``MagnitudePruner(model, x, MagnitudeImportance(p=2), pruning_ratio=R,
  ignored_layers=[classifier])`` (tracing + dependency graph);
* ``step``: one ``pruner.step()`` (every group scored, ranked and pruned, local scope);
* ``interactive``: one pass of ``for g in pruner.step(interactive=True): g.prune()``;
* ``count``: ``count_ops_and_params(model, x)`` on the unpruned model (``pe.utils`` / ``tp.utils``).

An operation that runs out of memory (the process is capped at ``--mem-limit-gb`` of address space, so a
runaway allocation fails instead of bringing the machine down) is reported as ``OOM``: Torch-Pruning 1.6 does
on swin_t, whose index mappings expand a flatten into per-element Python lists while building its graph.

It prints medians (process CPU time, which other programs on a shared machine disturb little, and wall-clock time)
and the ratio ours / Torch-Pruning measured in the same process, plus the parameter counts each library reaches.
The two libraries do not prune the same channels on every model: the dependency graph of prune_explorer keeps
channels fixed that Torch-Pruning prunes without proof that the model still runs (e.g. the embedding width of
torchvision's ViT, which the model's code reshapes with a literal size), so compare the parameter columns too.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import resource
import statistics
import subprocess
import sys
import warnings

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import prune_explorer as pe  # noqa: E402
from timing import timed  # noqa: E402

try:
    from prune_explorer.utils import count_ops_and_params  # noqa: E402
except ImportError:  # pe.utils not there: the measuring module has it
    from prune_explorer.measure import count_ops_and_params  # noqa: E402

try:
    import torch_pruning as tp  # noqa: E402
except Exception:  # pragma: no cover - optional reference
    tp = None

MODELS = ["resnet50", "densenet121", "densenet201", "swin_t", "vit_b_16", "mobilenet_v3_large"]
OPS = ["build", "step", "interactive", "count"]


def _classifier(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


class Lib:
    def __init__(self, name, mod, ratio):
        self.name, self.mod, self.ratio = name, mod, ratio

    def pruner(self, model, x):
        return self.mod.pruner.MagnitudePruner(model, x, self.mod.importance.MagnitudeImportance(p=2),
                                               pruning_ratio=self.ratio, ignored_layers=[_classifier(model)])

    def count(self, model, x):
        fn = count_ops_and_params if self.mod is pe else self.mod.utils.count_ops_and_params
        return fn(model, x)


def run_one(lib: Lib, template, x, op):
    model = copy.deepcopy(template)
    if op == "build":
        c, _ = timed(lambda: lib.pruner(model, x))
        return (c.cpu, c.wall), None
    if op == "count":
        c, _ = timed(lambda: lib.count(model, x))
        return (c.cpu, c.wall), None
    pruner = lib.pruner(model, x)
    if op == "step":
        c, _ = timed(pruner.step)
    else:
        def interactive():
            for g in pruner.step(interactive=True):
                g.prune()
        c, _ = timed(interactive)
    return (c.cpu, c.wall), _n_params(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--no-tp", action="store_true", help="do not measure Torch-Pruning even if installed")
    parser.add_argument("--no-header", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mem-limit-gb", type=float, default=12.0, help="address-space cap of this process")
    parser.add_argument("--in-process", action="store_true",
                        help="measure every model in this process (default: one fresh process per model, so that "
                             "memory one library leaves behind after an OOM cannot disturb the next model)")
    ns = parser.parse_args()
    models = ns.models.split(",")
    if len(models) > 1 and not ns.in_process:
        passed, argv = [], sys.argv[1:]
        while argv:  # every option but --models (given as "--models x" or "--models=x")
            a = argv.pop(0)
            if a == "--models":
                argv.pop(0)
            elif not a.startswith("--models="):
                passed.append(a)
        for k, name in enumerate(models):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), *passed, "--models", name, "--in-process"]
                                 + (["--no-header"] if k else []), check=False)
            if out.returncode:
                print(f"{name:<20}failed (exit {out.returncode})", flush=True)
        return
    if ns.mem_limit_gb > 0:
        cap = int(ns.mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))

    torch.set_flush_denormal(True)
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    libs = [Lib("ours", pe, ns.ratio)]
    if tp is not None and not ns.no_tp:
        libs.append(Lib("TP", tp, ns.ratio))
    if not ns.no_header:
        print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads {torch.get_num_threads()}, "
              f"torch_pruning {getattr(tp, '__version__', 'not installed') if not ns.no_tp else 'not measured'}, "
              f"pruning_ratio {ns.ratio}, repeats {ns.repeats}, medians (CPU s / wall s)")
        head = f"{'model':<20}{'op':<12}" + "".join(f"{lib.name + ' cpu':>11}{lib.name + ' wall':>11}" for lib in libs)
        if len(libs) == 2:
            head += f"{'cpu ratio':>11}{'wall ratio':>11}"
        print(head, flush=True)
    for name in ns.models.split(","):
        torch.manual_seed(0)
        template = getattr(torchvision.models, name)().eval()
        x = torch.randn(1, 3, 224, 224)
        params = {}
        for op in OPS:
            failed = set()  # an op that ran out of memory once is not repeated
            times = {lib.name: [] for lib in libs}
            for _ in range(ns.repeats):
                for lib in libs:  # alternate, so that drift affects both alike
                    if lib.name in failed:
                        continue
                    try:
                        t, n = run_one(lib, template, x, op)
                    except (MemoryError, RuntimeError) as exc:  # torch reports a failed allocation as RuntimeError
                        if isinstance(exc, RuntimeError) and "allocate" not in str(exc):
                            raise
                        failed.add(lib.name)
                        gc.collect()
                        continue
                    times[lib.name].append(t)
                    if n is not None:
                        params[lib.name] = n
            med = {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for k, v in times.items() if v}
            row = f"{name:<20}{op:<12}" + "".join(
                f"{med[lib.name][0]:>11.3f}{med[lib.name][1]:>11.3f}" if lib.name in med else f"{'OOM':>11}{'OOM':>11}"
                for lib in libs)
            if len(libs) == 2 and len(med) == 2:
                row += f"{med['ours'][0] / med['TP'][0]:>11.2f}{med['ours'][1] / med['TP'][1]:>11.2f}"
            print(row, flush=True)
        n0 = _n_params(template)
        print(f"{name:<20}{'params':<12}" + f"  {n0 / 1e6:.2f}M -> "
              + ", ".join(f"{lib.name} {params.get(lib.name, float('nan')) / 1e6:.2f}M" for lib in libs), flush=True)


if __name__ == "__main__":
    main()
