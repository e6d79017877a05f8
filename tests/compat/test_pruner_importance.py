"""Torch-Pruning's pruner and importance names: GrowingRegPruner, MetaPruner, pe.pruner.* namespaces,
OBDCImportance, ActivationImportance and group_reduction='gate', on real models."""

import pytest
import torch
import torch.nn as nn
import torchvision

import prune_explorer as pe
from prune_explorer.importance import ImportanceError


class SmallNet(nn.Module):
    """conv -> bn -> relu -> conv -> bn -> relu -> pool -> fc: two prunable groups."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


X = torch.randn(8, 3, 12, 12)


# ------------------------------------------------------------------------------------------------ namespaces
def test_pruner_namespaces():
    assert pe.pruner.BasePruningFunc is pe.BasePruningFunc
    assert pe.pruner.function.LinearPruner is pe.layers.LinearPruner is pe.function.LinearPruner
    assert pe.pruner.function.prune_conv_out_channels is pe.prune_conv_out_channels
    assert pe.pruner.importance is pe.importance
    assert pe.pruner.linear_scheduler(0.5, 2) == [0.0, 0.25, 0.5]


def test_meta_pruner_is_a_deprecated_base_pruner():
    model = SmallNet()
    with pytest.warns(DeprecationWarning, match="MetaPruner is deprecated"):
        pruner = pe.pruner.MetaPruner(model, X, pe.importance.MagnitudeImportance(), pruning_ratio=0.5,
                                      ignored_layers=[model.fc])
    assert isinstance(pruner, pe.pruner.BasePruner)
    pruner.step()
    assert model.conv1.out_channels == 8 and model.conv2.out_channels == 12


# ------------------------------------------------------------------------------------------------ GrowingRegPruner
def _grads(model):
    model.zero_grad()
    model(X).logsumexp(1).mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_growing_reg_adds_reg_times_weight_to_every_member():
    torch.manual_seed(0)
    model = SmallNet()
    pruner = pe.pruner.GrowingRegPruner(model, X, pe.importance.GroupMagnitudeImportance(), reg=1e-2,
                                        delta_reg=1e-1, ignored_layers=[model.fc])
    g0 = _grads(model)
    pruner.regularize(model)
    # conv1's group: conv1 rows, bn1, conv2 columns; conv2's group: conv2 rows, bn2, fc columns; all at reg
    w1, w2 = model.conv1.weight.detach(), model.conv2.weight.detach()
    torch.testing.assert_close(model.conv1.weight.grad, g0["conv1.weight"] + 1e-2 * w1)
    torch.testing.assert_close(model.bn1.weight.grad, g0["bn1.weight"] + 1e-2 * model.bn1.weight.detach())
    torch.testing.assert_close(model.conv2.weight.grad, g0["conv2.weight"] + 2e-2 * w2)  # rows and columns
    torch.testing.assert_close(model.fc.weight.grad, g0["fc.weight"] + 1e-2 * model.fc.weight.detach())
    torch.testing.assert_close(model.conv1.bias.grad, g0["conv1.bias"])  # bias=False leaves biases alone


def test_growing_reg_grows_fastest_on_the_least_important_channels():
    torch.manual_seed(0)
    model = SmallNet()
    with torch.no_grad():
        model.conv1.weight[3].mul_(0.01)  # channel 3 of conv1's group: the least important
        model.conv1.weight[7].mul_(10.0)  # channel 7: the most important
    pruner = pe.pruner.GrowingRegPruner(model, X, pe.importance.GroupMagnitudeImportance(), reg=1e-3,
                                        delta_reg=1e-2, ignored_layers=[model.fc])
    group = next(g for g in pruner.group_reg if g.root_name == "conv1")
    start = pruner.group_reg[group].clone()
    assert torch.allclose(start, torch.full((16,), 1e-3))
    for _ in range(3):
        pruner.update_reg()
    reg = pruner.group_reg[group]
    assert reg.argmax() == 3 and reg.argmin() == 7
    assert torch.isclose(reg[3], torch.tensor(1e-3 + 3 * 1e-2)) and torch.isclose(reg[7], torch.tensor(1e-3))
    # the grown coefficients change the gradients: channel 3's rows get reg[3] * w, channel 7's only reg[7] * w
    g0 = _grads(model)
    pruner.regularize(model)
    added = model.conv1.weight.grad - g0["conv1.weight"]
    w = model.conv1.weight.detach()
    torch.testing.assert_close(added[3], reg[3] * w[3])
    torch.testing.assert_close(added[7], reg[7] * w[7])


def test_growing_reg_restarts_after_pruning_and_regularizes_the_pruned_model():
    model = SmallNet()
    pruner = pe.pruner.GrowingRegPruner(model, X, pe.importance.GroupMagnitudeImportance(), reg=1e-3,
                                        delta_reg=1e-2, pruning_ratio=0.5, iterative_steps=2,
                                        ignored_layers=[model.fc])
    pruner.update_reg()
    assert max(float(v.max()) for v in pruner.group_reg.values()) > 1e-3
    pruner.step()
    _grads(model)
    pruner.regularize(model)  # groups listed again for the pruned shapes, coefficients back at reg
    assert model.conv1.weight.grad.shape == model.conv1.weight.shape == (12, 3, 3, 3)
    assert all(torch.allclose(v, torch.full_like(v, 1e-3)) for v in pruner.group_reg.values())
    assert sorted(len(v) for v in pruner.group_reg.values()) == [12, 18]


def test_growing_reg_rejects_a_negative_coefficient():
    with pytest.raises(pe.pruner.PrunerConfigError, match="delta_reg"):
        pe.pruner.GrowingRegPruner(SmallNet(), X, pe.importance.MagnitudeImportance(), delta_reg=-1)


# ------------------------------------------------------------------------------------------------ importance
def _dead_channel_model():
    """resnet18 whose layer1[0].conv1 output channel 5 is zero: no activation, no saliency."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    with torch.no_grad():
        model.layer1[0].conv1.weight[5].zero_()
    return model


def _full_group(model, layer):
    DG = pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 64, 64))
    return DG, DG.get_pruning_group(layer, pe.prune_conv_out_channels, list(range(layer.out_channels)))


@pytest.mark.parametrize("make", [pe.importance.OBDCImportance, pe.importance.ActivationImportance])
def test_data_driven_importance_ranks_a_dead_channel_lowest(make):
    model = _dead_channel_model()
    imp = make()
    x = torch.randn(4, 3, 64, 64)
    with imp.collect(model):
        model.zero_grad()
        model(x).logsumexp(1).mean().backward()
    assert not any(m._forward_hooks for m in model.modules())  # the hooks are gone
    _, group = _full_group(model, model.layer1[0].conv1)
    scores = imp(group)
    assert scores.shape == (64,) and scores.argmin() == 5 and scores[5] == 0 and (scores[:5] > 0).all()


def test_obdc_is_half_grad_squared_times_output_squared():
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(6, 4), nn.Linear(4, 3)
    model = nn.Sequential(fc1, nn.Tanh(), fc2)
    x = torch.randn(5, 6)
    imp = pe.importance.OBDCImportance(normalizer=None, group_reduction="first")
    with imp.collect(model):
        h = fc1(x)
        h.retain_grad()
        loss = fc2(torch.tanh(h)).pow(2).mean()
        # the same graph the hooks see, run through the model so the hooks fire
        model.zero_grad()
        model(x).pow(2).mean().backward()
    # reference: E[(B g)^2] * E[(y - b)^2] / 2 per output channel of fc1, by hand
    loss.backward()
    g = h.grad * 5
    z = (h - fc1.bias).detach()
    want = 0.5 * g.pow(2).mean(0) * z.pow(2).mean(0)
    DG = pe.DependencyGraph().build_dependency(model, x)
    group = DG.get_pruning_group(fc1, pe.prune_linear_out_channels, [0, 1, 2, 3])
    torch.testing.assert_close(imp(group), want)


def test_obdc_scores_follow_channels_through_pruning():
    model = _dead_channel_model()
    imp = pe.importance.OBDCImportance(normalizer=None)
    with imp.collect(model):
        model(torch.randn(2, 3, 64, 64)).sum().backward()
    DG, group = _full_group(model, model.layer1[0].conv1)
    before = imp(group)
    # prune channels 0-2 of this group's root: the same channels keep their own scores afterwards
    DG.get_pruning_group(model.layer1[0].conv1, pe.prune_conv_out_channels, [0, 1, 2]).prune()
    after = imp(DG.get_pruning_group(model.layer1[0].conv1, pe.prune_conv_out_channels, list(range(61))))
    torch.testing.assert_close(after, before[3:])
    assert after.argmin() == 2  # the dead channel, now at index 2


def test_data_driven_importance_in_a_pruner_and_clear_errors():
    model = _dead_channel_model()
    x = torch.randn(2, 3, 64, 64)
    imp = pe.importance.ActivationImportance()
    with pytest.raises(ImportanceError, match="collect"):
        pe.pruner.MagnitudePruner(model, x, imp, pruning_ratio=0.25, ignored_layers=[model.fc]).step()
    with imp.compute_importance(model):  # Torch-Pruning's spelling
        model(x)
    pe.pruner.MagnitudePruner(model, x, imp, pruning_ratio=0.25, ignored_layers=[model.fc]).step()
    assert model.layer1[0].conv1.out_channels == 48 and model(x).shape == (2, 1000)
    # OBDC without a backward pass names the fix
    obdc = pe.importance.OBDCImportance()
    fresh = _dead_channel_model()
    with torch.no_grad(), obdc.collect(fresh):
        fresh(x)
    _, group = _full_group(fresh, fresh.layer1[0].conv1)
    with pytest.raises(ImportanceError, match="backward"):
        obdc(group)


def test_obdc_torch_pruning_calling_convention():
    model = SmallNet()
    imp = pe.importance.OBDCImportance(num_classes=10)
    pruner = pe.pruner.MagnitudePruner(model, X, imp, pruning_ratio=0.5, ignored_layers=[model.fc])
    imp._prepare_model(model, pruner)
    model(X).sum().backward()
    imp.step()
    imp._rm_hooks(model)
    assert not any(m._forward_hooks for m in model.modules())
    pruner.step()
    assert model.conv1.out_channels == 8 and model(X).shape == (8, 10)


def test_gate_reduction_is_the_last_member():
    model = torchvision.models.resnet18().eval()
    _, group = _full_group(model, model.conv1)
    raw = pe.importance.MagnitudeImportance(p=2, group_reduction=None, normalizer=None)(group)
    gate = pe.importance.MagnitudeImportance(p=2, group_reduction="gate", normalizer=None)(group)
    torch.testing.assert_close(gate, raw[-1])
    assert not torch.allclose(gate, raw[0])
    with pytest.raises(ValueError, match="group_reduction"):
        pe.importance.MagnitudeImportance(group_reduction="median")
