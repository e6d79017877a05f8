"""Tracing leaves the model untouched; pruning is atomic, undoable and recorded; errors name the fix."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import prune_explorer as pe


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("train", [False, True])
def test_tracing_changes_nothing(train):
    torch.manual_seed(0)
    m = torchvision.models.resnet18()
    m.train(train)
    x = torch.randn(2, 3, 64, 64)
    m(x).sum().backward()  # give it gradients to preserve
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    before = state(m)
    calls = []
    h = m.layer1.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():  # must also work from inside no_grad
        pe.DependencyGraph().build_dependency(m, x)
    assert same_state(before, state(m))  # BatchNorm running stats restored in train mode
    assert all(torch.equal(grads[n], p.grad) for n, p in m.named_parameters())
    assert m.training == train and all(mod.training == train for mod in m.modules())
    assert len(m.layer1._forward_hooks) == 1 and len(m.conv1._forward_hooks) == 0
    h.remove()


def test_trace_failure_is_a_clear_error_and_model_unchanged():
    m = torchvision.models.resnet18().eval()
    before = state(m)
    with pytest.raises(pe.TracingError, match="example_inputs"):
        pe.DependencyGraph().build_dependency(m, torch.randn(1, 5, 32, 32))  # wrong channel count
    assert same_state(before, state(m))
    assert all(len(mod._forward_hooks) == 0 and len(mod._forward_pre_hooks) == 0 for mod in m.modules())


def test_failed_group_prune_leaves_model_exactly_as_it_was():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.gn = nn.GroupNorm(4, 8)
            self.out = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.out(self.gn(self.conv(x)))

    m = Net().eval()
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 6, 6))
    before, reprs = state(m), repr(m)
    # GroupNorm(4 groups of 2): channel 0 is tied to 2, 4, 6; removing all of them leaves 4 channels, fine;
    # removing every unit would leave none -> refused before anything changes
    g = dg.get_pruning_group(m.conv, pe.prune_conv_out_channels, [0])
    assert g.root_idxs == [0, 2, 4, 6]
    with pytest.raises(pe.PruningError):
        dg.get_pruning_group(m.conv, pe.prune_conv_out_channels, [0, 1]).prune()
    assert same_state(before, state(m)) and repr(m) == reprs
    for bad, msg in [([8], "out of range"), ([1, 1], "duplicate"), (["a"], "sequence of ints")]:
        with pytest.raises(pe.PruningError, match=msg):
            dg.get_pruning_group(m.conv, pe.prune_conv_out_channels, bad)
    assert same_state(before, state(m))
    g.prune()
    assert m.conv.out_channels == 4 and m.gn.num_channels == 4 and m.gn.num_groups == 4


def test_error_in_a_member_rolls_back_the_members_already_pruned():
    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 64, 64))
    g = dg.get_pruning_group(m.conv1, pe.prune_conv_out_channels, [0, 1])
    before = state(m)
    # sabotage one member late in the group: its pruning function raises
    victim = g[-1].dep.space
    original = victim.handler

    def broken(layer, idxs):
        raise RuntimeError("disk on fire")

    victim.handler = broken
    try:
        with pytest.raises(pe.PruningError, match="restored unchanged"):
            g.prune()
    finally:
        victim.handler = original
    assert same_state(before, state(m))
    assert m.conv1.out_channels == 64 and m.bn1.num_features == 64
    g.prune()  # and the graph is still usable
    assert m.conv1.out_channels == 62


def test_undo_restores_model_and_graph():
    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    dg = pe.DependencyGraph().build_dependency(m, x)
    dg.undo_depth = 10
    before, reprs = state(m), repr(m)
    groups = list(dg.get_all_groups())
    rec1 = groups[0].select([0, 1, 2, 3]).prune()
    rec2 = groups[1].select([5]).prune()
    assert pe.graph.model_history(m)[-1]["root"] == "layer1.0.conv1"
    with pytest.raises(pe.PruningError, match="most recent"):
        rec1.undo()
    rec2.undo()
    rec1.undo()
    assert same_state(before, state(m)) and repr(m) == reprs
    assert pe.graph.model_history(m) == [] and dg.history == []
    # groups are recomputed against the restored model
    assert [len(g.root_idxs) for g in dg.get_all_groups()] == [len(g.root_idxs) for g in groups]
    assert m(x).shape == (1, 1000)


def test_undo_needs_undo_depth():
    m = torchvision.models.resnet18().eval()
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 64, 64))
    next(iter(dg.get_all_groups())).select([0]).prune()
    with pytest.raises(pe.PruningError, match="undo_depth"):
        dg.undo()


def test_history_is_plain_json_and_names_modules():
    import json

    m = torchvision.models.resnet18().eval()
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 64, 64))
    dg.get_pruning_group(m.layer2[0].conv1, pe.prune_conv_out_channels, [3, 1]).prune()
    (entry,) = json.loads(json.dumps(pe.graph.model_history(m)))
    assert entry["root"] == "layer2.0.conv1" and entry["root_fn"] == "prune_conv_out_channels"
    assert {"name": "layer2.0.conv2", "fn": "prune_conv_in_channels", "side": "in", "idxs": [1, 3]} in entry["members"]


def test_dependency_objects_expose_torch_pruning_attributes():
    m = torchvision.models.resnet18().eval()
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 64, 64))
    g = dg.get_pruning_group(m.layer1[0].conv1, pe.prune_conv_out_channels, [0])
    dep, idxs = g[0]
    assert dep.source.module is m.layer1[0].conv1 and dep.target.name == "layer1.0.conv1"
    assert dep.trigger == pe.prune_conv_out_channels and dep.handler == pe.prune_conv_out_channels
    assert dg.is_out_channel_pruning_fn(dep.handler) and not dg.is_in_channel_pruning_fn(dep.handler)
    handlers = [d.handler for d, _ in g]
    assert handlers == [pe.prune_conv_out_channels, pe.prune_batchnorm_out_channels, pe.prune_conv_in_channels]
    assert [d.side for d, _ in g] == ["out", "out", "in"]
    text = g.details()
    assert "layer1.0.bn1" in text and "prune_conv_in_channels" in text
    assert dg.module2node[m.layer1[0].conv1].name == "layer1.0.conv1"


def test_unknown_op_is_reported_once_by_name_and_its_channels_stay_fixed():
    class Weird(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 8, 1)
            self.c = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = self.a(x)
            y = torch.fft.fft(y, dim=1).real  # mixes channels in a way the graph does not model
            return self.c(F.relu(self.b(y)))

    m = Weird().eval()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 4, 4))
    msgs = [str(x.message) for x in w if "not understood" in str(x.message)]
    assert len(msgs) == 1 and "fft" in msgs[0]
    assert [g.root_name for g in dg.get_all_groups()] == ["b"]
    assert "fft" in dg.fixed_reason(m.a)


def test_get_pruning_group_errors_name_the_fix():
    m = torchvision.models.resnet18().eval()
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 64, 64))
    with pytest.raises(pe.DependencyError, match="not a prunable layer"):
        dg.get_pruning_group(nn.Conv2d(3, 3, 1), pe.prune_conv_out_channels, [0])
    with pytest.raises(pe.PruningError, match="come from no prunable layer"):
        dg.get_pruning_group(m.conv1, pe.prune_conv_in_channels, [0])
    # channels reaching the output are kept by the automatic tools, but an explicit request is done (with a warning)
    assert "reaches the model output" in dg.fixed_reason(m.fc)
    assert len(dg.get_pruning_group(m.fc, pe.prune_linear_out_channels, [0])) == 1
    with pytest.raises(pe.DependencyError, match="build_dependency"):
        pe.DependencyGraph().get_pruning_group(m.fc, pe.prune_linear_out_channels, [0])


def test_grouped_outputs_are_enumerated_once_in_a_deterministic_order():
    m = torchvision.models.densenet121().eval()
    x = torch.randn(1, 3, 64, 64)
    a = [g.root_name for g in pe.DependencyGraph().build_dependency(m, x).get_all_groups()]
    b = [g.root_name for g in pe.DependencyGraph().build_dependency(m, x).get_all_groups()]
    assert a == b and len(a) == len(set(a))


def test_tracing_does_not_leave_attributes_cached_by_the_forward_pass():
    class Caching(nn.Module):
        """Caches a tensor on itself during forward, like torchvision's anchor generators."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.cache = None

        def forward(self, x):
            if self.cache is None:
                self.cache = torch.zeros(1, 4, 1, 1, device=x.device)
            if float(x.abs().sum()) < 0:  # data-dependent: a meta trace cannot run this
                return x
            return self.conv(x) + self.cache

    m = Caching()
    dg = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 4, 4))
    assert not dg.traced_on_meta
    assert m.cache is not None and m.cache.device.type == "cpu"
    assert m(torch.randn(1, 3, 4, 4)).shape == (1, 4, 4, 4)
