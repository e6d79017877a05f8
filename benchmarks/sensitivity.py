"""How long does a sensitivity scan of ResNet-18 take, in this process, in 1 or 2 local workers and on Ray (2 CPUs)?

    .venv/bin/python benchmarks/sensitivity.py [--repeats 3] [--size 112] [--batch 8] [--no-ray]

The scan: torchvision ResNet-18 (random init, eval mode), every group (the classifier ignored) at ratios 0.1 ... 0.9,
metric = minus the MSE to the unpruned model's outputs on a fixed random batch (``--batch`` images of ``--size``
pixels), example input one image of that size. CPU, denormals flushed, one torch thread per worker (and in this
process for the serial run); medians of ``--repeats`` scans, each on a fresh pool of workers (Ray is started once,
before the first scan, and its start-up is printed apart).

Columns:
  wall s          the scan's wall-clock time, start to table (the start-up of workers included);
  speed-up        serial wall time / this wall time;
  pt ms           time spent per point inside a worker: prune, count parameters and MACs, eval_fn, undo, check;
  eval ms         of which inside eval_fn;
  overhead ms     what the executor adds per point: (wall x workers - sum of in-worker point times) / points
                  (model transfer, worker start-up, tracing in each worker, queues; amortised over the scan);
  first s         seconds until the first point came back (start-up latency).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

import prune_explorer as pe  # noqa: E402


class NegMSE:
    """eval_fn: minus the MSE between the model's outputs and the unpruned model's on a fixed batch."""

    def __init__(self, batch, ref):
        self.batch, self.ref = batch, ref

    def __call__(self, model):
        with torch.no_grad():
            return -F.mse_loss(model(self.batch), self.ref).item()


def run(model, x, eval_fn, executor, workers=None):
    if executor == "local":
        executor = pe.sensitivity.LocalExecutor(workers=workers, threads_per_worker=1)
    elif executor == "ray":
        executor = pe.sensitivity.RayExecutor(workers=2, threads_per_worker=1)
    return pe.sensitivity.scan(model, x, eval_fn, executor=executor, ignored_layers=[model.fc], progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-ray", action="store_true")
    ns = parser.parse_args()

    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, ns.size, ns.size)
    batch = torch.randn(ns.batch, 3, ns.size, ns.size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(batch)
    eval_fn = NegMSE(batch, ref)
    print(f"torch {torch.__version__}, CPUs {os.cpu_count()}, resnet18 at {ns.size}x{ns.size}, metric batch "
          f"{ns.batch}, one torch thread per worker, medians of {ns.repeats}; load average "
          f"{os.getloadavg()[0]:.1f} (other programs on this machine)")

    configs = [("serial", "serial", None), ("local, 1 worker", "local", 1), ("local, 2 workers", "local", 2)]
    ray = None
    if not ns.no_ray:
        try:
            import ray
        except ImportError:
            print("ray is not installed: skipping the Ray executor (pip install prune_explorer[ray])")
        else:
            t0 = time.perf_counter()
            try:
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": os.path.abspath(REPO)}})
            except Exception as exc:  # Ray gives its node 30 s to start; a saturated machine can miss that
                print(f"ray {ray.__version__} could not start a local instance ({exc}): skipping the Ray executor")
                ray.shutdown()
            else:
                print(f"ray {ray.__version__}: local instance with 2 CPUs started in {time.perf_counter() - t0:.1f} s "
                      "(not part of the scan times)")
                configs.append(("ray, 2 CPUs", "ray", None))
    try:
        results = {}
        reference = None
        for label, executor, workers in configs:
            runs = [run(model, x, eval_fn, executor, workers) for _ in range(ns.repeats)]
            if reference is None:
                reference = runs[0]
            same = all(r.rows == reference.rows for r in runs)
            results[label] = (runs, same)
        print(f"{len(reference.keys())} groups x {len(reference.ratios)} ratios = {len(reference.rows)} rows, "
              f"{reference.stats['points']} distinct points (the baseline included); load average now "
              f"{os.getloadavg()[0]:.1f}")
        head = (f"{'executor':<18}{'workers':>8}{'wall s':>9}{'speed-up':>10}{'pt ms':>8}{'eval ms':>9}"
                f"{'overhead ms':>13}{'first s':>9}  same table as serial")
        print(head)
        serial_wall = statistics.median(r.stats["seconds"] for r in results["serial"][0])
        for label, (runs, same) in results.items():
            n = runs[0].stats["points"]
            w = runs[0].stats["workers"]
            wall = statistics.median(r.stats["seconds"] for r in runs)
            pt = statistics.median(r.stats["point_seconds"] / n for r in runs)
            ev = statistics.median(r.stats["eval_seconds"] / n for r in runs)
            over = statistics.median((r.stats["seconds"] * r.stats["workers"] - r.stats["point_seconds"]) / n
                                     for r in runs)
            first = statistics.median(r.stats["first_result_seconds"] for r in runs)
            print(f"{label:<18}{w:>8}{wall:>9.2f}{serial_wall / wall:>10.2f}{pt * 1e3:>8.1f}{ev * 1e3:>9.1f}"
                  f"{over * 1e3:>13.1f}{first:>9.2f}  {same and runs[0].rows == reference.rows}")
    finally:
        if ray is not None and ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    main()
