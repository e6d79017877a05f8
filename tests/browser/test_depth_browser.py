"""Depth groups and Recover in a real JupyterLab (headless Chromium) on a tiny residual network: the walk reaches
a depth group (its card names the block and its block influence), Accept removes the block, Recover runs with the
calibration data and shows the metric before and after, Undo puts the weights back."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_probes import app, explorer_page, wait_status  # noqa: E402

pytestmark = pytest.mark.browser

SETUP = """\
import torch, torch.nn as nn
import prune_explorer as pe
torch.manual_seed(0)

class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
    def forward(self, x):
        return x + torch.relu(self.conv(x))

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(ResBlock(8), ResBlock(8), ResBlock(8))
        self.head = nn.Linear(8, 4)
    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))

model = Tiny().eval()
x = torch.randn(4, 3, 8, 8)
"""
CELL = """\
ex = pe.Explorer(model, x, prune_depth=True, depth_pruning_ratio=0.34, calibration=[x],
                 depth_importance=lambda m, groups: [0.0 if g.name == "body.0" else 1.0 for g in groups])
ex
"""


def test_accept_a_depth_group_then_recover_and_undo(tmp_path):
    with explorer_page(tmp_path, "depth.ipynb", [SETUP, CELL]) as page:
        a = app(page, 0)
        for _ in range(12):  # the width groups come first: skip them
            if a.locator(".pe-depth-info").count():
                break
            a.locator("button.pe-skip").first.click()
            wait_status(page, 0, "skipped")
        title = a.locator(".pe-card-title").first.inner_text()
        assert "body.0" in title and "block influence" not in title  # scored by depth_importance here
        assert "depth importance" in title and "proposed for removal" in title
        a.locator("button.pe-accept").first.click()
        wait_status(page, 0, "removed the block body.0")
        a.locator(".pe-recover-steps input").first.fill("5")
        a.locator(".pe-recover-steps input").first.press("Enter")
        a.locator("button.pe-recover").first.click()
        status = wait_status(page, 0, "recovered (5 steps)", timeout=120)
        assert "→" in status
        result = a.locator(".pe-recover-result").first.inner_text()
        assert "distillation loss" in result and "→" in result
        a.locator("button.pe-undo").first.click()
        wait_status(page, 0, "undid the recovery")
