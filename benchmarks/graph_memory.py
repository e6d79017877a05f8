"""Memory of building a dependency graph: peak while tracing, and what the graph keeps afterwards.

Usage::

    python benchmarks/graph_memory.py                  # resnet18, batch 8, the real-forward trace forced
    python benchmarks/graph_memory.py --batch 1 --meta  # the usual meta-device trace instead

The real-forward trace (the fallback when a model cannot run on meta tensors) computes every activation; none of them
may outlive ``build_dependency``. A forward hook on the model forces that trace (a hook would be fed meta tensors).
Figures (MiB):

* model + inputs: the parameters, buffers and input tensors the caller already holds;
* retained tensors: bytes of every tensor storage alive after the build that was not alive before (found through
  the garbage collector: what the graph keeps, independent of the allocator); also before any collection (tensors
  only reachable from reference cycles count there: they would wait for a later collection);
* retained RSS: the process's resident memory after the build (garbage collected, freed pages returned with
  ``malloc_trim``) minus before it;
* peak RSS: the highest resident memory during the build minus the memory before it.

Acceptance (issue 10): retained RSS and retained tensors within 10 MiB (of model + inputs, which are already held).
Linux only (``/proc/self``); CPU, ``torch.set_num_threads(2)``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import warnings

import torch
import torchvision

import prune_explorer as pe

MIB = 2 ** 20


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _settle() -> int:
    """Collect garbage, give freed heap pages back to the OS, and return the resident set size."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: RSS may then include freed but unreturned memory
        pass
    return _status("VmRSS")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (peak RSS) to the current RSS


def _live_storages() -> dict:
    """``{storage pointer: bytes}`` of every live CPU tensor storage."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance() on deprecated torch aliases warns
        objects = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    for obj in objects:
        try:
            if obj.device.type == "cpu":
                st = obj.untyped_storage()
                out[st.data_ptr()] = st.nbytes()
        except Exception:  # noqa: BLE001 - exotic tensor subclasses
            continue
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--meta", action="store_true", help="do not force the real-forward trace")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    held = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()) + [x])
    warm = torchvision.models.get_model(args.model, weights=None).eval()
    for m in (model, warm):
        if not args.meta:
            m.register_forward_hook(lambda module, inputs, output: None)
    # warm up the code paths once (imports, kernels' one-time buffers, caches) so that they do not count as retained
    pe.DependencyGraph().build_dependency(warm, x.clone())
    del warm
    before_tensors = _live_storages()
    rss0 = _settle()
    _reset_peak()
    dg = pe.DependencyGraph().build_dependency(model, x)
    peak = _status("VmHWM") - rss0
    pending = sum(n for p, n in _live_storages().items() if p not in before_tensors)  # before any gc
    rss1 = _settle()
    after_tensors = _live_storages()
    retained_tensors = sum(n for p, n in after_tensors.items() if p not in before_tensors)
    print(f"{args.model}, batch {args.batch}, {'meta' if dg.traced_on_meta else 'real-forward'} trace "
          f"(prune_explorer from {pe.__file__})")
    print(f"  model + inputs     {held / MIB:8.1f} MiB")
    print(f"  peak RSS (build)   {peak / MIB:8.1f} MiB above the memory before the build")
    print(f"  retained RSS       {(rss1 - rss0) / MIB:8.1f} MiB")
    print(f"  retained tensors   {retained_tensors / MIB:8.1f} MiB ({pending / MIB:.1f} MiB before garbage collection)")
    ok = (rss1 - rss0) <= 10 * MIB and max(retained_tensors, pending) <= 10 * MIB
    print(f"  within 10 MiB of model + inputs: {'yes' if ok else 'NO'}")
    del dg


if __name__ == "__main__":
    main()
