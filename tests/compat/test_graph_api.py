"""Torch-Pruning's DependencyGraph / Group API on real models: group items, check_pruning_group, history,
customised layers, explicit pruning of output channels, layer-wise counting keyed by module."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import prune_explorer as pe
from prune_explorer.errors import OutputShapeWarning

from small_models import Scale, TPScalePruner


def resnet18_graph():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    return model, x, pe.DependencyGraph().build_dependency(model, x)


# ---------------------------------------------------------------------------------------------------- groups
def test_group_items_are_dep_idxs_pairs():
    model, _, DG = resnet18_graph()
    group = DG.get_pruning_group(model.conv1, pe.prune_conv_out_channels, idxs=[2, 6, 9])
    dep, idxs = group[0]
    assert group[0][0] is dep is group[0].dep and group[0][1] == idxs == group[0].idxs == [2, 6, 9]
    assert len(group[0]) == 2 and list(group[0]) == [dep, idxs]
    assert dep.target.module is model.conv1 and dep.handler == pe.prune_conv_out_channels
    assert group[-1] is group.items[-1] and len(group) == len(list(group)) > 4
    # every member of the residual stage loses the same three channels
    layers = {d.target.name: i for d, i in group}
    assert layers["bn1"] == layers["layer1.0.conv2"] == layers["layer1.1.bn2"] == [2, 6, 9]
    assert layers["layer2.0.conv1"] == [2, 6, 9] and layers["layer2.0.downsample.0"] == [2, 6, 9]
    text = str(group)
    assert "conv1" in text and "layer1.0.conv2" in text and group.details() == text
    # group.prune(idxs=...) restricts to those root channels
    group.prune(idxs=[2, 6])
    assert model.conv1.out_channels == 62 and model.layer2[0].conv1.in_channels == 62


def test_dependency_call_prunes_only_its_layer():
    model, _, DG = resnet18_graph()
    dep, _ = DG.get_pruning_group(model.layer4[1].conv1, pe.prune_conv_out_channels, [0])[0]
    dep([0, 1])
    assert model.layer4[1].conv1.out_channels == 510 and model.layer4[1].bn1.num_features == 512


def test_check_pruning_group():
    model, _, DG = resnet18_graph()
    assert DG.check_pruning_group(DG.get_pruning_group(model.conv1, pe.prune_conv_out_channels, [0, 1]))
    # removing every channel is not a valid pruning
    everything = DG.get_pruning_group(model.conv1, pe.prune_conv_out_channels, list(range(64)))
    assert not DG.check_pruning_group(everything)
    with pytest.raises(pe.PruningError):
        everything.prune()
    assert model.conv1.out_channels == 64
    # a group of another graph
    other, _, DG2 = resnet18_graph()
    assert not DG.check_pruning_group(DG2.get_pruning_group(other.conv1, pe.prune_conv_out_channels, [0]))
    # a group that was already pruned has nothing left to remove
    done = DG.get_pruning_group(model.layer4[0].conv1, pe.prune_conv_out_channels, [3, 4])
    assert DG.check_pruning_group(done)
    done.prune()
    assert not DG.check_pruning_group(done)


def test_get_out_in_channels_and_pruning_fn_sides():
    model, _, DG = resnet18_graph()
    assert DG.get_out_channels(model.conv1) == 64 and DG.get_in_channels(model.fc) == 512
    assert DG.get_out_channels(DG.module2node[model.layer1[0].conv1]) == 64  # a graph node works too
    assert DG.get_in_channels(model.relu) is None
    assert DG.is_out_channel_pruning_fn(pe.prune_conv_out_channels)
    assert DG.is_in_channel_pruning_fn(pe.prune_linear_in_channels)
    assert not DG.is_in_channel_pruning_fn(pe.prune_linear_out_channels)
    assert isinstance(DG.get_pruner_of_module(model.bn1), pe.layers.BatchnormPruner)
    assert DG.get_pruner_of_module(model.relu) is None


def test_get_all_groups_ignored_layers_and_root_types():
    model, _, DG = resnet18_graph()
    convs_only = list(DG.get_all_groups(root_module_types=[nn.Conv2d]))
    assert all(isinstance(g.root_module, nn.Conv2d) for g in convs_only)
    ignored = list(DG.get_all_groups(ignored_layers=[model.conv1]))
    # conv1's channels are shared by the residual adds of layer1: ignoring it removes that whole group
    assert not any(g.root_module in (model.conv1, model.layer1[0].conv2) for g in ignored)
    assert len(ignored) == len(list(DG.get_all_groups())) - 1


# ---------------------------------------------------------------------------------------------------- history
def prune_some(model, DG):
    DG.get_pruning_group(model.conv1, pe.prune_conv_out_channels, [2, 6, 9]).prune()
    for k, g in enumerate(DG.get_all_groups()):
        g.prune(idxs=[k % 3, 5])


def test_pruning_history_roundtrip_gives_identical_model():
    torch.manual_seed(0)
    model, x, DG = resnet18_graph()
    prune_some(model, DG)
    history = DG.pruning_history()
    assert history[0] == ["conv1", True, [2, 6, 9]] and all(len(e) == 3 for e in history)
    torch.manual_seed(0)
    fresh = torchvision.models.resnet18().eval()
    DG2 = pe.DependencyGraph().build_dependency(fresh, x)
    DG2.load_pruning_history(history)
    fresh.load_state_dict(model.state_dict())
    assert repr(fresh) == repr(model)
    assert torch.allclose(fresh(x), model(x))
    assert DG2.pruning_history() == history


def test_load_pruning_history_is_all_or_nothing():
    model, x, DG = resnet18_graph()
    prune_some(model, DG)
    bad = DG.pruning_history() + [["layer4.1.conv1", True, [600]]]  # layer4.1.conv1 has 512 channels
    fresh = torchvision.models.resnet18().eval()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    DG2 = pe.DependencyGraph().build_dependency(fresh, x)
    with pytest.raises(pe.PruningError, match="entry .*layer4.1.conv1"):
        DG2.load_pruning_history(bad)
    after = fresh.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert DG2.pruning_history() == [] and DG2.undo_depth == 0
    # and the graph still works after the rollback
    DG2.load_pruning_history(bad[:-1])
    assert repr(fresh) == repr(model)


def test_load_pruning_history_accepts_full_records():
    model, x, DG = resnet18_graph()
    prune_some(model, DG)
    records = pe.history.pruning_history(model)  # the per-layer record kept on the model
    fresh = torchvision.models.resnet18().eval()
    pe.DependencyGraph().build_dependency(fresh, x).load_pruning_history(records)
    assert repr(fresh) == repr(model)


# ---------------------------------------------------------------------------------------------------- custom layers
def test_register_customized_layer():
    net = nn.Sequential(nn.Linear(6, 10), Scale(10), nn.ReLU(), nn.Linear(10, 3))
    x = torch.randn(2, 6)
    DG = pe.DependencyGraph()
    pruner = TPScalePruner()
    DG.register_customized_layer(Scale, pruner)
    DG.build_dependency(net, x)
    assert DG.get_pruner_of_module(net[1]) is pruner
    group = DG.get_pruning_group(net[0], pe.prune_linear_out_channels, [1, 4])
    assert {d.target.name: i for d, i in group} == {"0": [1, 4], "1": [1, 4], "3": [1, 4]}
    group.prune()
    assert net[1].n == 8 and net[1].scale.shape == (8,) and net(x).shape == (2, 3)
    with pytest.raises(TypeError, match="layer type"):
        DG.register_customized_layer(net[1], pruner)


# ---------------------------------------------------------------------------------------------------- outputs
class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(12, 8)
        self.fc3 = nn.Linear(16, 5)

    def forward(self, a, b):
        a, b = F.relu(self.fc1(a)), F.relu(self.fc2(b))
        return {"a": a, "b": b, "logits": self.fc3(torch.cat([a, b], dim=1))}


def test_explicit_output_pruning_is_done_with_a_warning():
    model = TwoHeads()
    inputs = (torch.randn(1, 16), torch.randn(1, 12))
    DG = pe.DependencyGraph().build_dependency(model, inputs)
    # the automatic listing keeps outputs: fc1 and fc2 feed the outputs 'a' and 'b', fc3 is the logits
    assert list(DG.get_all_groups()) == []
    group = DG.get_pruning_group(model.fc3, pe.prune_linear_in_channels, idxs=[0, 2, 9])
    assert "output['a'] dim 1: 8 -> 6" in group.details() and "output['b'] dim 1: 8 -> 7" in group.details()
    with pytest.warns(OutputShapeWarning) as rec:
        group.prune()
    msg = str(rec[0].message)
    assert "output['a'] dim 1: 8 -> 6" in msg and "output['b'] dim 1: 8 -> 7" in msg and "logits" not in msg
    out = model(*inputs)
    assert out["a"].shape == (1, 6) and out["b"].shape == (1, 7) and out["logits"].shape == (1, 5)
    # shrinking the classifier on purpose: removes classes, the warning names the logits
    with pytest.warns(OutputShapeWarning, match=r"output\['logits'\] dim 1: 5 -> 3"):
        DG.get_pruning_group(model.fc3, pe.prune_linear_out_channels, [0, 4]).prune()
    assert model(*inputs)["logits"].shape == (1, 3)


def test_groups_inside_the_model_do_not_warn():
    model, _, DG = resnet18_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DG.get_pruning_group(model.layer3[0].conv1, pe.prune_conv_out_channels, [0]).prune()


def test_untraceable_channels_stay_refused():
    class Literal(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.fc = nn.Linear(8 * 4 * 4, 2)

        def forward(self, x):
            return self.fc(self.conv(x).view(1, 128))  # a literal size: the code cannot follow a pruning

    model = Literal()
    DG = pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 6, 6))
    with pytest.raises(pe.PruningError, match="can never be pruned: .*literal"):
        DG.get_pruning_group(model.conv, pe.prune_conv_out_channels, [0])
    assert model.conv.out_channels == 8


def test_tracing_leaves_the_training_mode_as_it_was():
    model = torchvision.models.resnet18().train()
    model.layer2.eval()
    modes = {n: m.training for n, m in model.named_modules()}
    pe.DependencyGraph().build_dependency(model, torch.randn(2, 3, 32, 32))
    assert {n: m.training for n, m in model.named_modules()} == modes


# ---------------------------------------------------------------------------------------------------- counting
def test_count_ops_and_params_layer_wise_keyed_by_module():
    model = torchvision.models.resnet18()
    x = torch.randn(1, 3, 64, 64)
    macs, params, layer_macs, layer_params = pe.utils.count_ops_and_params(model, x, layer_wise=True)
    assert set(layer_macs) == set(layer_params) == set(model.modules())
    assert layer_macs[model] == macs and layer_params[model] == params == pe.utils.count_params(model)
    children = list(model.children())
    assert sum(layer_macs[m] for m in children) == macs and sum(layer_params[m] for m in children) == params
    assert layer_macs[model.fc] == 512 * 1000 and layer_params[model.fc] == 512 * 1000 + 1000
    assert layer_macs[model.conv1] == 64 * 32 * 32 * 3 * 49
    names = pe.utils.count_ops_and_params(model, x, layer_wise=True, layer_keys="name")[2]
    assert names["layer1"] == layer_macs[model.layer1]
    with pytest.raises(ValueError, match="layer_keys"):
        pe.utils.count_ops_and_params(model, x, layer_wise=True, layer_keys="id")
