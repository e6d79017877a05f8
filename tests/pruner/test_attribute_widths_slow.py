"""Issue 14 acceptance on real vision transformers (random weights, no patches, classifier ignored,
``pruning_ratio=0.5``): sizes their forward reads from attributes (torchvision ViT's ``self.hidden_dim``, timm's
``self.num_heads`` / ``self.head_dim`` / ``self.attn_dim``, Swin's ``C // num_heads``) follow the pruning, so the
embedding width shrinks with everything else and the unmodified forward and backward run.

Small inputs keep it fast (the parameter counts barely depend on them); ``benchmarks/zoo_report.py`` prints the
same figures at 224 px next to Torch-Pruning's.
"""

from __future__ import annotations

import pytest
import torch

import prune_explorer as pe

pytestmark = pytest.mark.slow


def _torchvision(name, **kw):
    import torchvision

    model = torchvision.models.get_model(name, weights=None, **kw).eval()
    return model, [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


def _timm(name, **kw):
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False, **kw).eval()
    return model, model.get_classifier()


CASES = {
    # name: (build, input side, most parameters kept (fraction), most parameters kept (count))
    "torchvision/vit_b_16": (lambda: _torchvision("vit_b_16", image_size=64), 64, None, 23e6),
    "torchvision/swin_t": (lambda: _torchvision("swin_t"), 96, 0.30, None),
    "timm/vit_base_patch16_224": (lambda: _timm("vit_base_patch16_224", img_size=64), 64, 0.30, None),
    "timm/deit_small_patch16_224": (lambda: _timm("deit_small_patch16_224", img_size=64), 64, 0.30, None),
    "timm/eva02_tiny_patch14_224": (lambda: _timm("eva02_tiny_patch14_224", img_size=56, num_classes=1000), 56,
                                    0.30, None),
    "timm/swin_tiny_patch4_window7_224": (lambda: _timm("swin_tiny_patch4_window7_224", img_size=112), 112, 0.30,
                                          None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_vision_transformer_prunes_its_embedding_width(name):
    build, side, max_fraction, max_count = CASES[name]
    torch.manual_seed(0)
    model, head = build()
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        shape = model(x).shape
    before = sum(p.numel() for p in model.parameters())
    pr = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                   ignored_layers=[head])
    pr.step()
    assert not [s for s in pr.skipped if s.kind == "error"]
    after = sum(p.numel() for p in model.parameters())
    if max_fraction is not None:
        assert after / before <= max_fraction, f"{after / before:.3f} of the parameters kept"
    if max_count is not None:
        assert after <= max_count, f"{after / 1e6:.2f}M parameters kept"
    y = model(x)
    assert y.shape == shape
    y.sum().backward()
