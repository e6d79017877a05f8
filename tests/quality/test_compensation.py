"""Compensation without training: better reconstruction than a plain cut, output unchanged when nothing is removed,
exact to undo (Linear, Conv, grouped Conv)."""

import copy

import pytest
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.calibration import Calibration
from prune_explorer.compensation import Compensation, deltas

MODES = [(True, False), (False, True), (True, True)]


def _model(kind):
    torch.manual_seed(0)
    if kind == "linear":
        m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 5, bias=False))
        data = [torch.randn(64, 6) for _ in range(3)]
        fn = pe.prune_linear_out_channels
    else:
        g = 2 if kind == "grouped" else 1
        m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 1, groups=g, bias=False))
        data = [torch.randn(8, 3, 6, 6) for _ in range(3)]
        fn = pe.prune_conv_out_channels
    return m, data, fn


@pytest.mark.parametrize("kind", ["linear", "conv", "grouped"])
@pytest.mark.parametrize("bias,ls", MODES)
def test_compensation_reduces_error_and_undoes_exactly(kind, bias, ls):
    m, data, fn = _model(kind)
    x = torch.cat(data)
    ref = m(x).detach()
    plain = copy.deepcopy(m)
    pe.DependencyGraph().build_dependency(plain, data[0]).get_pruning_group(plain[0], fn, [0, 3, 5, 9]).prune()
    comp = Compensation(bias=bias, least_squares=ls, ridge=1e-4)
    comp.calibrate(m, Calibration(data, progress=False))
    dg = pe.DependencyGraph().build_dependency(m, data[0])
    dg.undo_depth = 1
    before = {k: v.clone() for k, v in m.state_dict().items()}
    comp.prune(dg.get_pruning_group(m[0], fn, [0, 3, 5, 9]))
    assert m[2].weight.shape == plain[2].weight.shape
    err_plain = (plain(x) - ref).pow(2).mean().item()
    err_comp = (m(x) - ref).pow(2).mean().item()
    assert err_comp < err_plain
    assert (m[2].bias is not None) == bias  # a bias was created for bias compensation only
    dg.undo()
    after = m.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(m(x), ref)


@pytest.mark.parametrize("bias,ls", MODES)
def test_nothing_removed_leaves_the_layer_unchanged(bias, ls):
    torch.manual_seed(0)
    w = torch.randn(5, 8)
    x = torch.randn(32, 8).double()
    dW, db = deltas(w, 1, torch.zeros(0, dtype=torch.long), x.mean(0), x.T @ x / 32 if ls else None, bias)
    assert (dW is None or torch.equal(dW, torch.zeros_like(dW))) and (db is None or not db.any())
    conv = torch.randn(4, 6, 3, 3)
    dW, db = deltas(conv, 2, torch.zeros(0, dtype=torch.long), torch.randn(12).double(),
                    torch.eye(12, dtype=torch.float64) if ls else None, bias)
    assert (dW is None or (dW.shape == conv.shape and not dW.any())) and (db is None or not db.any())


def test_bias_compensation_is_exact_for_a_constant_channel():
    """A channel that is constant on the data is replaced exactly by its mean: the output does not change."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        m[0].weight[2].zero_()
        m[0].bias[2] = 0.7  # channel 2 is always relu(0.7)
    data = [torch.randn(16, 4) for _ in range(2)]
    x = torch.cat(data)
    ref = m(x).detach()
    comp = Compensation(bias=True)
    comp.calibrate(m, Calibration(data, progress=False))
    dg = pe.DependencyGraph().build_dependency(m, data[0])
    comp.prune(dg.get_pruning_group(m[0], pe.prune_linear_out_channels, [2]))
    assert torch.allclose(m(x), ref, atol=1e-5)


def test_compensation_needs_statistics():
    m, data, fn = _model("linear")
    dg = pe.DependencyGraph().build_dependency(m, data[0])
    with pytest.raises(pe.errors.CalibrationError, match="calibrate"):
        Compensation().prune(dg.get_pruning_group(m[0], fn, [0]))
    assert m[0].out_features == 16
    with pytest.raises(ValueError, match="nothing"):
        Compensation(bias=False, least_squares=False)



@pytest.mark.parametrize("padding,mode", [(1, "zeros"), ("same", "zeros"), (1, "reflect"), (0, "zeros")])
def test_conv_bias_compensation_keeps_the_output_mean_exactly_with_padding(padding, mode):
    """The created bias is the removed channels' contribution averaged over every output position, zero padding
    included: the consumer's output mean over the calibration data and positions is exactly the unpruned one's.
    The padding-blind bias (the channel mean through every tap) misses it wherever a tap reads zero padding."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(6, 4, 3, padding=padding, padding_mode=mode, bias=False))
    data = [torch.randn(4, 2, 5, 5) + 1.0 for _ in range(2)]
    x = torch.cat(data)
    ref = m(x).detach()
    comp = Compensation(bias=True)
    comp.calibrate(m, Calibration(data, progress=False))
    removed = torch.tensor([1, 4])
    w = m[2].weight.detach().clone()
    blind_db = deltas(w, 1, removed, comp.mean(m[2]), None, True)[1]
    taps_db = deltas(w, 1, removed, comp.mean(m[2]), None, True, mu_taps=comp.tap_means(m[2]))[1]
    dg = pe.DependencyGraph().build_dependency(m, data[0])
    comp.prune(dg.get_pruning_group(m[0], pe.prune_conv_out_channels, removed.tolist()))
    assert torch.allclose(m[2].bias.double(), taps_db, atol=1e-6)
    out = m(x).detach()
    assert torch.allclose(out.mean((0, 2, 3)), ref.mean((0, 2, 3)), atol=1e-5)
    if padding != 0 and mode == "zeros":
        assert (blind_db - taps_db).abs().max().item() > 1e-2


def test_linear_bias_with_least_squares_keeps_the_output_mean():
    """bias + least squares: the refitted weights and the bias together keep the output's mean exactly."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3, bias=False))
    data = [torch.randn(64, 5) for _ in range(2)]
    x = torch.cat(data)
    ref = m(x).detach()
    comp = Compensation(bias=True, least_squares=True)
    comp.calibrate(m, Calibration(data, progress=False))
    dg = pe.DependencyGraph().build_dependency(m, data[0])
    comp.prune(dg.get_pruning_group(m[0], pe.prune_linear_out_channels, [0, 2, 7]))
    assert torch.allclose(m(x).detach().mean(0), ref.mean(0), atol=1e-5)


def _transposed():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 2, stride=2))
    return m, [torch.randn(4, 3, 5, 5) for _ in range(2)]


def test_a_transposed_convolution_consumer_is_refused_before_anything_is_pruned():
    m, data = _transposed()
    before = copy.deepcopy(m.state_dict())
    comp = Compensation(bias=True, least_squares=True)
    comp.calibrate(m, Calibration(data, progress=False))
    dg = pe.DependencyGraph().build_dependency(m, data[0])
    with pytest.raises(pe.errors.CalibrationError, match=r"ConvTranspose2d.*not implemented.*unsupported='skip'"):
        comp.prune(dg.get_pruning_group(m[0], pe.prune_conv_out_channels, [1, 2]))
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items()) and m[0].out_channels == 8
    # opted out: pruned as usual, uncompensated, and listed
    skip = Compensation(bias=True, unsupported="skip")
    skip.calibrate(m, Calibration(data, progress=False))
    skip.prune(dg.get_pruning_group(m[0], pe.prune_conv_out_channels, [1, 2]))
    assert m[2].in_channels == 6 and torch.equal(m[2].bias, before["2.bias"])
    assert len(skip.skipped) == 1 and "ConvTranspose2d" in skip.skipped[0][1]


class _TiedLM(nn.Module):
    """An embedding and an output head sharing one weight (tie_word_embeddings), an MLP between them."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.fc = nn.Linear(8, 8)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        h = self.emb(ids)
        return self.head(h + torch.relu(self.fc(h)))


def test_a_tied_weight_is_not_refitted():
    """Least squares would give one user of a shared weight a new tensor (untying it): refused before anything is
    pruned; bias compensation alone keeps the tie and is allowed."""
    torch.manual_seed(0)
    m = _TiedLM()
    data = [torch.randint(0, 20, (4, 6)) for _ in range(2)]
    comp = Compensation(bias=True, least_squares=True)
    comp.calibrate(m, Calibration(data, progress=False))
    dg = pe.DependencyGraph().build_dependency(m, data[0])
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(pe.errors.CalibrationError, match=r"tied.*unsupported='skip'"):
        comp.prune(dg.get_pruning_group(m.emb, pe.prune_embedding_out_channels, [0, 3]))
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())
    bias_only = Compensation(bias=True)
    bias_only.calibrate(m, Calibration(data, progress=False))
    dg.undo_depth = 1
    x = torch.cat(data)
    ref = m(x).detach()
    bias_only.prune(dg.get_pruning_group(m.emb, pe.prune_embedding_out_channels, [0, 3]))
    # fc reads and writes the stream: its output rows go with the cut, the rest are compensated
    assert m.head.weight is m.emb.weight and m.emb.embedding_dim == 6 and m.head.bias is not None
    assert m.fc.bias.shape == (6,)
    dg.undo()
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items()) and m.head.bias is None
    assert torch.equal(m(x), ref)
