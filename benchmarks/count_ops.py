"""How long does count_ops_and_params take, next to a plain forward pass (and to Torch-Pruning's, if installed)?

    .venv/bin/python benchmarks/count_ops.py [--repeats 7] [--models resnet50,swin_t]

For each torchvision model (random init, batch 1 at 224x224, CPU, 2 threads, denormals flushed) it prints the
median time of a plain ``model(x)`` under ``torch.no_grad()`` in eval mode, of ``count_ops_and_params``, their
ratio, and — when ``torch_pruning`` is importable — the median time of ``tp.utils.count_ops_and_params`` and
its ratio to the plain forward.  All figures come from the same process; timings alternate between the
contenders so that drift affects them alike.

Two clocks are reported: the process's CPU time (``time.process_time``, summed over its threads), which other
programs on a shared machine disturb little, and wall-clock time.  Ratios are given for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from prune_explorer.measure import count_ops_and_params  # noqa: E402
from timing import timed  # noqa: E402

try:
    import torch_pruning as tp  # noqa: E402
except Exception:  # pragma: no cover - optional reference
    tp = None

MODELS = ["resnet50", "densenet121", "swin_t", "vit_b_16", "mobilenet_v3_large"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--models", default=",".join(MODELS))
    ns = parser.parse_args()

    torch.set_flush_denormal(True)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads {torch.get_num_threads()}, "
          f"torch_pruning {getattr(tp, '__version__', 'not installed')}, repeats {ns.repeats}")
    header = f"{'model':<20}{'GMACs':>8}{'Mparams':>9} | {'clock':<5}{'forward s':>10}{'ours s':>9}{'ours/fwd':>9}"
    if tp is not None:
        header += f"{'TP s':>9}{'TP/fwd':>8}{'TP GMACs':>10}"
    print(header)
    for name in ns.models.split(","):
        model = getattr(torchvision.models, name)().eval()
        x = torch.randn(1, 3, 224, 224)

        def forward():
            with torch.no_grad():
                model(x)

        contenders = {"fwd": forward, "ours": lambda: count_ops_and_params(model, x)}
        if tp is not None:
            contenders["tp"] = lambda: tp.utils.count_ops_and_params(model, x)
        for fn in contenders.values():  # warm-up
            fn()
        times = {k: ([], []) for k in contenders}
        for _ in range(ns.repeats):
            for key, fn in contenders.items():
                c, _ = timed(fn)
                cpu, wall = c.cpu, c.wall
                times[key][0].append(cpu)
                times[key][1].append(wall)
        macs, params = count_ops_and_params(model, x)
        tp_macs = tp.utils.count_ops_and_params(model, x)[0] if tp is not None else None
        for clock, idx in (("cpu", 0), ("wall", 1)):
            med = {k: statistics.median(v[idx]) for k, v in times.items()}
            first = f"{name:<20}{macs / 1e9:>8.3f}{params / 1e6:>9.3f}" if idx == 0 else " " * 37
            line = f"{first} | {clock:<5}{med['fwd']:>10.4f}{med['ours']:>9.4f}{med['ours'] / med['fwd']:>9.2f}"
            if tp is not None:
                line += f"{med['tp']:>9.4f}{med['tp'] / med['fwd']:>8.2f}"
                if idx == 0:
                    line += f"{tp_macs / 1e9:>10.3f}"
            print(line, flush=True)

    # What counting adds besides the forward itself, measured on meta tensors (shapes only, no arithmetic):
    # the torch-function interception, the handlers, the mode/buffer bookkeeping and the parameter count.
    print("\ncounting overhead without arithmetic (meta tensors, CPU time, medians):")
    for name in ns.models.split(","):
        with torch.device("meta"):
            model = getattr(torchvision.models, name)().eval()
            x = torch.randn(1, 3, 224, 224)

        def forward_meta():
            with torch.no_grad():
                model(x)

        contenders = {"fwd": forward_meta, "ours": lambda: count_ops_and_params(model, x)}
        for fn in contenders.values():
            fn()
        cpu = {k: [] for k in contenders}
        for _ in range(ns.repeats):
            for key, fn in contenders.items():
                cpu[key].append(timed(fn)[0].cpu)
        med = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"{name:<20} meta forward {med['fwd'] * 1e3:7.1f} ms, count_ops_and_params {med['ours'] * 1e3:7.1f} ms,"
              f" difference {(med['ours'] - med['fwd']) * 1e3:+6.1f} ms", flush=True)


if __name__ == "__main__":
    main()
