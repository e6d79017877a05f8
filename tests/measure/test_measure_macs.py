"""MAC counting: hand-computed figures for each family of layers, plus the whole-model contracts."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from prune_explorer.errors import TracingError
from prune_explorer.measure import MacCounter, count_macs, count_ops_and_params


def macs_of(model, inputs, **kw):
    return count_ops_and_params(model, inputs, **kw)[0]


# ----------------------------------------------------------------------------------------------- convs
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_plain(bias):
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=bias)
    x = torch.randn(2, 3, 10, 10)
    # out elements 2*8*10*10 = 1600, each C_in*k*k = 3*3*3 = 27 MACs; bias is free
    assert macs_of(conv, x) == 1600 * 27 == 43200


@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_grouped_and_strided(bias):
    conv = nn.Conv2d(8, 16, kernel_size=(3, 5), stride=2, padding=(1, 2), groups=4, bias=bias)
    x = torch.randn(1, 8, 12, 12)
    # out 1*16*6*6 = 576, each (8/4)*3*5 = 30 MACs
    assert macs_of(conv, x) == 576 * 30 == 17280


def test_depthwise_conv1d_and_conv3d():
    dw = nn.Conv1d(6, 6, 3, groups=6, padding=1)
    assert macs_of(dw, torch.randn(2, 6, 20)) == (2 * 6 * 20) * 3
    c3 = nn.Conv3d(2, 4, 3)
    assert macs_of(c3, torch.randn(1, 2, 5, 5, 5)) == (4 * 3 * 3 * 3) * (2 * 27)


def test_conv_transpose2d():
    ct = nn.ConvTranspose2d(4, 6, kernel_size=2, stride=2, groups=2)
    x = torch.randn(1, 4, 5, 5)
    # every input element (4*5*5 = 100) meets (C_out/groups)*k*k = 3*4 = 12 weights
    assert macs_of(ct, x) == 100 * 12 == 1200


# ---------------------------------------------------------------------------------------------- linear
@pytest.mark.parametrize("bias", [True, False])
def test_linear_2d_and_3d(bias):
    fc = nn.Linear(10, 5, bias=bias)
    assert macs_of(fc, torch.randn(4, 10)) == 4 * 10 * 5 == 200
    assert macs_of(fc, torch.randn(2, 7, 10)) == 2 * 7 * 10 * 5 == 700


def test_functional_linear_outside_a_module_forward():
    """Swin-style: a parent calls F.linear with a child's weight; the child itself is never called."""

    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)

        def forward(self, x):
            return F.linear(x, self.qkv.weight, self.qkv.bias)

    model = Parent()
    macs, params, layer_macs, layer_params = count_ops_and_params(model, torch.randn(3, 8), layer_wise=True, layer_keys="name")
    assert macs == 3 * 8 * 24
    assert layer_macs["qkv"] == macs  # charged to the module owning the weight
    assert layer_macs[""] == macs
    assert params == layer_params[""] == 8 * 24 + 24


# --------------------------------------------------------------------------------------------- matmuls
class MatmulZoo(nn.Module):
    def forward(self, a, b, c, d):
        y1 = torch.matmul(a, b)  # (2,3,4,5) @ (5,6): 2*3*4*6*5 = 720
        y2 = a @ b  # same again: 720
        y3 = torch.bmm(c, d)  # (4,3,7) @ (4,7,2): 4*3*2*7 = 168
        y4 = c.bmm(d)  # 168
        y5 = torch.mm(c[0], d[0])  # (3,7) @ (7,2): 42
        y6 = torch.baddbmm(torch.zeros(4, 3, 2), c, d)  # 168
        y7 = torch.addmm(torch.zeros(3, 2), c[0], d[0])  # 42
        y8 = torch.einsum("bij,bjk->bik", c, d)  # 168
        return y1, y2, y3, y4, y5, y6, y7, y8


def test_matmul_family():
    a, b = torch.randn(2, 3, 4, 5), torch.randn(5, 6)
    c, d = torch.randn(4, 3, 7), torch.randn(4, 7, 2)
    assert macs_of(MatmulZoo(), (a, b, c, d)) == 720 * 2 + 168 * 2 + 42 + 168 + 42 + 168


def test_matmul_vectors_and_broadcast():
    with torch.no_grad(), MacCounter() as counter:
        torch.matmul(torch.randn(5), torch.randn(5))  # dot: 5
        torch.matmul(torch.randn(3, 5), torch.randn(5))  # mv: 15
        torch.matmul(torch.randn(2, 1, 3, 5), torch.randn(4, 5, 6))  # broadcast batch 2*4: 8*3*6*5 = 720
        torch.randn(4) @ torch.randn(4, 3)  # 12
        torch.outer(torch.randn(3), torch.randn(4))  # 12
        torch.tensordot(torch.randn(2, 3, 4), torch.randn(3, 4, 5), dims=2)  # 2*5*12 = 120
    assert counter.total == 5 + 15 + 720 + 12 + 12 + 120


def test_other_products():
    a, b, d = torch.randn(3, 4), torch.randn(4, 5), torch.randn(5, 2)
    with torch.no_grad(), MacCounter() as counter:
        torch.linalg.multi_dot([a, b, d])  # best order a(bd): 4*5*2 + 3*4*2 = 64
        torch.einsum(a, [0, 1], b, [1, 2], [0, 2])  # sublist format: 3*4*5 = 60
        torch.Tensor.__rmatmul__(b, a)  # a @ b: 60
        torch.cdist(torch.randn(2, 6, 3), torch.randn(2, 7, 3))  # 2*6*7*3 = 252
        F.bilinear(torch.randn(2, 3), torch.randn(2, 4), torch.randn(5, 3, 4))  # 2*5 outputs * 3*(4+1) = 150
    assert counter.by_function == {"linalg_multi_dot": 64, "einsum": 60, "__rmatmul__": 60, "cdist": 252,
                                   "bilinear": 150}


def test_einsum_ellipsis_and_implicit_output():
    with torch.no_grad(), MacCounter() as counter:
        torch.einsum("...ij,...jk", torch.randn(2, 3, 4), torch.randn(2, 4, 5))  # 2*3*4*5 = 120
        torch.einsum("ii", torch.randn(4, 4))  # trace: no multiplication
    assert counter.total == 120


def test_scaled_dot_product_attention():
    q = torch.randn(2, 4, 6, 8)  # (B, heads, L, E)
    k = torch.randn(2, 4, 10, 8)
    v = torch.randn(2, 4, 10, 3)
    with torch.no_grad(), MacCounter() as counter:
        F.scaled_dot_product_attention(q, k, v)
    # QK^T: 2*4*6*10*8 = 3840; AV: 2*4*6*10*3 = 1440
    assert counter.total == 3840 + 1440


# ------------------------------------------------------------------------------------------- attention
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention(need_weights, batch_first):
    E, H, L, B = 16, 4, 5, 2
    mha = nn.MultiheadAttention(E, H, batch_first=batch_first)
    x = torch.randn(B, L, E) if batch_first else torch.randn(L, B, E)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=need_weights)  # tuple output

    in_proj = B * L * 3 * E * E  # 7680
    qk = B * H * L * L * (E // H)  # 800
    av = B * H * L * L * (E // H)  # 800
    out_proj = B * L * E * E  # 2560
    macs, _, layer_macs, _ = count_ops_and_params(Wrap(), x, layer_wise=True, layer_keys="name")
    assert macs == in_proj + qk + av + out_proj == 11840
    assert layer_macs["mha.out_proj"] == out_proj  # the out-projection is charged to its own module
    assert layer_macs["mha"] == layer_macs[""] == macs


def test_multihead_attention_cross_with_kdim_vdim():
    E, H, L, S, B = 12, 3, 4, 7, 2
    mha = nn.MultiheadAttention(E, H, kdim=5, vdim=9)
    q, k, v = torch.randn(L, B, E), torch.randn(S, B, 5), torch.randn(S, B, 9)
    expected = B * (L * E * E + S * E * 5 + S * E * 9) + 2 * B * L * S * E + B * L * E * E
    assert macs_of(mha, (q, k, v)) == expected


def test_mha_not_double_counted_against_aten_reference():
    """The nested linear / bmm / sdpa calls inside F.multi_head_attention_forward are not seen a second
    time: our figure equals torch's own aten-level count (FLOPs / 2) on the same, non-fast path."""
    from torch.utils.flop_counter import FlopCounterMode

    mha = nn.MultiheadAttention(16, 4)
    x = torch.randn(5, 2, 16, requires_grad=True)  # requires_grad keeps the composite (non-fused) path
    with FlopCounterMode(display=False) as reference:
        mha(x, x, x, need_weights=True)
    assert macs_of(mha, (x, x, x)) == reference.get_total_flops() // 2


def test_transformer_encoder_layer():
    E, L, B, FF = 16, 6, 2, 32
    layer = nn.TransformerEncoderLayer(E, 4, dim_feedforward=FF, batch_first=True)
    x = torch.randn(B, L, E)
    attn = B * L * 3 * E * E + 2 * B * L * L * E + B * L * E * E
    ffn = B * L * E * FF * 2
    norms = 2 * (2 * B * L * E)
    assert macs_of(layer, x) == attn + ffn + norms


# ---------------------------------------------------------------------------------------------- norms
def test_batchnorm_eval_counts_one_per_element_and_is_not_double_counted():
    bn = nn.BatchNorm2d(4)
    x = torch.randn(2, 4, 3, 3)
    assert macs_of(bn, x) == 72  # F.batch_norm seen once, its inner torch.batch_norm not again
    assert macs_of(nn.BatchNorm2d(4, affine=False), x) == 72
    # no running statistics: batch statistics are computed even in eval -> 2 per element
    assert macs_of(nn.BatchNorm2d(4, track_running_stats=False), x) == 144


@pytest.mark.parametrize("affine", [True, False])
def test_layer_group_instance_norm(affine):
    x = torch.randn(2, 6, 4)
    assert macs_of(nn.LayerNorm(4, elementwise_affine=affine), x) == 2 * 48
    assert macs_of(nn.GroupNorm(3, 6, affine=affine), x) == 2 * 48
    assert macs_of(nn.InstanceNorm1d(6, affine=affine), x) == 2 * 48


def test_embedding_is_free():
    emb = nn.Embedding(100, 16)
    idx = torch.randint(0, 100, (4, 9))
    macs, params = count_ops_and_params(emb, idx)
    assert macs == 0 and params == 1600


# ---------------------------------------------------------------------------------------- recurrent
def test_lstm_bidirectional_two_layers():
    I, H, T, B = 8, 6, 7, 3
    lstm = nn.LSTM(I, H, num_layers=2, bidirectional=True)
    # per time step, per direction: 4 gates * H * (input + H) for W_ih x + W_hh h, plus 3*H cell products
    layer0 = 4 * H * (I + H) + 3 * H  # 354
    layer1 = 4 * H * (2 * H + H) + 3 * H  # input of layer 1 is both directions' output: 450
    expected = T * B * 2 * (layer0 + layer1)
    assert macs_of(lstm, torch.randn(T, B, I)) == expected == 33768


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_batch_first_proj_and_packed():
    lstm = nn.LSTM(5, 4, proj_size=2, batch_first=True)
    T, B = 6, 2
    per_step = 4 * 4 * 5 + 4 * 4 * 2 + 4 * 2 + 3 * 4  # W_ih, W_hh (hidden is projected to 2), W_hr, cell
    assert macs_of(lstm, torch.randn(B, T, 5)) == B * T * per_step
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(B, T, 5), [6, 3], batch_first=True)
    assert macs_of(lstm, packed) == (6 + 3) * per_step  # only real steps (a PackedSequence is one input)


def test_gru_and_rnn():
    I, H, T, B = 4, 5, 3, 2
    gru = nn.GRU(I, H)
    assert macs_of(gru, torch.randn(T, B, I)) == T * B * (3 * H * (I + H) + 3 * H)
    rnn = nn.RNN(I, H, num_layers=2)
    assert macs_of(rnn, torch.randn(T, B, I)) == T * B * (H * (I + H) + H * (H + H))


def test_rnn_cells():
    cell = nn.LSTMCell(4, 3)
    assert macs_of(cell, torch.randn(2, 4)) == 2 * (4 * 3 * 7 + 3 * 3)
    gcell = nn.GRUCell(4, 3)
    assert macs_of(gcell, torch.randn(2, 4)) == 2 * (3 * 3 * 7 + 3 * 3)


# -------------------------------------------------------------------------------------- whole models
def test_resnet18_reference_figures():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    macs, params = count_ops_and_params(model, torch.randn(1, 3, 224, 224))
    assert params == 11_689_512
    assert 1.81e9 <= macs <= 1.825e9  # widely quoted 1.81-1.82 GMACs
    assert macs == 1_816_557_056  # convs+fc 1,814,073,344 + BN 2,483,712 (1 MAC per element)


def test_batch_scales_linearly():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    one = count_macs(model, torch.randn(1, 3, 64, 64))
    assert count_macs(model, torch.randn(3, 3, 64, 64)) == 3 * one


def test_layer_wise_resnet18():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    macs, params, layer_macs, layer_params = count_ops_and_params(
        model, torch.randn(1, 3, 224, 224), layer_wise=True, layer_keys="name"
    )
    assert set(layer_macs) == set(layer_params) == {n for n, _ in model.named_modules()}
    assert layer_macs[""] == macs and layer_params[""] == params
    assert layer_macs["conv1"] == 64 * 112 * 112 * 3 * 49
    assert layer_macs["fc"] == 512 * 1000
    assert layer_params["fc"] == 512 * 1000 + 1000
    top = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert sum(layer_macs[n] for n in top) == macs
    assert layer_macs["layer1"] == sum(layer_macs[f"layer1.{i}"] for i in range(2))


def test_model_unchanged_in_train_mode():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    model.train()
    model.layer2.eval()  # mixed modes must come back exactly
    before = copy.deepcopy(model.state_dict())
    modes = {n: m.training for n, m in model.named_modules()}
    count_ops_and_params(model, torch.randn(2, 3, 32, 32))
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert modes == {n: m.training for n, m in model.named_modules()}


def test_buffers_restored_when_forward_changes_them():
    class Tracker(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1  # even in eval mode
            return self.lin(x)

    m = Tracker()
    count_ops_and_params(m, torch.randn(1, 3))
    assert m.calls.item() == 0


def test_dict_inputs_tuple_outputs_and_forward_fn():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(6, 2)

        def forward(self, x, y=None):
            return self.a(x), self.b(y)

    m = TwoHeads()
    inputs = {"x": torch.randn(5, 4), "y": torch.randn(5, 6)}
    expected = 5 * 4 * 3 + 5 * 6 * 2
    assert count_ops_and_params(m, inputs) == (expected, 4 * 3 + 3 + 6 * 2 + 2)
    assert macs_of(m, [inputs["x"], inputs["y"]]) == expected
    assert macs_of(m, None, forward_fn=lambda model, _: model.a(torch.randn(1, 4))) == 12


def test_works_inside_no_grad_and_with_grad_inputs():
    fc = nn.Linear(10, 5)
    x = torch.randn(4, 10, requires_grad=True)
    with torch.no_grad():
        assert macs_of(fc, x) == 200
    with torch.inference_mode():
        assert macs_of(fc, torch.randn(4, 10)) == 200
    assert macs_of(fc, x) == 200
    assert fc.weight.grad is None


def test_meta_device_inputs():
    with torch.device("meta"):
        conv = nn.Conv2d(3, 8, 3)
    assert macs_of(conv, torch.empty(1, 3, 10, 10, device="meta")) == 8 * 8 * 8 * 27


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_same_figures():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    x = torch.randn(1, 3, 224, 224)
    cpu = count_ops_and_params(model, x)
    assert count_ops_and_params(model.cuda(), x.cuda()) == cpu


def test_failing_forward_raises_tracing_error_and_restores_mode():
    fc = nn.Linear(10, 5).train()
    with pytest.raises(TracingError, match="Linear"):
        count_ops_and_params(fc, torch.randn(4, 7))
    assert fc.training


def test_mac_counter_by_function():
    with torch.no_grad(), MacCounter() as counter:
        F.linear(torch.randn(4, 10), torch.randn(3, 10))
        F.conv2d(torch.randn(1, 2, 4, 4), torch.randn(3, 2, 1, 1))
    assert counter.total == 120 + 3 * 16 * 2
    assert counter.by_function == {"linear": 120, "conv2d": 96}
