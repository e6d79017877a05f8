"""A checkpoint several times larger than the memory a streaming run takes: the command
(``python -m prune_explorer.stream``) in a subprocess, its peak resident memory measured by the kernel."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from stream_helpers import make_config, meta_plan, write_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Streams a tiny checkpoint of the same family first (every import and code path loaded), then measures: the
# baseline holds code, not weights; VmHWM is the kernel's peak resident memory.
SCRIPT = """
import json, sys
from prune_explorer.stream.__main__ import main
assert main(["--checkpoint", sys.argv[4], "--plan", sys.argv[5], "--out", sys.argv[6], "--no-progress"]) == 0
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
base = status("VmRSS:")
rc = main(["--checkpoint", sys.argv[1], "--plan", sys.argv[2], "--out", sys.argv[3], "--no-progress"])
print(json.dumps({"rc": rc, "base": base, "peak": status("VmHWM:")}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
def test_checkpoint_4x_larger_than_peak_memory_streams(tmp_path):
    from safetensors import safe_open
    from transformers import LlamaConfig

    from prune_explorer.stream.synthetic import write_random_checkpoint

    config = LlamaConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=16, num_attention_heads=12,
                         num_key_value_heads=12, vocab_size=2048, use_cache=False)
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "out")
    size = write_random_checkpoint(ckpt, config, dtype=torch.float32)
    assert size > 550e6  # ~6x the peak increase measured (about 90 MB), so the 4x bound holds with room
    plan = meta_plan(config)
    plan.save(str(tmp_path / "plan.json"))
    tiny = make_config("llama", num_hidden_layers=1)
    write_checkpoint(str(tmp_path / "tiny"), tiny)
    meta_plan(tiny).save(str(tmp_path / "tiny.json"))
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", SCRIPT, ckpt, str(tmp_path / "plan.json"), out, str(tmp_path / "tiny"),
                          str(tmp_path / "tiny.json"), str(tmp_path / "tiny_out")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    fig = json.loads(res.stdout.strip().splitlines()[-1])
    assert fig["rc"] == 0
    used = fig["peak"] - fig["base"]
    print(f"checkpoint {size / 1e6:.0f} MB; resident memory {fig['base'] / 1e6:.0f} MB after the code was loaded, "
          f"peak {fig['peak'] / 1e6:.0f} MB (+{used / 1e6:.0f} MB)")
    assert size >= 4 * used, f"checkpoint {size / 1e6:.0f} MB, peak memory increase {used / 1e6:.0f} MB"
    with open(os.path.join(out, "model.safetensors.index.json")) as f:
        files = set(json.load(f)["weight_map"].values())
    params = 0
    for name in files:
        with safe_open(os.path.join(out, name), framework="pt") as h:
            params += sum(math.prod(h.get_slice(k).get_shape()) for k in h.keys())
    assert params == plan.predicted["params"]
