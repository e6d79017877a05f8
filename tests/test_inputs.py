"""prune_explorer.inputs: the calling convention and the walks over nested example inputs, used by tracing and
MAC counting alike."""

from __future__ import annotations

import collections
import dataclasses

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import prune_explorer as pe
from prune_explorer.inputs import (as_call_args, call_model, has_meta_tensors, kept_state, map_tensors, tensors_in,
                                   to_device, to_meta)

Pair = collections.namedtuple("Pair", "a b")


@dataclasses.dataclass
class Batch:
    x: torch.Tensor
    meta: dict
    tag: str = "t"


def test_calling_convention():
    t = torch.ones(2)
    seen = []

    def model(*args, **kwargs):
        seen.append((args, kwargs))

    call_model(model, t)
    call_model(model, (t, 3))
    call_model(model, [t])
    call_model(model, {"x": t})
    packed = pack_padded_sequence(torch.randn(2, 3, 1), torch.tensor([3, 1]), batch_first=True)
    call_model(model, packed)
    assert [len(a) for a, _ in seen] == [1, 2, 1, 0, 1] and seen[3][1] == {"x": t}
    assert isinstance(seen[4][0][0], PackedSequence)
    assert call_model(model, t, forward_fn=lambda m, x: ("custom", x)) == ("custom", t)
    assert as_call_args(Pair(1, 2)) == ((1, 2), {})


def test_tensors_in_every_container_in_order():
    a, b, c, d = (torch.full((k + 1,), float(k)) for k in range(4))

    class Holder:
        def __init__(self):
            self.inner = d
            self.fn = print

    obj = {"p": Pair(a, [b]), "batch": Batch(c, {"k": None}), "h": Holder(), "n": 3, "s": "x"}
    assert [t.numel() for t in tensors_in(obj)] == [1, 2, 3, 4]
    assert tensors_in(a)[0] is a and tensors_in(None) == [] and tensors_in(nn.Linear(1, 1)) == []
    nested = a
    for _ in range(20):  # very deep nesting is cut off instead of recursing forever
        nested = [nested]
    assert tensors_in(nested) == []


def test_map_tensors_keeps_every_container_type():
    a, b = torch.ones(2, 3), torch.zeros(4, dtype=torch.long)
    obj = (Pair(a, b), collections.OrderedDict(x=a), [b, "keep", 1.5], Batch(a, {"ids": b}))
    out = to_meta(obj)
    assert type(out[0]) is Pair and type(out[1]) is collections.OrderedDict and type(out[3]) is Batch
    assert out[2][1:] == ["keep", 1.5] and out[3].tag == "t"
    assert all(t.device.type == "meta" for t in tensors_in(out)) and has_meta_tensors(out)
    assert [(t.shape, t.dtype) for t in tensors_in(out)] == [(t.shape, t.dtype) for t in tensors_in(obj)]
    assert not has_meta_tensors(obj)
    cl = torch.randn(1, 3, 4, 4).to(memory_format=torch.channels_last)
    assert to_meta(cl).stride() == cl.stride()  # strides kept: a channels-last input stays channels-last
    doubled = map_tensors(lambda t: t * 2, {"a": a})
    assert torch.equal(doubled["a"], a * 2)
    assert to_device(obj, "cpu")[0].a.device.type == "cpu"


def test_packed_sequence_keeps_cpu_batch_sizes():
    packed = pack_padded_sequence(torch.randn(2, 5, 4), torch.tensor([5, 3]), batch_first=True, enforce_sorted=False)
    meta = to_meta(packed)
    assert isinstance(meta, PackedSequence) and meta.data.device.type == "meta"
    assert meta.batch_sizes.device.type == "cpu" and torch.equal(meta.batch_sizes, packed.batch_sizes)
    assert meta.sorted_indices.device.type == "meta"


def test_kept_state_restores_buffers_flags_and_identity():
    m = nn.Sequential(nn.BatchNorm1d(3), nn.Dropout()).train()
    m[1].eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    mean = m[0].running_mean
    with kept_state(m, eval_mode=True):
        assert not m[0].training
    with kept_state(m):
        m(torch.randn(8, 3) + 10)
        m[0].running_mean = torch.full((3,), 7.0)  # a forward that replaces a buffer
        m[0].train(False)
    assert m[0].running_mean is mean and m[0].training and not m[1].training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(RuntimeError, match="boom"), kept_state(m):
        m(torch.randn(8, 3))
        raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


class PackedLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, packed):
        _, (h, _) = self.lstm(packed)
        return self.fc(h[-1])


def test_tracing_and_counting_take_a_packed_sequence_alike():
    """A PackedSequence is a tuple, but both the tracer and the MAC counter pass it whole (model(x))."""
    torch.manual_seed(0)
    m = PackedLSTM()
    x = pack_padded_sequence(torch.randn(2, 5, 4), torch.tensor([5, 3]), batch_first=True)
    macs, _ = pe.measure.count_ops_and_params(m, x)
    dg = pe.DependencyGraph().build_dependency(m, x)
    group = dg.get_pruning_group(m.lstm, pe.prune_lstm_out_channels, [0, 1])
    assert {it.dep.layer for it in group} == {m.lstm, m.fc}
    group.prune()
    assert m(x).shape == (2, 3) and m.lstm.hidden_size == 6 and m.fc.in_features == 6
    assert pe.measure.count_ops_and_params(m, x)[0] < macs


def test_tracing_takes_dicts_namedtuples_and_dataclasses():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 6)
            self.b = nn.Linear(6, 2)

        def forward(self, x, extra=None):
            h = self.a(x.x if isinstance(x, Batch) else x)
            if extra is not None:
                h = h + extra.a.sum()
            return self.b(h)

    for inputs in ({"x": torch.randn(2, 4), "extra": Pair(torch.ones(1), None)},
                   (Batch(torch.randn(2, 4), {}),)):
        m = Net()
        dg = pe.DependencyGraph().build_dependency(m, inputs)
        assert dg.traced_on_meta
        dg.get_pruning_group(m.a, pe.prune_linear_out_channels, [0]).prune()
        assert m.b.in_features == 5 and call_model(m, inputs).shape == (2, 2)


class _Images(nn.Module):
    """Takes one list of 3-D images, as torchvision's detection models do (``model(images)``)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, images, targets=None):
        if not isinstance(images, list) or any(im.dim() != 3 for im in images):
            raise ValueError("images is expected to be a list of 3d tensors")
        return self.head(self.conv(torch.stack(images)).relu())


def test_a_list_is_passed_whole_when_the_model_fails_on_it_unpacked():
    """Torch-Pruning's rule for a list or tuple: model(*x), and if that fails, model(x)."""
    model = _Images()
    x = [torch.rand(3, 12, 12), torch.rand(3, 12, 12)]
    assert call_model(model, x).shape == (2, 2, 10, 10)
    assert pe.inputs.passes_whole(model, x) and not pe.inputs.passes_whole(_Images(), x)
    with pytest.raises(ValueError, match="list of 3d tensors"):  # neither form runs: the model(*x) error
        call_model(_Images(), [torch.rand(12, 12)])
    with pytest.raises(TypeError):  # a tuple of unrelated values: model(*x) fails, model(x) too; the first error
        call_model(nn.Linear(2, 2), (torch.ones(2), torch.ones(2)))
    macs, params = pe.utils.count_ops_and_params(_Images(), x)  # the failed call's counts are discarded
    assert macs == 2 * (8 * 27 * 100 + 2 * 8 * 100) and params == sum(p.numel() for p in model.parameters())


def test_a_list_of_images_is_traced_pruned_and_run_whole():
    model = _Images().eval()
    x = [torch.rand(3, 12, 12)]
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5)
    pruner.step()
    assert model.conv.out_channels == 4 and model(x).shape == (1, 2, 10, 10)
    with pytest.raises(pe.TracingError, match=r"list of 3d tensors"):  # the convention's error, once
        pe.DependencyGraph().build_dependency(_Images(), [torch.rand(12, 12)])
