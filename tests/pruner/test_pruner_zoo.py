"""Pruners on torchvision models: the published ResNet-18 figure, and every scope on a few architectures."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import prune_explorer as pe
from prune_explorer.importance import MagnitudeImportance, TaylorImportance

from small_models import n_params

X = torch.randn(1, 3, 224, 224)


def _build(name):
    kw = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    return getattr(torchvision.models, name)(**kw).eval()


def _classifier(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


@pytest.mark.slow
def test_resnet18_half_channels_round_to_8():
    """Torch-Pruning's README figure: 11.69M -> 3.06M parameters at pruning_ratio=0.5 (classifier ignored)."""
    torch.manual_seed(0)
    m = torchvision.models.resnet18()
    assert n_params(m) == 11_689_512
    pr = pe.pruner.MagnitudePruner(m, X, MagnitudeImportance(p=2), pruning_ratio=0.5, ignored_layers=[m.fc], round_to=8)
    pr.step()
    assert n_params(m) == pytest.approx(3.06e6, rel=0.005)
    assert all(c.out_channels % 8 == 0 for c in m.modules() if isinstance(c, nn.Conv2d))
    assert m(X).shape == (1, 1000) and m.fc.out_features == 1000
    assert pr.skipped == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "densenet121", "mobilenet_v3_small", "vit_b_16", "swin_t", "googlenet"])
@pytest.mark.parametrize("mode", ["local", "global", "isomorphic"])
def test_every_scope_prunes_a_working_model(name, mode):
    torch.manual_seed(0)
    m = _build(name)
    n0 = n_params(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pr = pe.pruner.BasePruner(m, X, MagnitudeImportance(), pruning_ratio=0.4, ignored_layers=[_classifier(m)],
                                  global_pruning=mode != "local", isomorphic=mode == "isomorphic", iterative_steps=2)
    sizes = []
    for _ in range(2):
        for g in pr.step(interactive=True):
            assert g.importance.shape == (len(g.candidate_idxs),)
            assert set(g.proposed_idxs) <= set(g.candidate_idxs)
            g.prune()
        sizes.append(n_params(m))
    assert n0 > sizes[0] > sizes[1]
    assert m(X).shape == (1, 1000)
    assert not [s for s in pr.skipped if s.kind in ("error", "user")]
    assert len(pr.history) == len(pr.DG.history) > 0


@pytest.mark.slow
def test_taylor_on_resnet18():
    torch.manual_seed(0)
    m = torchvision.models.resnet18()
    pr = pe.pruner.MagnitudePruner(m, X, TaylorImportance(), pruning_ratio=0.25, ignored_layers=[m.fc])
    m(torch.randn(2, 3, 224, 224)).logsumexp(1).mean().backward()
    pr.step()
    assert m.layer1[0].conv1.out_channels == 48
    assert m(X).shape == (1, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "densenet121", "googlenet"])
@pytest.mark.parametrize("global_pruning", [False, True])
def test_same_layer_widths_as_torch_pruning(name, global_pruning):
    """Where Torch-Pruning is installed (it is not a dependency), the same options give the same layer widths."""
    tp = pytest.importorskip("torch_pruning")
    import copy

    torch.manual_seed(0)
    template = _build(name)
    widths = []
    for lib in (pe, tp):
        m = copy.deepcopy(template)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lib.pruner.MagnitudePruner(m, X, lib.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       ignored_layers=[_classifier(m)], global_pruning=global_pruning).step()
        widths.append([(n, c.in_channels, c.out_channels) for n, c in m.named_modules() if isinstance(c, nn.Conv2d)])
    assert widths[0] == widths[1]
