"""A model without attention never loads the attention package nor the Hugging Face config code; one with attention
does (a fresh interpreter, so that other tests' imports do not count)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys, torch, torch.nn as nn, torchvision
import prune_explorer as pe

def loaded():
    return sorted(k for k in sys.modules if k.startswith(("prune_explorer.attention", "prune_explorer.hf")))

m = torchvision.models.resnet18(num_classes=10)
p = pe.pruner.MagnitudePruner(m, torch.randn(1, 3, 32, 32), pe.importance.MagnitudeImportance(), pruning_ratio=0.3,
                              ignored_layers=[m.fc])
p.step()

print("cnn", loaded())

class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.attn, self.out = nn.Linear(3, 16), nn.MultiheadAttention(16, 4, batch_first=True), nn.Linear(16, 2)
    def forward(self, x):
        h = self.inp(x)
        return self.out(h + self.attn(h, h, h, need_weights=False)[0])

a = Attn()
pe.pruner.MagnitudePruner(a, torch.randn(1, 5, 3), pe.importance.MagnitudeImportance(), pruning_ratio=0.25,
                          ignored_layers=[a.out]).step()
print("attention", loaded())
"""


def test_cnn_step_never_loads_attention_code():
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=root, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["cnn"] == "[]"
    assert "'prune_explorer.attention.heads'" in lines["attention"]
    assert "'prune_explorer.attention.head_bookkeeping'" in lines["attention"]
