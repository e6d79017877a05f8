"""Every criterion scores every group of real models (the groups the pruners yield), one finite score per channel."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

import prune_explorer as pe
from prune_explorer import importance as I

MODELS = ["resnet18", "densenet121", "mobilenet_v3_small", "vit_b_16", "swin_t", "googlenet"]


def _build(name):
    kw = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    return getattr(torchvision.models, name)(**kw).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_importance_on_every_group(name):
    torch.manual_seed(0)
    model = _build(name)
    x = torch.randn(1, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DG = pe.DependencyGraph().build_dependency(model, x)
    model.zero_grad()
    model(x).sum().backward()
    hess = I.HessianImportance()
    hess.accumulate_grad(model)
    imps = [I.MagnitudeImportance(p=1), I.MagnitudeImportance(p=2, group_reduction="max", normalizer="gaussian"),
            I.LAMPImportance(), I.FPGMImportance(), I.RandomImportance(), I.TaylorImportance(), hess,
            I.BNScaleImportance(fallback=I.MagnitudeImportance())]
    groups = list(DG.get_all_groups())
    assert groups
    for g in groups:
        n = len(g.root_idxs)
        for imp in imps:
            s = imp(g)
            assert s is not None, (type(imp).__name__, g.root_name)
            assert s.shape == (n,) and s.dtype == torch.float32 and s.device.type == "cpu", (type(imp).__name__, g.root_name)
            assert bool(torch.isfinite(s).all()), (type(imp).__name__, g.root_name)
        # a subgroup is scored consistently with the full group
        half = list(g.root_idxs)[: max(1, n // 2)]
        full = I.MagnitudeImportance(normalizer=None)(g)
        sub = I.MagnitudeImportance(normalizer=None)(g.select(half))
        if all(len(u) == 1 for u in g.units):
            torch.testing.assert_close(sub, full[: len(half)], rtol=1e-4, atol=1e-6)
