"""Small models shared by the pruner tests (imported as a plain module: the test folders are not packages)."""

from __future__ import annotations

import torch
from torch import nn


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class ConvStack(nn.Module):
    """A plain stack of 3x3 convs (no bias, no BN): ``first`` (3 -> w), ``depth`` convs w -> w, ``last`` (w -> 4)."""

    def __init__(self, width: int = 100, depth: int = 4):
        super().__init__()
        self.first = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.body = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(depth)])
        self.last = nn.Conv2d(width, 4, 3, padding=1, bias=False)

    def forward(self, x):
        x = torch.relu(self.first(x))
        for c in self.body:
            x = torch.relu(c(x))
        return self.last(x)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class TinyResNet(nn.Module):
    """stem (3 -> 16) + 3 residual blocks + a head conv (16 -> 32) + linear classifier."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.blocks = nn.Sequential(Block(c), Block(c), Block(c))
        self.head = nn.Conv2d(c, 2 * c, 1)
        self.fc = nn.Linear(2 * c, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        x = torch.relu(self.head(x)).mean((2, 3))
        return self.fc(x)


class Attention(nn.Module):
    """Separate q/k/v/o projections. ``literal=False``: ``view(B, N, self.num_heads, -1)`` (sizes from the input);
    ``literal=True``: ``view(B, N, -1, self.head_dim)`` (HF style). ``kv < heads``: grouped-query attention."""

    def __init__(self, dim: int = 32, heads: int = 4, kv: int = None, literal: bool = False):
        super().__init__()
        kv = kv or heads
        self.num_heads, self.num_key_value_heads, self.head_dim, self.literal = heads, kv, dim // heads, literal
        self.q = nn.Linear(dim, heads * self.head_dim)
        self.k = nn.Linear(dim, kv * self.head_dim)
        self.v = nn.Linear(dim, kv * self.head_dim)
        self.o = nn.Linear(heads * self.head_dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        if self.literal:
            q = self.q(x).view(B, N, -1, self.head_dim).transpose(1, 2)
            k = self.k(x).view(B, N, -1, self.head_dim).transpose(1, 2)
            v = self.v(x).view(B, N, -1, self.head_dim).transpose(1, 2)
        else:
            q = self.q(x).view(B, N, self.num_heads, -1).transpose(1, 2)
            k = self.k(x).view(B, N, self.num_key_value_heads, -1).transpose(1, 2)
            v = self.v(x).view(B, N, self.num_key_value_heads, -1).transpose(1, 2)
        rep = self.num_heads // self.num_key_value_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        a = (q @ k.transpose(-1, -2) * 0.25).softmax(-1)
        return self.o((a @ v).transpose(1, 2).reshape(B, N, -1))


class AttnModel(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.inp = nn.Linear(8, 32)
        self.ln = nn.LayerNorm(32)
        self.attn = Attention(**kw)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        x = self.inp(x)
        x = x + self.attn(self.ln(x))
        return self.fc(x)

    def heads(self):
        a = self.attn
        return {a.q: a.num_heads, a.k: a.num_key_value_heads, a.v: a.num_key_value_heads}
