"""Does a pruning step cost no more than a forward pass? (issue 19)

    python benchmarks/floor.py [--models resnet50,densenet121] [--repeats 3] [--no-tp] [--ratio 0.5] [--threads 2]

For each torchvision model (random init, seed 0, batch 1 at 224x224, CPU, ``torch.set_num_threads(2)``: on a
machine busy with other work, ``--threads 1`` gives steadier figures,
``torch.set_flush_denormal(True)``), all in this one process, on a fresh copy of the model every time:

* ``forward``: ``model(x)`` under ``no_grad`` (after one warm-up pass);
* ``build``: ``MagnitudePruner(model, x, MagnitudeImportance(p=2), pruning_ratio=R, ignored_layers=[classifier])``;
* ``step``: one ``pruner.step()``;
* ``(b+s)/fwd``: (build + step) / forward, the figure issue 19 asks to bring to <= 1.0 (bar: 1.5);
* ``floor``: the arithmetic any such step must do, timed alone: every conv / linear weight read once along each
  side (``sum w^2`` per output channel and per input channel) and its kept half copied once (every other output
  and input channel), with no pruning library involved (the fastest of at least 5 runs); ``step/floor`` is what
  the library adds on top.

Medians of ``--repeats`` fresh models (wall-clock; ratios are what to compare on a shared machine). With
Torch-Pruning importable (``import torch_pruning as tp``) its build and step are measured alike, alternating with
ours; each library's build and step may use at most 60% of the memory available (``memory_cap``): one that asks for
more is reported as failed and the run goes on (Torch-Pruning 1.6 does on swin_t). Last lines, when both densenets
are measured: densenet201's step / densenet121's step (goal <= 1.5: a step's cost grows linearly with depth), next
to the same ratio for the arithmetic floor, the forward pass, the groups and the weights (a DenseNet layer's input
width grows with its depth in the block, so its weights grow with the square of the depth).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import statistics
import sys
import warnings

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import prune_explorer as pe  # noqa: E402
from timing import seconds, timed  # noqa: E402

MODELS = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "regnet_y_400mf", "densenet121",
          "densenet201", "vit_b_16", "swin_t"]


def _classifier(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


@contextlib.contextmanager
def memory_cap(fraction: float = 0.6):
    """Let the process map at most ``fraction`` of the memory available now beyond what it maps already (Linux:
    the soft ``RLIMIT_AS``, put back afterwards), so that a build or step that would exhaust the machine fails with
    a ``MemoryError`` / ``RuntimeError`` the caller reports, instead of the kernel killing the whole run (Torch-Pruning
    1.6 asks for more than 24 GB on swin_t). Elsewhere, or when the limit cannot be set, it does nothing."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
        old = resource.getrlimit(resource.RLIMIT_AS)
        cap = mapped + int(fraction * available)
        if old[1] != resource.RLIM_INFINITY:
            cap = min(cap, old[1])
        resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    except (ImportError, OSError, ValueError, KeyError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def measure(lib, template, x, ratio):
    """(build s, step s, parameters left) for one fresh copy of ``template``."""
    model = copy.deepcopy(template)
    gc.collect()
    build, pruner = timed(lambda: lib.pruner.MagnitudePruner(
        model, x, lib.importance.MagnitudeImportance(p=2), pruning_ratio=ratio, ignored_layers=[_classifier(model)]))
    step = seconds(pruner.step)
    return build.wall, step, sum(p.numel() for p in model.parameters())


def _weights(model):
    return [m.weight.detach() for m in model.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.weight.dim() >= 2]


def arithmetic_floor(weights) -> float:
    """Seconds to read each weight in ``weights`` once per side (output and input channels: ``[out, in, ...]``
    laid out as torch stores them) and copy its kept half once: the work a step cannot avoid (issue 19)."""
    def work():
        for w in weights:
            rest = list(range(2, w.dim()))
            (w * w).sum([0] + rest)  # per input channel
            w.reshape(w.shape[0], -1).pow(2).sum(1)  # per output channel
            keep_out = torch.arange(0, w.shape[0], 2)
            keep_in = torch.arange(0, w.shape[1], 2)
            w.index_select(0, keep_out).index_select(1, keep_in)

    return seconds(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--no-tp", action="store_true", help="do not measure Torch-Pruning even if installed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    torch.set_flush_denormal(True)
    warnings.simplefilter("ignore")
    libs = {"pe": pe}
    if not ns.no_tp:
        try:
            import torch_pruning as tp
            libs["tp"] = tp
        except Exception:  # pragma: no cover - optional reference
            pass
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, ratio {ns.ratio}, medians of "
          f"{ns.repeats} fresh models (wall ms); Torch-Pruning {'measured' if 'tp' in libs else 'not measured'}")
    head = f"{'model':<20}{'forward':>9}{'build':>9}{'step':>9}{'(b+s)/fwd':>11}{'params':>9}{'floor':>7}{'step/floor':>11}"
    if "tp" in libs:
        head += f"{'tp build':>10}{'tp step':>9}{'tp (b+s)/f':>12}{'tp params':>11}"
    print(head, flush=True)
    steps, floors, fwds, groups, sizes = {}, {}, {}, {}, {}
    for name in ns.models.split(","):
        torch.manual_seed(0)
        template = getattr(torchvision.models, name)().eval()
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            template(x)
            fwd = statistics.median(seconds(lambda: template(x)) for _ in range(max(3, ns.repeats)))
            weights = _weights(template)
            arithmetic_floor(weights)
            floor = min(arithmetic_floor(weights) for _ in range(max(5, ns.repeats)))  # a lower bound: the least
        floors[name], fwds[name] = floor, fwd
        sizes[name] = sum(w.numel() for w in weights)
        if name.startswith("densenet"):
            model = copy.deepcopy(template)
            graph = pe.DependencyGraph().build_dependency(model, x, ignored_layers=[_classifier(model)])
            groups[name] = sum(1 for _ in graph.get_all_groups())
        res = {k: [] for k in libs}
        for _ in range(ns.repeats):
            for k, lib in libs.items():  # alternate, so that drift affects both alike
                try:
                    with memory_cap():
                        res[k].append(measure(lib, template, x, ns.ratio))
                except Exception as exc:  # noqa: BLE001 - report and go on (MemoryError included)
                    why = ("ran out of memory (it asked for more than 60% of the memory available)"
                           if isinstance(exc, MemoryError) else f"{type(exc).__name__}: {str(exc)[:200]}")
                    print(f"  {name}: {k} failed: {why}", flush=True)
                    gc.collect()
                    break
        row = f"{name:<20}{fwd * 1e3:>9.0f}"
        for k in libs:
            r = res[k]
            if not r:
                row += f"{'-':>9}{'-':>9}{'-':>11}{'-':>9}" if k == "pe" else f"{'-':>10}{'-':>9}{'-':>12}{'-':>11}"
                continue
            b = statistics.median(v[0] for v in r)
            s = statistics.median(v[1] for v in r)
            if k == "pe":
                steps[name] = s
                row += (f"{b * 1e3:>9.0f}{s * 1e3:>9.0f}{(b + s) / fwd:>11.2f}{r[-1][2] / 1e6:>8.2f}M"
                        f"{floor * 1e3:>7.0f}{s / floor:>11.1f}")
            else:
                row += f"{b * 1e3:>10.0f}{s * 1e3:>9.0f}{(b + s) / fwd:>12.2f}{r[-1][2] / 1e6:>10.2f}M"
        print(row, flush=True)
    if "densenet121" in steps and "densenet201" in steps:
        def ratio(d):
            return d["densenet201"] / d["densenet121"]

        print(f"densenet201 step / densenet121 step: {ratio(steps):.2f} (goal <= 1.5)")
        print(f"  same ratio for: the arithmetic floor {ratio(floors):.2f}, the forward {ratio(fwds):.2f}, the groups "
              f"{ratio(groups):.2f}, the conv/linear weights {ratio(sizes):.2f}")


if __name__ == "__main__":
    main()
