"""The reductions behind the held reads keep their exact values: ``slicing.row_power_sums`` and
``slicing.every_power_sum`` give, bit for bit, what the plain formulas give (``|t|^p`` built as a tensor, its rows
laid out contiguous and summed; the whole tensor reduced over its leading dims in blocks of rows, then the rest), for
every dim, dtype, power and layout (a transposed view included); the held reads give the same on the parameters of a
real model (each dim, with other dims cut as the held reads cut them)."""

from __future__ import annotations

import math

import pytest
import torch

from prune_explorer.layers.slicing import every_power_sum, row_power_sums


def _power(t: torch.Tensor, p: float) -> torch.Tensor:
    return t * t if p == 2 else (t.abs() if p == 1 else t.abs().pow(p))


def _rows_reference(t: torch.Tensor, dim: int, p: float) -> torch.Tensor:
    v = _power(t.float(), p)
    return v.movedim(dim, 0).reshape(t.shape[dim], -1).contiguous().sum(1)


def _every_reference(t: torch.Tensor, dim: int, p: float) -> torch.Tensor:
    size = t.shape[dim]
    lead = math.prod(t.shape[:dim])
    if lead == 1 and p in (1, 2):
        t = t if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else t.float()
        v = torch.linalg.vector_norm(t.reshape(size, -1), p, dim=1, dtype=torch.float32)
        return v * v if p == 2 else v
    rows = t.float().reshape(lead, -1)
    v = None
    for start in range(0, lead, 128):
        b = _power(rows[start:start + 128], p)
        b = b.sum(0) if b.shape[0] > 1 else b.reshape(-1)
        v = b if v is None else v.add_(b)
    v = v.reshape(size, -1)
    return v.sum(1) if v.shape[1] > 1 else v.reshape(size)


SHAPES = [(300, 70, 3, 3), (40, 520, 3, 3), (9, 5), (600, 130), (2, 3, 4, 5), (40,), (16, 40, 1, 1),
          (128, 512, 1, 1), (96, 1024), (200, 1, 3, 3), (3, 40, 1, 1), (40, 1, 1, 1)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("p", [2, 1, 3, 2.5])
@pytest.mark.parametrize("shape", SHAPES)
def test_power_sums_are_the_plain_formulas(shape, p, dtype):
    g = torch.Generator().manual_seed(1)
    t = (torch.randn(shape, generator=g) * 3).to(dtype)
    views = [t] + ([t.transpose(0, 1)] if t.dim() > 1 else [])
    for x in views:
        for dim in range(x.dim()):
            got = row_power_sums(x, dim, p)
            assert got.dtype == torch.float32 and torch.equal(got, _rows_reference(x, dim, p)), (dim, x.stride())
            if x.is_contiguous():
                assert torch.equal(every_power_sum(x, dim, p), _every_reference(x, dim, p)), dim


def test_held_reads_on_a_real_model():
    """Every parameter of a torchvision model, every dim, and each dim with other dims cut as the held reads cut
    them (``held.every_channel``, whole tensor or gathered rows): the plain formulas' values, bit for bit."""
    torchvision = pytest.importorskip("torchvision")
    from prune_explorer.importance.held import every_channel

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small()
    for name, param in model.named_parameters():
        t = param.detach()
        for dim in range(t.dim()):
            for p in (2, 1):
                assert torch.equal(every_power_sum(t, dim, p), _every_reference(t, dim, p)), (name, dim, p)
                keeps = [(e, torch.arange(0, t.shape[e], 2)) for e in range(t.dim()) if e != dim and t.shape[e] > 1]
                for cut in (keeps[:1], keeps[:2]):
                    g = t
                    for e, keep in cut:
                        g = g.index_select(e, keep)
                    assert torch.equal(every_channel(t, dim, cut, p, False), _every_reference(g, dim, p)), name
                    assert torch.equal(every_channel(t, dim, cut, p, True), _rows_reference(g, dim, p)), name
