"""MagnitudeImportance and friends: every coupled member counts, scores land on the right root channel."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.importance import (
    BNScaleImportance,
    FPGMImportance,
    LAMPImportance,
    MagnitudeImportance,
    RandomImportance,
    normalize,
)

from imp_helpers import group_of
from small_models import ConvBNConv

X = torch.randn(1, 3, 8, 8)


def manual_conv_bn_conv(m, p=2, bias=False):
    out = m.conv1.weight.detach().abs().pow(p).flatten(1).sum(1)
    bn = m.bn.weight.detach().abs().pow(p)
    cin = m.conv2.weight.detach().abs().pow(p).transpose(0, 1).flatten(1).sum(1)
    if bias:
        bn = bn + m.bn.bias.detach().abs().pow(p)
        if m.conv1.bias is not None:
            out = out + m.conv1.bias.detach().abs().pow(p)
    return torch.stack([out, bn, cin])


@pytest.mark.parametrize("p", [1, 2])
def test_magnitude_is_the_mean_over_every_member(p):
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X)
    assert [it.dep.target.name for it in g] == ["conv1", "bn", "conv2"]
    got = MagnitudeImportance(p=p, normalizer=None)(g)
    want = manual_conv_bn_conv(m, p).mean(0)
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction,fn", [
    ("sum", lambda t: t.sum(0)), ("max", lambda t: t.max(0).values), ("prod", lambda t: t.prod(0)),
    ("first", lambda t: t[0]), ("mean", lambda t: t.mean(0)),
])
def test_group_reductions(reduction, fn):
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X)
    got = MagnitudeImportance(group_reduction=reduction, normalizer=None)(g)
    torch.testing.assert_close(got, fn(manual_conv_bn_conv(m)), rtol=1e-4, atol=1e-6)


def test_no_reduction_returns_one_row_per_member():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X)
    got = MagnitudeImportance(group_reduction=None, normalizer=None)(g)
    torch.testing.assert_close(got, manual_conv_bn_conv(m), rtol=1e-4, atol=1e-6)


def test_bias_counts_only_when_asked():
    m = ConvBNConv(bias=True)
    _, g = group_of(m, m.conv1, X)
    with_bias = MagnitudeImportance(normalizer=None, bias=True)(g)
    torch.testing.assert_close(with_bias, manual_conv_bn_conv(m, bias=True).mean(0), rtol=1e-4, atol=1e-6)
    without = MagnitudeImportance(normalizer=None)(g)
    torch.testing.assert_close(without, manual_conv_bn_conv(m).mean(0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["mean", "max", "sum", "standardization", "standarization", "gaussian", "lamp"])
def test_normalizers(name):
    x = torch.tensor([1.0, 4.0, 2.0, 3.0])
    y = normalize(x, name)
    if name == "mean":
        torch.testing.assert_close(y, x / 2.5)
    elif name == "max":
        torch.testing.assert_close(y, x / 4)
    elif name == "sum":
        torch.testing.assert_close(y, x / 10)
    elif name.startswith("standar"):
        torch.testing.assert_close(y, (x - 1) / 3, atol=1e-6, rtol=0)
    elif name == "gaussian":
        torch.testing.assert_close(y, (x - x.mean()) / (x.std() + 1e-8))
    else:  # lamp: x / sum of values >= x
        torch.testing.assert_close(y, torch.tensor([1 / 10, 4 / 4, 2 / 9, 3 / 7]))
    assert normalize(x, None) is x
    assert torch.equal(normalize(torch.zeros(3), "mean"), torch.zeros(3))
    with pytest.raises(ValueError, match="unknown normalizer"):
        normalize(x, "median")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="group_reduction"):
        MagnitudeImportance(group_reduction="median")
    with pytest.raises(ValueError, match="normalizer"):
        MagnitudeImportance(normalizer="l2")
    with pytest.raises(ValueError, match="p must be"):
        MagnitudeImportance(p=0)


def test_default_normalizer_is_mean_one():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X)
    s = MagnitudeImportance()(g)
    assert s.shape == (6,)
    assert s.mean().item() == pytest.approx(1.0, rel=1e-5)


class Flat(nn.Module):
    """conv (3->4, 2x2 map) -> flatten -> fc (16 -> 5): one conv channel feeds 4 fc inputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


def test_linear_after_flatten_adds_up_the_features_of_a_channel():
    m = Flat()
    _, g = group_of(m, m.conv, X)
    fc_item = next(it for it in g if it.dep.layer is m.fc)
    assert len(fc_item.idxs) == 16 and sorted(set(fc_item.root_idxs)) == [0, 1, 2, 3]
    got = MagnitudeImportance(normalizer=None, group_reduction="sum")(g)
    conv = m.conv.weight.detach().pow(2).flatten(1).sum(1)
    fc = m.fc.weight.detach().pow(2).sum(0).reshape(4, 4).sum(1)  # features c*4 .. c*4+3 belong to channel c
    torch.testing.assert_close(got, conv + fc, rtol=1e-4, atol=1e-6)


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 1)
        self.gconv = nn.Conv2d(8, 6, 3, padding=1, groups=2)

    def forward(self, x):
        return self.gconv(self.conv1(x))


def test_grouped_conv_input_channel_owns_its_groups_rows():
    m = Grouped()
    DG = pe.DependencyGraph().build_dependency(m, X)
    g = next(g for g in DG.get_all_groups() if g.root_module is m.conv1)
    # channel c of conv1 is input c of gconv: group c // 4, column c % 4 of rows of that group (3 rows each)
    # the graph ties conv1's channels c and c + 4 (the same offset in both groups of gconv) into one unit
    assert sorted(g.units) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    item = next(it for it in g if it.dep.layer is m.gconv)
    imp = MagnitudeImportance(normalizer=None, group_reduction="sum", target_types=[nn.Conv2d])
    got = imp(g)
    w = m.gconv.weight.detach()
    own = torch.stack([w[(c // 4) * 3:(c // 4 + 1) * 3, c % 4].pow(2).sum() for c in range(8)])
    first = m.conv1.weight.detach().pow(2).flatten(1).sum(1)
    assert item.idxs == list(range(8))
    # the root keeps per-channel scores; the member's unit totals are shared evenly by the unit's channels
    shared = (own[:4] + own[4:]).repeat(2) / 2
    torch.testing.assert_close(got, first + shared, rtol=1e-4, atol=1e-6)
    unit_total = got[:4] + got[4:]
    torch.testing.assert_close(unit_total, first[:4] + first[4:] + own[:4] + own[4:], rtol=1e-4, atol=1e-6)


def test_units_of_a_grouped_conv_output_are_scored_per_channel():
    """A grouped conv's outputs are tied across groups (units), but importance stays per channel."""
    class G2(nn.Module):
        def __init__(self):
            super().__init__()
            self.g = nn.Conv2d(4, 8, 3, padding=1, groups=2)
            self.c = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.c(self.g(x))

    m = G2()
    DG = pe.DependencyGraph().build_dependency(m, torch.randn(1, 4, 6, 6))
    g = next(g for g in DG.get_all_groups() if g.root_module is m.g)
    assert any(len(u) > 1 for u in g.units)
    assert sorted(g.units) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    s = MagnitudeImportance(normalizer=None)(g)
    own = m.g.weight.detach().pow(2).flatten(1).sum(1)
    reader = m.c.weight.detach().pow(2).transpose(0, 1).flatten(1).sum(1)
    reader = (reader[:4] + reader[4:]).repeat(2) / 2  # shared evenly inside each unit
    torch.testing.assert_close(s, (own + reader) / 2, rtol=1e-4, atol=1e-6)


class WithMHA(nn.Module):
    def __init__(self, e=8, h=2):
        super().__init__()
        self.inp = nn.Linear(5, e)
        self.mha = nn.MultiheadAttention(e, h, batch_first=True)
        self.out = nn.Linear(e, 3)

    def forward(self, x):
        x = self.inp(x)
        y, _ = self.mha(x, x, x)
        return self.out(y)


def test_multihead_attention_member_counts_projections_in_and_out():
    m = WithMHA()
    _, g = group_of(m, m.inp, torch.randn(2, 4, 5), fn=pe.prune_linear_out_channels)
    layers = [it.dep.layer for it in g]
    assert m.mha in layers
    imp = MagnitudeImportance(normalizer=None, group_reduction="sum", target_types=[nn.MultiheadAttention])
    got = imp(g)
    e = 8
    w = m.mha.in_proj_weight.detach()
    ow = m.mha.out_proj.weight.detach()
    want = (w.reshape(3, e, e).pow(2).sum((0, 2)) + w.pow(2).sum(0) + ow.pow(2).sum(1) + ow.pow(2).sum(0))
    # the heads tie the same offset of both heads into one unit (scores are gathered on the unit's first channel)
    assert sorted(g.units) == [[k, k + 4] for k in range(4)]
    unit = torch.tensor([[k, k + 4] for k in range(4)])
    torch.testing.assert_close(got[unit].sum(1), want[unit].sum(1), rtol=1e-4, atol=1e-6)


class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 6, num_layers=2, batch_first=True)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y)


def test_lstm_hidden_unit_owns_its_gate_rows_and_columns():
    m = WithLSTM()
    with torch.no_grad():  # make hidden unit 2 tiny everywhere it appears
        for name, p in m.lstm.named_parameters():
            if name.startswith("weight_ih_l0") or name.startswith("bias"):
                p.view(4, 6, -1)[:, 2] *= 1e-3
            elif name.startswith("weight_hh") or name.startswith("weight_ih_l1"):
                p.view(4, 6, -1)[:, 2] *= 1e-3
                p[:, 2] *= 1e-3
        m.fc.weight[:, 2] *= 1e-3
    DG = pe.DependencyGraph().build_dependency(m, torch.randn(2, 5, 4))
    g = next(g for g in DG.get_all_groups() if g.root_module is m.lstm)
    s = MagnitudeImportance()(g)
    assert s.shape == (6,)
    assert int(torch.argmin(s)) == 2
    # the exact value, with the layout documented in importance.members
    h = 6
    want = 0
    for k in range(2):
        wih, whh = getattr(m.lstm, f"weight_ih_l{k}").detach(), getattr(m.lstm, f"weight_hh_l{k}").detach()
        want = want + wih.reshape(4, h, -1).pow(2).sum((0, 2)) + whh.reshape(4, h, -1).pow(2).sum((0, 2)) + whh.pow(2).sum(0)
        if k:
            want = want + wih.pow(2).sum(0)
    got = MagnitudeImportance(normalizer=None, group_reduction="sum", target_types=[nn.LSTM])(g)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.scale = nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1))
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.conv(x) * self.scale)


def test_loose_parameter_counts_along_its_dim():
    m = Scaled()
    DG = pe.DependencyGraph().build_dependency(m, X, unwrapped_parameters=[(m.scale, 1)])
    g = next(g for g in DG.get_all_groups() if g.root_module is m.conv)
    assert any(isinstance(it.dep.layer, nn.Parameter) for it in g)
    got = MagnitudeImportance(normalizer=None, group_reduction="sum")(g)
    want = m.conv.weight.detach().pow(2).flatten(1).sum(1) + torch.tensor([1.0, 4, 9, 16]) + \
        m.head.weight.detach().pow(2).transpose(0, 1).flatten(1).sum(1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_scores_follow_a_selected_subgroup():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X)
    full = MagnitudeImportance(normalizer=None)(g)
    sub = g.select([1, 4])
    assert sub.root_idxs == [1, 4]
    torch.testing.assert_close(MagnitudeImportance(normalizer=None)(sub), full[[1, 4]])


def test_bn_scale_uses_norm_layers_and_falls_back():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X)
    torch.testing.assert_close(BNScaleImportance(normalizer=None)(g), m.bn.weight.detach().abs())
    flat = Flat()
    _, g2 = group_of(flat, flat.conv, X)
    assert BNScaleImportance()(g2) is None  # no norm layer: no opinion (the pruner skips the group)
    fb = BNScaleImportance(fallback=MagnitudeImportance())(g2)
    torch.testing.assert_close(fb, MagnitudeImportance()(g2))


def test_lamp_keeps_the_magnitude_order_and_is_at_most_one():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X)
    lamp = LAMPImportance()(g)
    mag = MagnitudeImportance(normalizer=None)(g)
    assert torch.equal(torch.argsort(lamp), torch.argsort(mag))
    assert float(lamp.max()) == pytest.approx(1.0)
    assert bool((lamp > 0).all())


def test_fpgm_finds_the_channel_at_the_geometric_median():
    m = nn.Sequential(nn.Conv2d(3, 5, 1, bias=False), nn.Conv2d(5, 2, 1, bias=False))
    with torch.no_grad():
        w = torch.randn(5, 3)
        w[2] = (w[0] + w[1] + w[3] + w[4]) / 4  # the middle of the others
        m[0].weight.copy_(w.view(5, 3, 1, 1))
        m[1].weight.fill_(1.0)  # identical columns: the consumer side does not tell channels apart
    _, g = group_of(m, m[0], X)
    s = FPGMImportance()(g)
    assert int(torch.argmin(s)) == 2
    # per member: the summed distance of each channel to the others
    d = torch.cdist(w, w).sum(1)
    torch.testing.assert_close(FPGMImportance(normalizer=None, target_types=[nn.Conv2d], group_reduction="first")(g), d,
                               rtol=1e-4, atol=1e-5)


def test_random_is_seeded_and_sized():
    m = ConvBNConv()
    _, g = group_of(m, m.conv1, X)
    torch.manual_seed(3)
    a = RandomImportance()(g)
    torch.manual_seed(3)
    b = RandomImportance()(g)
    assert a.shape == (6,) and torch.equal(a, b)


def test_importance_does_not_touch_the_model():
    m = ConvBNConv()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    _, g = group_of(m, m.conv1, X)
    for imp in (MagnitudeImportance(), BNScaleImportance(), LAMPImportance(), FPGMImportance()):
        imp(g)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in m.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("p", [2, 1, 3])
@pytest.mark.parametrize("shape", [(300, 70, 3, 3), (40, 520, 3, 3), (9, 5), (600, 130), (2, 3, 4, 5), (40,),
                                   (16, 40, 1, 1), (128, 512, 1, 1), (96, 1024)])
def test_held_every_channel_is_rows_power_sum_on_the_cut_tensor(shape, p, dtype):
    """Every channel's sums along a dim, the other dims cut (never built), are bit for bit ``Rows.power_sum`` on the
    cut tensor: the whole-tensor way for every channel, and the gathering way for a few channels (a linear weight's
    or 1x1 conv's inputs included, where a reduction over the strided view would add in an order that depends on
    the number of channels read)."""
    from prune_explorer.importance.held import every_channel
    from prune_explorer.layers.slicing import Rows

    g = torch.Generator().manual_seed(0)
    t = (torch.randn(shape, generator=g) * 3).to(dtype)
    for dim in range(len(shape)):
        for cut_dims in ([], [e for e in range(len(shape)) if e != dim][:1], [e for e in range(len(shape)) if e != dim]):
            keeps = [(e, torch.randperm(shape[e], generator=g)[: max(1, shape[e] * 2 // 3)].sort().values)
                     for e in cut_dims]
            cut = t
            for e, keep in keeps:
                cut = cut.index_select(e, keep)
            size = shape[dim]
            whole = every_channel(t, dim, keeps, p, False)
            assert torch.equal(whole, Rows(dim, torch.arange(size)).power_sum(cut, p))
            few = torch.arange(0, size, 5)
            if 4 * few.numel() < size and few.numel() > 1:
                assert torch.equal(every_channel(t, dim, keeps, p, True)[few], Rows(dim, few).power_sum(cut, p))
