"""Small test models shared by every test folder (``from small_models import ...``: pytest puts tests/ on
``sys.path`` through tests/conftest.py; the test folders are not packages). Models used by one test file only stay
in that file."""

from __future__ import annotations

import torch
from torch import nn

import prune_explorer as pe


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tensor_state(model: nn.Module) -> dict:
    """Every state_dict entry's value (a clone) and identity, to check later with :func:`same_tensors`."""
    return {k: (v.detach().clone(), id(v)) for k, v in model.state_dict(keep_vars=True).items()}


def same_tensors(model: nn.Module, state: dict) -> bool:
    """True when ``model`` holds exactly the tensors of :func:`tensor_state` (same names, objects and values)."""
    now = model.state_dict(keep_vars=True)
    return list(now) == list(state) and all(
        id(v) == state[k][1] and torch.equal(v.detach(), state[k][0]) for k, v in now.items())


class ResBlock(nn.Module):
    """``x + relu(conv(x))``: a residual block that keeps its shape (a depth group)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + torch.relu(self.conv(x))


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


class Scale(nn.Module):
    """A per-channel scale the library does not know: ``x * scale`` along dim 1 (``n`` channels, values ``init`` or
    random)."""

    def __init__(self, n, init=None):
        super().__init__()
        self.n = n
        self.scale = nn.Parameter(torch.randn(n) if init is None else torch.as_tensor(init, dtype=torch.float32))

    def forward(self, x):
        return x * self.scale.view(1, -1, *([1] * (x.dim() - 2)))


class TPScalePruner(pe.layers.BasePruningFunc):
    """A pruner for :class:`Scale` written as Torch-Pruning's docs say: no check call, ``prune_in_channels``
    aliased to ``prune_out_channels``."""

    TARGET_MODULES = (Scale,)

    def prune_out_channels(self, layer, idxs):
        keep = sorted(set(range(layer.n)) - set(idxs))
        layer.scale = self._prune_parameter_and_grad(layer.scale, keep, 0)
        layer.n = len(keep)
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer):
        return layer.n

    get_in_channels = get_out_channels


class GroupedConvs(nn.Module):
    """``conv1`` (3 -> ``width``, 1x1) feeds ``gconv`` (``width`` -> 8, 3x3, 4 groups), then ``out`` (8 -> 2): with
    ``width=16`` gconv reads 4 channels per group, with ``width=8`` two (``relu`` between the convs if asked)."""

    def __init__(self, width: int = 16, relu: bool = False):
        super().__init__()
        self.relu = relu
        self.conv1 = nn.Conv2d(3, width, 1)
        self.gconv = nn.Conv2d(width, 8, 3, padding=1, groups=4)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        act = torch.relu if self.relu else (lambda y: y)
        return self.out(act(self.gconv(act(self.conv1(x)))))
