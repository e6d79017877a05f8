"""The post-prune check runs the model on working copies of its modules' dicts (``snapshot.lend_modules``) with the
stand-ins swapped in by one loop (``StandIns.swap_in``): the same answers as the general path (a snapshot of every
module, a stand-in per tensor through ``StandIns.of``, the snapshot restored), on real models, and the model is left
with its very own dicts, whatever its forward wrote."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from prune_explorer.graph.edit.snapshot import lend_modules, restore_modules, return_modules, snapshot_modules
from prune_explorer.graph.trace.meta_shapes import ShapeOnlyMode
from prune_explorer.inputs import call_model, to_meta
from prune_explorer.pruner.post_check import StandIns, _describe, _install_shortcuts, run_error

X = torch.randn(1, 3, 64, 64)


def _general_run_error(model, x):
    """The check's general path: snapshot every module, a stand-in per tensor, restore the snapshot."""
    state = snapshot_modules([model])
    stand_ins = StandIns()
    try:
        with torch.no_grad():
            for m, _attrs, params, buffers in state:
                if params:
                    m.__dict__["_parameters"] = {k: None if p is None else stand_ins.of(p, True)
                                                 for k, p in params.items()}
                if buffers:
                    m.__dict__["_buffers"] = {k: None if b is None else stand_ins.of(b, False)
                                              for k, b in buffers.items()}
            _install_shortcuts(state)
            with ShapeOnlyMode():
                call_model(model, to_meta(x), None)
    except Exception as exc:  # noqa: BLE001
        return _describe(exc)
    finally:
        restore_modules(state)
    return None


def _dicts(model):
    """Each module's dict: the object, its items (values by identity) and its lists' contents."""
    return [(m, id(m.__dict__), [(k, id(v)) for k, v in m.__dict__.items()],
             {k: list(v) for k, v in m.__dict__.items() if isinstance(v, list)},
             id(m._parameters), list(m._parameters.items()), id(m._buffers), list(m._buffers.items()))
            for m in model.modules()]


def _narrow_weight(layer: nn.Module) -> None:
    """One output channel less in ``layer``'s weight (and bias): the next layer no longer fits."""
    with torch.no_grad():
        layer.weight = nn.Parameter(layer.weight[:-1].clone())
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias[:-1].clone())


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "regnet_y_400mf", "efficientnet_b0"])
def test_the_same_answers_as_the_general_path_on_real_models(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for layer in (None, convs[1], convs[len(convs) // 2], convs[-1]):
        if layer is not None:
            _narrow_weight(layer)
        before = _dicts(model)
        error = run_error(model, X)
        assert _dicts(model) == before  # the very same dicts, holding the very same objects
        assert (error is None) == (layer is None) and error == _general_run_error(model, X)
        assert all(t.device.type == "cpu" for t in model.state_dict().values())


def test_swap_in_gives_what_of_gives_tensor_by_tensor_and_reuses_them():
    model = torchvision.models.mobilenet_v3_large().eval()
    conv = model.features[1].block[0][0]
    conv.register_parameter("again", conv.weight)  # a tie: the same Parameter under two names
    model.features[2].block[0][0].register_parameter("shared", conv.weight)  # and under another module
    reference, stand_ins = StandIns(), StandIns()
    lent = lend_modules([model])
    try:
        assert stand_ins.swap_in(lent) is False
        for m, _attrs, params, buffers in lent:
            for own, now, param in ((params, m._parameters, True), (buffers, m._buffers, False)):
                assert list(own) == list(now)
                for k, t in own.items():
                    if t is None:
                        assert now[k] is None
                        continue
                    meta, ref = now[k], reference.of(t, param)
                    assert (type(meta), meta.shape, meta.stride(), meta.dtype, meta.requires_grad, meta.device.type) \
                        == (type(ref), ref.shape, ref.stride(), ref.dtype, ref.requires_grad, "meta")
        weight = conv._parameters["weight"]  # ties stay ties
        assert conv._parameters["again"] is weight and model.features[2].block[0][0]._parameters["shared"] is weight
        first = {id(m): dict(m._parameters) for m, *_ in lent}
    finally:
        return_modules(lent)
    lent = lend_modules([model])
    try:
        stand_ins.swap_in(lent)
        assert all(m._parameters[k] is v for m, *_ in lent for k, v in first[id(m)].items())  # reused
    finally:
        return_modules(lent)
    assert all(t.device.type == "cpu" for t in model.parameters())


class Writes(nn.Module):
    """A forward that writes its module: an attribute set, one deleted, a list appended to, a buffer registered, a
    parameter replaced, a child's attribute set."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.seen = [1]
        self.gone = 3
        self.register_buffer("count", torch.zeros(1))

    def forward(self, x):
        self.cache = x.shape
        del self.gone
        self.seen.append(2)
        self.register_buffer("extra", torch.zeros(2))
        self.lin.weight = nn.Parameter(torch.zeros(4, 4, device=x.device))
        self.lin.note = "ran"
        return self.lin(x)


@pytest.mark.parametrize("mode", ["meta", "index data", "real"])
def test_whatever_the_forward_writes_the_model_keeps_its_own_dicts(mode):
    model = nn.Sequential(Writes(), nn.ReLU())
    before = _dicts(model)
    seen = model[0].seen
    assert run_error(model, torch.randn(2, 4), mode=mode) is None
    assert _dicts(model) == before and model[0].seen is seen and seen == [1]


def test_a_module_that_cannot_be_lent_leaves_none_lent():
    """A scripted module's parameter dict is torch's wrapper, which has no copy: the error propagates (as from a
    snapshot) and the modules lent before it have their own dicts back."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    model.add_module("scripted", torch.jit.script(nn.Linear(3, 2)))
    before = _dicts(model)
    with pytest.raises(AttributeError):
        lend_modules([model])
    with pytest.raises(AttributeError):
        snapshot_modules([model])
    assert _dicts(model) == before


def test_the_stand_ins_of_replaced_tensors_are_forgotten_and_the_live_ones_kept():
    """Each check makes stand-ins for the tensors replaced since the last one; the entries of the dead ones are
    dropped once the table holds more than twice the model's tensors (plus 64), the live ones' stand-ins stay."""
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(10)])  # 20 tensors
    stand_ins, x = StandIns(), torch.randn(1, 4)
    kept = model[0].weight
    sizes = []
    for _ in range(12):
        for layer in model[1:]:
            layer.weight = nn.Parameter(torch.randn(4, 4))  # 9 new tensors per round
        assert run_error(model, x, stand_ins=stand_ins) is None
        sizes.append(len(stand_ins._made))
        assert id(kept) in stand_ins._made
    assert max(sizes) <= 2 * 20 + 64 + 9 and min(sizes[-3:]) < max(sizes)  # trimmed, and not above the bound
    first = stand_ins.of(kept, True)
    assert run_error(model, x, stand_ins=stand_ins) is None and stand_ins.of(kept, True) is first
