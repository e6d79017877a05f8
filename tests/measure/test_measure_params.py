"""Parameter counting: unique tensors, shared ones once, buffers never."""

import torch
import torch.nn as nn

from prune_explorer.measure import count_ops_and_params, count_params, params_per_module, unique_parameters


def test_plain_counts():
    assert count_params(nn.Linear(3, 2)) == 8
    assert count_params(nn.Linear(3, 2, bias=False)) == 6
    assert count_params(nn.BatchNorm2d(5)) == 10  # running stats are buffers


def test_tied_weights_counted_once():
    class TiedLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.head = nn.Linear(8, 50, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, idx):
            return self.head(self.embed(idx))

    m = TiedLM()
    assert count_params(m) == 400
    macs, params = count_ops_and_params(m, torch.randint(0, 50, (2, 3)))
    assert params == 400
    assert macs == 2 * 3 * 8 * 50


def test_shared_module_counted_once():
    block = nn.Linear(4, 4)
    m = nn.Sequential(block, nn.ReLU(), block)
    assert count_params(m) == 20
    per = params_per_module(m)
    assert per[""] == 20 and per["0"] == 20
    assert "2" not in per  # the shared module is listed under its first name only
    macs, params = count_ops_and_params(m, torch.randn(3, 4))
    assert params == 20 and macs == 2 * 3 * 16  # but it runs twice


def test_distinct_parameters_on_same_memory_counted_once():
    t = torch.randn(3, 3)
    a, b = nn.Parameter(t), nn.Parameter(t)
    assert count_params([a, b]) == 9
    assert count_params([a, nn.Parameter(t.clone())]) == 18


def test_trainable_only():
    m = nn.Linear(3, 2)
    m.bias.requires_grad_(False)
    assert count_params(m, trainable_only=True) == 6
    assert len(unique_parameters(m)) == 2


def test_lazy_module_counted_after_forward():
    m = nn.Sequential(nn.LazyLinear(4))
    assert count_params(m) == 0
    macs, params = count_ops_and_params(m, torch.randn(2, 6))
    assert params == 6 * 4 + 4 and macs == 2 * 6 * 4
