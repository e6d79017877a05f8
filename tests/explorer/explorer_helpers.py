"""Small models and snapshot helpers for the explorer tests (real pruner, real importance, no mocks)."""

import torch
import torch.nn as nn


class SmallNet(nn.Module):
    """conv-bn-relu stem, a residual block, a second stage, global pool, linear classifier."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.block = nn.Sequential()
        self.block.add_module("conv_a", nn.Conv2d(16, 32, 3, padding=1, bias=False))
        self.block.add_module("bn_a", nn.BatchNorm2d(32))
        self.block.add_module("conv_b", nn.Conv2d(32, 16, 3, padding=1, bias=False))
        self.block.add_module("bn_b", nn.BatchNorm2d(16))
        self.conv2 = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        y = self.block.bn_b(self.block.conv_b(torch.relu(self.block.bn_a(self.block.conv_a(x)))))
        x = torch.relu(x + y)
        x = torch.relu(self.bn2(self.conv2(x)))
        x = x.mean(dim=(2, 3))
        return self.fc(x)


class GroupedNet(nn.Module):
    """A grouped convolution: its output channels come in units (channels tied by the groups)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gconv = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.conv2 = nn.Conv2d(8, 12, 1)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        x = torch.relu(self.gconv(torch.relu(self.conv1(x))))
        return self.fc(torch.relu(self.conv2(x)).mean(dim=(2, 3)))


class AttnNet(nn.Module):
    """Linear -> MultiheadAttention -> MLP: exercises attention and linear members."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, num_heads=2, batch_first=True)
        self.mlp1 = nn.Linear(16, 32)
        self.mlp2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.inp(x)
        a, _ = self.attn(h, h, h)
        h = h + a
        h = h + self.mlp2(torch.relu(self.mlp1(h)))
        return self.head(h.mean(dim=1))


class Broken(nn.Module):
    """A model whose forward fails on the example inputs (shape mismatch)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(x)


def snapshot(model):
    """Everything undo must restore: the state_dict (cloned) and the modules' printed attributes."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, repr(model)


def same_as(model, snap) -> bool:
    sd, rep = snap
    now = model.state_dict()
    return repr(model) == rep and set(now) == set(sd) and all(
        now[k].shape == sd[k].shape and torch.equal(now[k], sd[k]) for k in sd)
