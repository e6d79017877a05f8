"""Sizes that live in module attributes (and in configs) follow the pruning.

A size the model's forward reads from an int attribute (``x.reshape(n, self.hidden_dim, -1)``,
``torch.zeros(b, self.width)``, ``x.view(b, self.dim * 2, -1)``, ``self.config.hidden_size``) is prunable like a
size read from a tensor: the graph couples it with the channels it sizes, and after pruning the attribute (or the
config field) holds the new size, so the unmodified forward keeps working. An attribute whose arithmetic cannot be
inverted, or that two differently pruned layers share, keeps its channels fixed with a reason.
"""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch
import torch.nn as nn

import prune_explorer as pe


class PatchEmbed(nn.Module):
    """torchvision ViT's ``_process_input``: the embedding width is read from ``self.hidden_dim``."""

    def __init__(self, hidden_dim=16):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, 4, 4)
        self.mlp = nn.Sequential(nn.Linear(hidden_dim, 32), nn.GELU(), nn.Linear(32, hidden_dim))
        self.head = nn.Linear(hidden_dim, 5)

    def forward(self, x):
        n = x.shape[0]
        x = self.conv_proj(x)
        x = x.reshape(n, self.hidden_dim, -1).permute(0, 2, 1)
        x = x + self.mlp(x)
        return self.head(x.mean(1))


IMG = torch.randn(2, 3, 16, 16)


def _prune_half(dg, **kw):
    for g in list(dg.get_all_groups(**kw)):
        units = g.units
        if len(units) >= 2:
            g.select([i for u in units[: len(units) // 2] for i in u]).prune()


def test_attribute_size_is_prunable_and_rewritten():
    model = PatchEmbed().eval()
    dg = pe.DependencyGraph().build_dependency(model, IMG)
    assert dg.fixed_reason(model.conv_proj) is None
    _prune_half(dg, ignored_layers=[model.head])
    assert model.conv_proj.out_channels == 8
    assert model.hidden_dim == 8 and type(model.__dict__["hidden_dim"]) is int
    assert model(IMG).shape == (2, 5)


def test_tracing_leaves_attributes_as_they_were():
    model = PatchEmbed()
    before = dict(model.__dict__)
    pe.DependencyGraph().build_dependency(model, IMG)
    assert all(type(model.__dict__[k]) is type(v) and model.__dict__[k] == v for k, v in before.items()
               if isinstance(v, int))


def test_undo_restores_the_attribute():
    model = PatchEmbed().eval()
    dg = pe.DependencyGraph().build_dependency(model, IMG)
    dg.undo_depth = 1
    g = dg.get_pruning_group(model.conv_proj, pe.prune_conv_out_channels, idxs=[0, 3])
    g.prune()
    assert model.hidden_dim == 14
    dg.undo()
    assert model.hidden_dim == 16 and model.conv_proj.out_channels == 16
    model(IMG)


def test_history_replay_rewrites_the_attribute(tmp_path):
    model = PatchEmbed().eval()
    dg = pe.DependencyGraph().build_dependency(model, IMG)
    dg.get_pruning_group(model.conv_proj, pe.prune_conv_out_channels, idxs=[1, 2, 5]).prune()
    path = tmp_path / "pruned.pt"
    pe.save_pruned(model, path)
    fresh = pe.load_pruned(PatchEmbed().eval(), path)
    assert fresh.hidden_dim == 13
    torch.testing.assert_close(fresh(IMG), model(IMG))


class Scaled(nn.Module):
    """A size computed from an attribute with a literal factor: ``view(b, self.dim * 2, -1)``."""

    def __init__(self, dim=8, op="mul"):
        super().__init__()
        self.dim, self.op = dim, op
        self.a = nn.Linear(6, 2 * dim)
        self.b = nn.Linear(4, 6)

    def forward(self, x):
        y = self.a(x)  # (b, n, 2 * dim)
        if self.op == "mul":
            y = y.transpose(1, 2).reshape(x.shape[0], self.dim * 2, -1)
        elif self.op == "add":
            y = y.transpose(1, 2).reshape(x.shape[0], self.dim + 8, -1)  # not invertible
        return self.b(y).sum(1)


def test_attribute_times_literal_follows_the_pruning():
    model = Scaled(op="mul").eval()
    x = torch.randn(2, 4, 6)
    dg = pe.DependencyGraph().build_dependency(model, x)
    assert dg.fixed_reason(model.a) is None
    g = dg.get_pruning_group(model.a, pe.prune_linear_out_channels, idxs=[0, 5])
    g.prune()
    assert model.dim == 7 and model.a.out_features == 14
    model(x)


def test_attribute_arithmetic_that_cannot_be_inverted_keeps_channels_fixed():
    model = Scaled(op="add").eval()
    x = torch.randn(2, 4, 6)
    dg = pe.DependencyGraph().build_dependency(model, x)
    reason = dg.fixed_reason(model.a)
    assert reason is not None and "dim" in reason


class Shared(nn.Module):
    """Two branches reshape with the same attribute but their channels are pruned independently."""

    def __init__(self):
        super().__init__()
        self.width = 8
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(6, 8)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        ya = self.a(x).reshape(x.shape[0], self.width)
        yb = self.b(x).reshape(x.shape[0], self.width)
        return self.out(torch.cat([ya, yb], 1))


def test_shared_attribute_couples_or_fixes():
    """One attribute sizes two branches: they must keep the same width, so they are pruned together."""
    model = Shared().eval()
    x = torch.randn(2, 6)
    dg = pe.DependencyGraph().build_dependency(model, x)
    g = dg.get_pruning_group(model.a, pe.prune_linear_out_channels, idxs=[0])
    assert model.b in [dep.layer for dep, _ in g]
    g.prune()
    assert model.width == 7 and model.a.out_features == model.b.out_features == 7
    assert model(x).shape == (2, 3)


class FromConfig(nn.Module):
    """A Hugging Face-style module: the size comes from ``self.config`` (a PretrainedConfig-like object)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.a = nn.Linear(6, config.hidden_size)
        self.b = nn.Linear(config.hidden_size, 3)

    def forward(self, x):
        y = self.a(x).view(x.shape[0], -1, self.config.hidden_size)
        return self.b(y).sum(1)


@dataclasses.dataclass
class DataConfig:
    hidden_size: int = 8


def _config(kind):
    if kind == "dataclass":
        return DataConfig()
    if kind == "namespace":
        return types.SimpleNamespace(hidden_size=8)
    transformers = pytest.importorskip("transformers")
    return transformers.PretrainedConfig(hidden_size=8)


@pytest.mark.parametrize("kind", ["dataclass", "namespace", "hf"])
def test_config_field_read_in_forward_is_rewritten(kind):
    cfg = _config(kind)
    model = FromConfig(cfg).eval()
    x = torch.randn(2, 6)
    dg = pe.DependencyGraph().build_dependency(model, x)
    dg.get_pruning_group(model.a, pe.prune_linear_out_channels, idxs=[1, 2]).prune()
    assert model.config.hidden_size == 6 and type(model.config.hidden_size) is int
    assert cfg.hidden_size == 8 and model.config is not cfg  # the model's own copy: the caller's config is untouched
    assert model(x).shape == (2, 3)


def test_int_captured_in_a_closure_stays_a_literal():
    width = 8

    class Closure(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, width)
            self.b = nn.Linear(width, 3)

        def forward(self, x):
            return self.b(self.a(x).view(x.shape[0], width))

    model = Closure().eval()
    dg = pe.DependencyGraph().build_dependency(model, torch.randn(2, 6))
    assert "literal" in (dg.fixed_reason(model.a) or "")


def test_creation_op_sized_by_an_attribute_follows():
    """``torch.zeros(b, self.width)`` added to a layer's output: the new tensor follows the pruning."""

    class Created(nn.Module):
        def __init__(self):
            super().__init__()
            self.width = 8
            self.a = nn.Linear(6, 8)
            self.b = nn.Linear(8, 3)

        def forward(self, x):
            return self.b(self.a(x) + torch.ones(x.shape[0], self.width))

    model = Created().eval()
    x = torch.randn(2, 6)
    dg = pe.DependencyGraph().build_dependency(model, x)
    dg.get_pruning_group(model.a, pe.prune_linear_out_channels, idxs=[0, 7]).prune()
    assert model.width == 6
    assert model(x).shape == (2, 3)
