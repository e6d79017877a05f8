"""``pruner.step()`` decides every group, then cuts each tensor once (``batched_applier`` through held cuts): the
same channels, the same tensors, the same outputs and the same history as pruning group after group (the sequential
applier), for a DenseNet (every group also cuts the inputs of every later layer), a ResNet, a RegNet (grouped convs:
a group cuts a conv's inputs, the next reads its outputs), a ViT (its hidden group in the batch), tied weights and a
Llama with whole heads, with magnitude, global LAMP, FPGM and Taylor criteria; one undo per record restores the model
exactly. A criterion that reads more than its channels' weights is decided on the cut model (the held cuts are pruned
first)."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torchvision

import prune_explorer as pe
from prune_explorer.importance.held import reads_channel_parts_only
from prune_explorer.pruner.driver import sequential_applier
from small_models import same_tensors as _same, tensor_state as _state

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _densenet():
    model = torchvision.models.DenseNet(growth_rate=8, block_config=(3, 3), num_init_features=16, bn_size=2,
                                        num_classes=5)
    return model, torch.randn(1, 3, 32, 32), model.classifier


def _resnet():
    model = torchvision.models.resnet18(num_classes=5)
    return model, torch.randn(1, 3, 32, 32), model.fc


def _regnet():  # grouped 3x3 convs: a group cuts a conv's inputs, the next one reads its output rows
    from torchvision.models.regnet import BlockParams, RegNet

    params = BlockParams.from_init_params(depth=3, w_0=16, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25)
    model = RegNet(params, num_classes=5)
    return model, torch.randn(1, 3, 32, 32), model.fc


def _vit():
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
                                                 mlp_dim=64, num_classes=5)
    return model, torch.randn(1, 3, 32, 32), model.heads.head


def _llama():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   use_cache=False)
    model = transformers.LlamaForCausalLM(cfg)
    ids = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(0))
    return model, {"input_ids": ids}, model.lm_head


MODELS = {"densenet": _densenet, "resnet": _resnet, "regnet": _regnet, "vit": _vit, "llama": _llama}


class _LayerWide(pe.importance.MagnitudeImportance):
    """A custom criterion (it does not declare that it reads only its channels' weights)."""


CRITERIA = {
    "magnitude": (lambda: pe.importance.MagnitudeImportance(p=2), {}),
    "lamp-global": (lambda: pe.importance.LAMPImportance(), {"global_pruning": True}),
    "fpgm": (lambda: pe.importance.FPGMImportance(), {}),
    "taylor": (lambda: pe.importance.TaylorImportance(), {}),
    "custom": (lambda: _LayerWide(p=1), {}),
}


def _run(build, criterion, batched: bool):
    torch.manual_seed(0)
    model, x, head = build()
    model.eval()
    make, kwargs = CRITERIA[criterion]
    imp = make()
    if criterion == "taylor":
        out = model(**x) if isinstance(x, dict) else model(x)
        (out.logits if hasattr(out, "logits") else out).float().pow(2).mean().backward()
    extra = {"prune_num_heads": True, "head_pruning_ratio": 0.5} if build is _llama else {}
    pr = pe.pruner.MagnitudePruner(model, x, imp, pruning_ratio=0.5, ignored_layers=[head], **kwargs, **extra)
    pr.DG.undo_depth = 1 << 20
    state = _state(model)
    if not batched:  # group after group: any applier other than the default one is used as it is
        pr.driver.applier = lambda *a: sequential_applier(*a)
    pr.step()
    return model, x, pr, state


@pytest.mark.parametrize("name,criterion", [
    ("densenet", "magnitude"), ("densenet", "lamp-global"), ("densenet", "fpgm"), ("densenet", "taylor"),
    ("densenet", "custom"), ("resnet", "magnitude"), ("resnet", "taylor"), ("regnet", "magnitude"),
    ("regnet", "fpgm"), ("vit", "magnitude"),
    ("vit", "lamp-global"), ("llama", "magnitude"), ("llama", "taylor"),
])
def test_batched_step_is_the_sequential_step(name, criterion):
    build = MODELS[name]
    a, x, pa, state = _run(build, criterion, batched=True)
    b, _, pb, _ = _run(build, criterion, batched=False)
    assert pa.history == pb.history  # the same groups, channels (indices as pruned one by one), steps and scopes
    assert [s.root for s in pa.skipped] == [s.root for s in pb.skipped]
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]), k
    with torch.no_grad():
        ya, yb = (a(**x), b(**x)) if isinstance(x, dict) else (a(x), b(x))
    ya, yb = (ya.logits, yb.logits) if hasattr(ya, "logits") else (ya, yb)
    assert torch.equal(ya, yb)
    assert pe.utils.count_params(a) < 0.8 * sum(v[0].numel() for v in state.values() if v[0].is_floating_point())
    n_groups = len(pb.DG.history)
    if reads_channel_parts_only(pa.importance) and name in ("densenet", "regnet", "vit"):
        assert len(pa.DG.history) == 1 < n_groups  # decided through held cuts: one record for the whole step
        # (a ViT's hidden group, one offset in every head, included)
    if name == "densenet" and criterion == "custom":
        assert len(pa.DG.history) > 1  # a criterion that may read whole layers is decided on the cut model
    for rec in reversed(list(pa.DG.history)):  # undo, record by record: exactly the model it was
        pa.DG.undo(rec)
    assert _same(a, state)


@pytest.mark.slow
def test_densenet121_batched_step_is_the_sequential_step():
    """The full torchvision DenseNet-121 graph (small input): one record, the sequential step's model."""
    def build():
        model = torchvision.models.densenet121(num_classes=5)
        return model, torch.randn(1, 3, 32, 32), model.classifier

    a, x, pa, state = _run(build, "magnitude", batched=True)
    b, _, pb, _ = _run(build, "magnitude", batched=False)
    assert len(pa.DG.history) == 1 and len(pb.DG.history) == 120
    assert pa.history == pb.history
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))
    pa.DG.undo()
    assert _same(a, state)


class _Tied(torch.nn.Module):
    """An embedding whose weight the output layer shares: two members of one group cut the same tensor dim."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 16)
        self.mid, self.mid2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)
        self.head = torch.nn.Linear(16, 20, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        h = self.emb(ids)
        return self.head(h + self.mid2(torch.relu(self.mid(h))))


def test_tied_weight_batched_step_is_the_sequential_step():
    """Tied weights: two members of one group (the embedding's outputs, the output layer's inputs) cut the same
    tensor dim; the next group is decided through the held cuts: one record, the sequential step's model, exact undo."""
    ids = torch.randint(0, 20, (1, 6), generator=torch.Generator().manual_seed(1))
    runs = []
    for batched in (True, False):
        torch.manual_seed(0)
        model = _Tied().eval()
        pr = pe.pruner.MagnitudePruner(model, ids, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5)
        pr.DG.undo_depth = 1 << 20
        state = _state(model)
        if not batched:
            pr.driver.applier = lambda *a: sequential_applier(*a)
        pr.step()
        runs.append((model, pr, state))
    (a, pa, state), (b, pb, _) = runs
    assert len(pa.DG.history) == 1 < len(pb.DG.history) and pa.history == pb.history
    assert a.head.weight is a.emb.weight and a.emb.weight.shape == b.emb.weight.shape == (20, 8)
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))
    with torch.no_grad():
        assert torch.equal(a(ids), b(ids))
    pa.DG.undo()
    assert _same(a, state)
