"""More layer families through the graph: ConvTranspose (U-Net skip), InstanceNorm, GroupNorm, PReLU, custom layers."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import prune_explorer as pe

from small_models import Scale


class TinyUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(3, 8, 3, padding=1)
        self.in1 = nn.InstanceNorm2d(8, affine=True)
        self.enc2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.act = nn.PReLU(16)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Conv2d(16, 8, 3, padding=1)  # reads cat([up, skip])
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        s = F.relu(self.in1(self.enc1(x)))
        h = self.act(self.gn(self.enc2(s)))
        u = self.up(h)
        return self.out(F.relu(self.dec(torch.cat([u, s], 1))))


def test_unet_with_transposed_conv_and_norm_layers():
    torch.manual_seed(0)
    m, x = TinyUNet().eval(), torch.randn(1, 3, 16, 16)
    y0 = m(x)
    dg = pe.DependencyGraph().build_dependency(m, x)
    g = dg.get_pruning_group(m.enc1, pe.prune_conv_out_channels, [1, 2])
    members = {dep.target.name: idxs for dep, idxs in g}
    assert members["in1"] == [1, 2] and members["enc2"] == [1, 2]
    assert members["dec"] == [9, 10]  # skip half of the concat: offset 8
    g.prune()
    g2 = dg.get_pruning_group(m.enc2, pe.prune_conv_out_channels, [0])
    assert g2.root_idxs == [0, 4, 8, 12]  # GroupNorm(4): the same offset leaves every group
    assert {dep.target.name for dep, _ in g2} >= {"gn", "act", "up"}
    assert {dep.target.name: dep.handler for dep, _ in g2}["up"] == pe.prune_convtranspose_in_channels
    g2.prune()
    g3 = dg.get_pruning_group(m.up, pe.prune_convtranspose_out_channels, [7])
    assert {dep.target.name: idxs for dep, idxs in g3}["dec"] == [7]
    g3.prune()
    assert (m.enc1.out_channels, m.in1.num_features, m.enc2.out_channels, m.gn.num_channels) == (6, 6, 12, 12)
    assert (m.act.num_parameters, m.up.in_channels, m.up.out_channels, m.dec.in_channels) == (12, 12, 7, 13)
    assert m(x).shape == y0.shape


class ScalePruner(pe.BasePruningFunc):
    TARGET_MODULES = (Scale,)

    def get_out_channels(self, layer):
        return layer.scale.numel()

    get_in_channels = get_out_channels

    def in_out_coupled(self, layer):
        return True

    def prune_out_channels(self, layer, idxs):
        keep = [i for i in range(layer.scale.numel()) if i not in set(idxs)]
        layer.scale = nn.Parameter(layer.scale.detach()[keep])
        return layer

    prune_in_channels = prune_out_channels


def test_customized_pruner_and_automatic_loose_parameter_handling():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.scale = Scale(8, init=torch.ones(8))
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.head(self.scale(self.conv(x)))

    x = torch.randn(1, 3, 4, 4)
    # without a customized pruner, the scale is a loose parameter and is pruned along its channel dim
    m = Net()
    dg = pe.DependencyGraph().build_dependency(m, x)
    g = dg.get_pruning_group(m.conv, pe.prune_conv_out_channels, [0, 7])
    assert "scale.scale" in {dep.target.name for dep, _ in g}
    g.prune()
    assert m.scale.scale.shape == (6,) and m(x).shape == (1, 2, 4, 4)
    # with one, the layer is a node of its own with the user's pruning function
    m = Net()
    pruner = ScalePruner()
    dg = pe.DependencyGraph().build_dependency(m, x, customized_pruners={Scale: pruner})
    g = dg.get_pruning_group(m.conv, pe.prune_conv_out_channels, [1])
    handlers = {dep.target.name: dep.handler for dep, _ in g}
    assert handlers["scale"] == pruner.prune_out_channels
    g.prune()
    assert m.scale.scale.shape == (7,) and m.head.in_channels == 7 and m(x).shape == (1, 2, 4, 4)


def test_bad_customized_pruners_are_rejected_with_the_fix():
    with pytest.raises(TypeError, match="customized_pruners"):
        pe.DependencyGraph().build_dependency(nn.Linear(2, 2), torch.randn(1, 2), customized_pruners={Scale: object()})


def test_every_family_the_pruners_know_is_followed_by_the_graph():
    """RMSNorm, EmbeddingBag and nn.RNN have pruners; one family definition makes the graph follow them too
    (each is a node of its own, no channel fixed, no 'not understood' warning)."""
    import warnings

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.EmbeddingBag(10, 8)
            self.norm = nn.RMSNorm(8)
            self.rnn = nn.RNN(8, 6, batch_first=True)
            self.fc = nn.Linear(6, 2)

        def forward(self, ids):
            h = self.norm(self.emb(ids))
            return self.fc(self.rnn(h.unsqueeze(1).repeat(1, 3, 1))[0][:, -1])

    torch.manual_seed(0)
    m, x = Net().eval(), torch.randint(0, 10, (2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dg = pe.DependencyGraph().build_dependency(m, x)
    groups = {g.root_name: {(dep.target.name, dep.side) for dep, _ in g} for g in dg.get_all_groups()}
    assert groups == {"rnn": {("rnn", "out"), ("fc", "in")}}
    g = dg.get_pruning_group(m.emb, pe.prune_embedding_out_channels, [0, 7])
    assert {dep.target.name for dep, _ in g} == {"emb", "norm", "rnn"}
    g.prune()
    dg.get_pruning_group(m.rnn, pe.prune_rnn_out_channels, [1]).prune()
    assert (m.emb.embedding_dim, m.norm.normalized_shape, m.rnn.input_size, m.rnn.hidden_size) == (6, (6,), 6, 5)
    assert m(x).shape == (2, 2)
