"""Model zoo: every torchvision classification model, plus segmentation and detection models that run on CPU.

Each model (random weights, fixed seed) is traced, every group loses its least-L2-norm half of channels (final
classifier ignored), then forward and backward must work and the output shape must be unchanged.
Marked ``slow``: runs in CI, skip locally with ``-m "not slow"``.
"""

import pytest
import torch
import torch.nn as nn
import torchvision

import prune_explorer as pe

CLASSIFICATION = torchvision.models.list_models(module=torchvision.models)

# input side per model family: small inputs keep the zoo fast; some models need their native size
INPUT_SIZE = {"inception_v3": 96, "googlenet": 64}
for _n in CLASSIFICATION:
    if _n.startswith(("vit_", "maxvit", "swin")):
        INPUT_SIZE[_n] = 224
    if _n.startswith("vit_h"):
        INPUT_SIZE[_n] = 224

# models that cannot be supported, with the reason (the target is none)
UNSUPPORTED = {}


def l2_scores(group):
    """Per root channel: L2 norm of the root layer's weights for that channel (plain, importance-module free)."""
    dep, idxs = group[0]
    w = getattr(dep.layer, "weight", dep.layer if isinstance(dep.layer, torch.Tensor) else None)
    if w is None or not isinstance(w, torch.Tensor):
        return torch.zeros(len(idxs))
    w = w.detach()
    if isinstance(dep.layer, nn.modules.conv._ConvNd) and getattr(dep.layer, "transposed", False):
        w = w.transpose(0, 1)
    if w.shape[0] < max(idxs) + 1:
        return torch.zeros(len(idxs))
    return w[idxs].flatten(1).norm(dim=1) if w.ndim > 1 else w[idxs].abs()


def prune_least_half(dg, ignored):
    n = 0
    for group in dg.get_all_groups(ignored_layers=ignored):
        scores = l2_scores(group)
        pos = {r: k for k, r in enumerate(group.root_idxs)}
        units = sorted(group.units, key=lambda u: float(sum(scores[pos[i]] for i in u)) / len(u))
        k = len(units) // 2
        if k:
            group.select([i for u in units[:k] for i in u]).prune()
            n += 1
    return n


def classifier_of(model):
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return [last] if last is not None else []


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_zoo(name):
    if name in UNSUPPORTED:
        pytest.skip(UNSUPPORTED[name])
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    s = INPUT_SIZE.get(name, 64)
    x = torch.randn(1, 3, s, s)
    with torch.no_grad():
        y0 = model(x)
    before = count(model)
    dg = pe.DependencyGraph().build_dependency(model, x)
    assert dg.internal_errors == []
    n = prune_least_half(dg, classifier_of(model))
    assert n > 0, "no group was pruned"
    assert count(model) < before
    y = model(x)
    assert y.shape == y0.shape
    y.sum().backward()
    # every parameter the forward pass used gets a gradient (auxiliary heads only run in training mode)
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "aux" not in n.lower())


SEGMENTATION = ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "deeplabv3_resnet50"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation_zoo(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=5, aux_loss=False).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        y0 = model(x)["out"]
    dg = pe.DependencyGraph().build_dependency(model, x)
    assert prune_least_half(dg, []) > 0
    y = model(x)["out"]
    assert y.shape == y0.shape == (1, 5, 96, 96)
    y.sum().backward()


DETECTION = ["fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large", "retinanet_resnet50_fpn", "fcos_resnet50_fpn"]


@pytest.mark.slow
@pytest.mark.parametrize("name", DETECTION)
def test_detection_zoo(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=3).eval()
    x = [torch.rand(3, 160, 160)]
    dg = pe.DependencyGraph().build_dependency(model, (x,))
    heads = [m for n, m in model.named_modules() if "head" in n.split(".")[0] and isinstance(m, nn.Conv2d)]
    assert prune_least_half(dg, heads) > 0
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, list) and set(out[0]) >= {"boxes", "scores", "labels"}
    model.train()
    images = [torch.rand(3, 160, 160), torch.rand(3, 160, 160)]  # 2 images: BatchNorm needs >1 value in training
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 80.0, 90.0]]), "labels": torch.tensor([1])}] * 2
    losses = model(images, targets)
    sum(losses.values()).backward()
