"""Streaming a plan through a checkpoint bigger than memory: a Llama-3-8B-shaped random checkpoint.

    .venv/bin/python benchmarks/stream.py [--layers 32] [--dtype bf16] [--ratio 0.5] [--device cpu|cuda] [--dir D]

1. writes a random checkpoint of the Llama-3-8B shape (hidden 4096, intermediate 14336, 32 / 8 heads, vocab
   128256; ``--layers`` fewer blocks where the disk or the time is short), one shard per block, never holding more
   than one block (:func:`prune_explorer.stream.synthetic.write_random_checkpoint`);
2. makes a uniform ``--ratio`` plan on the meta device (whole heads, MLP width, hidden size; the lm_head's vocabulary
   kept);
3. reads the checkpoint once, every tensor (the floor: no streaming run can read less);
4. streams the plan through it in a subprocess (``MagnitudeImportance(p=2)``) and prints wall time (decide / write),
   its peak resident memory (the kernel's VmHWM) against its memory after the imports, the GPU's peak memory with
   ``--device cuda``, and throughput in GB of checkpoint per second against the floor's.

Needs about 1.5x the checkpoint's size free on the disk of ``--dir`` (default: a temporary folder, removed after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0)

STREAM = """
import json, sys, torch
import prune_explorer as pe
from prune_explorer.stream import stream_checkpoint
from transformers import LlamaConfig, LlamaForCausalLM
with torch.device("meta"):
    LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=2, vocab_size=16))
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
base = status("VmRSS:")
r = stream_checkpoint(sys.argv[1], sys.argv[2], sys.argv[3], importance=pe.importance.MagnitudeImportance(p=2),
                      device=sys.argv[4], progress=True)
gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and sys.argv[4].startswith("cuda") else None
print(json.dumps({"base": base, "peak": status("VmHWM:"), "gpu": gpu, "decide": r.seconds_decide,
                  "write": r.seconds_write, "params_before": r.params_before, "params_after": r.params_after,
                  "predicted": r.predicted_params, "read_decide": r.bytes_read_decide, "written": r.bytes_written}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "f16", "f32"))
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dir", default=None, help="work folder, kept (its checkpoint reused by the next run); default: "
                    "a temporary folder, removed after")
    args = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import prune_explorer as pe
    from prune_explorer.stream.synthetic import write_random_checkpoint

    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[args.dtype]
    config = LlamaConfig(**{**LLAMA3_8B, "num_hidden_layers": args.layers}, use_cache=False)
    with torch.device("meta"):
        meta = LlamaForCausalLM(config)
    params = pe.measure.count_params(meta)
    size = params * dtype.itemsize
    work = args.dir or tempfile.mkdtemp(prefix="pe_stream_bench_")
    os.makedirs(work, exist_ok=True)
    free = shutil.disk_usage(work).free
    print(f"checkpoint: Llama-3-8B shape, {args.layers} layers, {params / 1e9:.2f}B parameters, {args.dtype}, "
          f"{size / 1e9:.2f} GB; {free / 1e9:.1f} GB free on {work}")
    if free < 1.6 * size:
        sys.exit(f"not enough disk: need about {1.6 * size / 1e9:.1f} GB; pass --layers N (fewer blocks) or --dir")
    ckpt, out, plan_path = (os.path.join(work, n) for n in ("ckpt", "out", "plan.json"))
    try:
        t = time.perf_counter()
        if args.dir and os.path.isfile(os.path.join(ckpt, "config.json")):
            print(f"reusing the checkpoint in {ckpt}")  # --dir given: kept from an earlier run
        else:
            written = write_random_checkpoint(ckpt, config, dtype=dtype)
            print(f"wrote the checkpoint: {written / 1e9:.2f} GB in {time.perf_counter() - t:.1f} s")
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        plan = pe.sensitivity.uniform_plan(meta, pe.plan.causal_lm_inputs(meta), ratio=args.ratio,
                                           ignored_layers=["lm_head"],
                                           pruner_options=dict(prune_num_heads=True, prune_head_dims=False))
        plan.save(plan_path)
        print(f"plan on the meta device: {len(plan)} groups, {plan.base['params'] / 1e9:.2f}B -> "
              f"{plan.predicted['params'] / 1e9:.2f}B parameters predicted, {time.perf_counter() - t:.1f} s")
        del meta

        from safetensors import safe_open

        t = time.perf_counter()
        nbytes = 0
        for name in sorted(os.listdir(ckpt)):
            if name.endswith(".safetensors"):
                with safe_open(os.path.join(ckpt, name), framework="pt") as h:
                    for k in h.keys():
                        x = h.get_tensor(k)  # memory-mapped: copy it to read it
                        nbytes += torch.empty_like(x).copy_(x).nbytes
        floor = time.perf_counter() - t
        print(f"floor: read every tensor once, {nbytes / 1e9:.2f} GB in {floor:.1f} s = {nbytes / 1e9 / floor:.2f} GB/s")

        env = dict(os.environ, PYTHONPATH=ROOT)
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", STREAM, ckpt, plan_path, out, args.device], env=env,
                             stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t
        if res.returncode:
            sys.exit(f"streaming failed (exit {res.returncode})")
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"stream ({args.device}): {wall:.1f} s wall in the subprocess (decide {r['decide']:.1f} s: read "
              f"{r['read_decide'] / 1e9:.2f} GB of weights; write {r['write']:.1f} s: {r['written'] / 1e9:.2f} GB)")
        print(f"throughput: {nbytes / 1e9 / wall:.2f} GB/s of checkpoint, {floor / wall:.2f}x the floor's")
        print(f"peak resident memory {r['peak'] / 1e9:.2f} GB ({r['base'] / 1e9:.2f} GB after the imports: "
              f"+{(r['peak'] - r['base']) / 1e9:.2f} GB for a {size / 1e9:.2f} GB checkpoint)"
              + (f"; GPU peak {r['gpu'] / 1e9:.2f} GB" if r["gpu"] is not None else ""))
        print(f"parameters {r['params_before']:,} -> {r['params_after']:,} (plan predicted {r['predicted']:,}): "
              f"{'equal' if r['params_after'] == r['predicted'] else 'DIFFERENT'}")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
