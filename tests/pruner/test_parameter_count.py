"""``report.parameter_count`` (the pruner's ``initial_params`` and the report's count after pruning) counts what
``sum(p.numel() for p in model.parameters())`` counts: each parameter once, shared modules and tied weights once."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from prune_explorer.pruner.report import parameter_count


def _torch_count(model: nn.Module) -> int:
    return sum(int(p.numel()) for p in model.parameters())


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "regnet_y_400mf", "efficientnet_b0", "resnet18"])
def test_torchvision_models(name):
    model = getattr(torchvision.models, name)()
    assert parameter_count(model) == _torch_count(model)


class Walks(nn.Module):
    """A module overriding ``named_modules`` (its own walk is the one torch follows): it hides its second child."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 3), nn.Linear(3, 4)

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        yield prefix, self
        yield from self.a.named_modules(memo, prefix + ".a" if prefix else "a", remove_duplicate)


def test_shared_modules_tied_weights_missing_parameters_and_an_overridden_walk():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 4, bias=False), nn.Linear(4, 4))
    model[4].weight = model[3].weight  # a tie across modules
    model[4].register_parameter("extra", None)
    assert parameter_count(model) == _torch_count(model) == 16 + 4 + 16 + 4
    walks = nn.Sequential(Walks(), nn.Linear(3, 1))
    assert parameter_count(walks) == _torch_count(walks) == 2 * 3 + 3 + 3 + 1
