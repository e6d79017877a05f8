"""Models, metrics and checks shared by the sensitivity tests (importable by worker processes)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# the pruning ratios the shared scan (conftest's ``tiny_table``) and the scan tests use
RATIOS = (0.25, 0.5, 0.75)


class TinyNet(nn.Module):
    """conv-bn-relu stem, a residual pair (conv2 and conv3 coupled by the add), a wider conv, a classifier."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1, stride=2, bias=False)
        self.bn2 = nn.BatchNorm2d(24)
        self.conv3 = nn.Conv2d(24, 32, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.conv4 = nn.Conv2d(32, 24, 3, padding=1, bias=False)
        self.bn4 = nn.BatchNorm2d(24)
        self.conv5 = nn.Conv2d(24, 40, 1)
        self.fc = nn.Linear(40, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(x)))
        z = F.relu(self.bn3(self.conv3(y)))
        y = y + self.bn4(self.conv4(z))           # conv2 and conv4 outputs are coupled by the add
        x = F.relu(self.conv5(y))
        return self.fc(x.mean((2, 3)))


def make_tiny(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    m = TinyNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    return m.eval()


class NegMSE:
    """eval_fn: minus the MSE between the model's outputs and reference outputs on a fixed batch."""

    def __init__(self, batch, ref):
        self.batch, self.ref = batch, ref

    def __call__(self, model):
        model.eval()
        with torch.no_grad():
            return -F.mse_loss(model(self.batch), self.ref).item()


class Counting(NegMSE):
    """NegMSE that counts its calls (in this process)."""

    def __init__(self, batch, ref):
        super().__init__(batch, ref)
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        return super().__call__(model)


class InterruptAfter(NegMSE):
    """NegMSE that raises KeyboardInterrupt on call number k + 1 (k calls finish)."""

    def __init__(self, batch, ref, k):
        super().__init__(batch, ref)
        self.k, self.calls = k, 0

    def __call__(self, model):
        if self.calls >= self.k:
            raise KeyboardInterrupt
        self.calls += 1
        return super().__call__(model)


class TrainModeEval(NegMSE):
    """A careless eval_fn: runs the model in train mode, which updates BatchNorm statistics in place."""

    def __call__(self, model):
        model.train()
        with torch.no_grad():
            out = model(self.batch)
        return -F.mse_loss(out, self.ref).item()


class CheckingEval(NegMSE):
    """At every call, checks that every tensor whose shape is the original one is bit-identical to the original,
    and that the tensors whose shape changed belong to one group's layers (only one group is pruned)."""

    def __init__(self, batch, ref, original, groups_layers):
        super().__init__(batch, ref)
        self.original = original            # {name: tensor clone}
        self.groups_layers = groups_layers  # [set of layer names of each group]
        self.calls = 0
        self.failures = []

    def __call__(self, model):
        self.calls += 1
        changed = set()
        for name, t in state_of(model).items():
            ref = self.original[name]
            if t.shape != ref.shape:
                changed.add(name.rsplit(".", 1)[0])
            elif not torch.equal(t, ref):
                self.failures.append(f"call {self.calls}: {name} differs from the original")
        if changed and not any(changed <= layers for layers in self.groups_layers):
            self.failures.append(f"call {self.calls}: layers of several groups are pruned: {sorted(changed)}")
        return super().__call__(model)


class ReturnsNaNWhenPruned(NegMSE):
    """Returns the metric on the unpruned model and NaN once the model is pruned."""

    def __init__(self, batch, ref, n_params):
        super().__init__(batch, ref)
        self.n_params = n_params

    def __call__(self, model):
        if sum(p.numel() for p in model.parameters()) != self.n_params:
            return math.nan
        return super().__call__(model)


def returns_string(model):
    return "high"


def state_of(model):
    """Every parameter and buffer by name (the tensors themselves)."""
    return dict(model.state_dict(keep_vars=True))


def snapshot(model):
    """(clones, identities, training flags) to compare a model with later."""
    sd = state_of(model)
    return ({k: v.detach().clone() for k, v in sd.items()}, {k: id(v) for k, v in sd.items()},
            [m.training for m in model.modules()])


def assert_unchanged(model, snap):
    clones, ids, modes = snap
    sd = state_of(model)
    assert sd.keys() == clones.keys()
    for k, v in sd.items():
        assert v.shape == clones[k].shape, k
        assert torch.equal(v, clones[k]), f"{k} changed"
        assert id(v) == ids[k], f"{k} was replaced by another tensor"
    assert [m.training for m in model.modules()] == modes
    assert not getattr(model, "_prune_explorer_history", [])


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/o projections (the head count read from an attribute)."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, _ = x.shape
        q, k, v = (p(x).view(B, N, self.num_heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        a = (q @ k.transpose(-1, -2) / 4).softmax(-1)
        return self.o((a @ v).transpose(1, 2).reshape(B, N, -1))


class TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(8, 32)
        self.attn = SelfAttention()
        self.mlp1 = nn.Linear(32, 64)
        self.mlp2 = nn.Linear(64, 32)
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        x = self.inp(x)
        x = x + self.attn(x)
        x = x + self.mlp2(F.gelu(self.mlp1(x)))
        return self.head(x)
