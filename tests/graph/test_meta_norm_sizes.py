"""The shape-only fast path for normalisations checks the per-channel tensors' sizes, so the post-prune check sees a
layer whose per-channel parameter kept its old size (timm nfnet_l0's gain before its layer family existed)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prune_explorer.graph.trace.meta_shapes import fast_meta
from prune_explorer.pruner.post_check import run_error


def m(*shape):
    return torch.empty(*shape, device="meta")


CASES = [
    ("batch_norm", F.batch_norm, (m(2, 8, 4), m(8), m(8)), {"weight": m(8), "bias": m(8)}, True),
    ("batch_norm", F.batch_norm, (m(2, 8, 4), None, None), {"weight": m(16), "training": True}, False),
    ("batch_norm", F.batch_norm, (m(2, 8, 4), m(16), m(16)), {}, False),
    ("group_norm", F.group_norm, (m(2, 8, 4), 2, m(8), m(8)), {}, True),
    ("group_norm", F.group_norm, (m(2, 8, 4), 2, m(4), m(4)), {}, False),
    ("layer_norm", F.layer_norm, (m(2, 5, 8), (8,), m(8), m(8)), {}, True),
    ("layer_norm", F.layer_norm, (m(2, 5, 8), (8,), m(6), m(6)), {}, False),
    ("instance_norm", F.instance_norm, (m(2, 8, 4),), {"weight": m(4), "bias": m(4)}, False),
]


@pytest.mark.parametrize("name, fn, args, kwargs, fits", CASES)
def test_fast_path_only_answers_calls_pytorch_accepts(name, fn, args, kwargs, fits):
    out = fast_meta(fn, name, args, kwargs)
    if fits:
        assert out is not None and out.shape == fn(*args, **kwargs).shape
    else:
        assert out is None
        with pytest.raises(RuntimeError):
            fn(*args, **kwargs)


class GainConv(nn.Conv2d):
    """A conv whose forward normalises its weight with a per-output-channel gain (as timm's ScaledStdConv2d)."""

    def __init__(self, cin, cout):
        super().__init__(cin, cout, 3, padding=1)
        self.gain = nn.Parameter(torch.ones(cout))

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, weight=self.gain,
                         training=True).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, padding=1)


def test_the_check_sees_a_per_channel_parameter_left_at_its_old_size():
    conv = GainConv(3, 8)
    x = torch.randn(1, 3, 6, 6)
    assert run_error(conv, x) is None
    conv.gain = nn.Parameter(torch.ones(16))
    assert "weight should contain 8 elements not 16" in run_error(conv, x)
