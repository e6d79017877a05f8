"""Small models shared by the importance tests (imported as a plain module: the test folders are not packages)."""

from __future__ import annotations

import torch
from torch import nn

import prune_explorer as pe


class ConvBNConv(nn.Module):
    """conv1 (3->6) -> bn -> relu -> conv2 (6->4): conv1's group is {conv1.out, bn, conv2.in}."""

    def __init__(self, bias: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1)
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-1, 1)

    def forward(self, x):
        return self.conv2(torch.relu(self.bn(self.conv1(x))))


def group_of(model, module, example, fn=pe.prune_conv_out_channels):
    """The full group rooted at ``module``'s outputs."""
    DG = pe.DependencyGraph().build_dependency(model, example)
    for g in DG.get_all_groups():
        if g.root_module is module and g.pruning_fn == fn:
            return DG, g
    raise AssertionError(f"no group rooted at {module}")
