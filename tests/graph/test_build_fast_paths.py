"""The build's shortcuts give what the general paths give: consecutive-id ranges (Couplings.pair_range, folded by
the union-find), the plain-case layer outputs on meta tensors, and the one-loop module walk."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from prune_explorer.graph.model.union_find import connected_components, range_pairs
from prune_explorer.graph.trace import meta_shapes
from prune_explorer.graph.trace.labels import Couplings
from prune_explorer.graph.trace.tracing import named_modules_of


def test_pair_range_records_what_unify_ids_records():
    ids, f = torch.arange(5, 9), torch.arange(20, 24).reshape(1, 4, 1, 1)
    expected, got = Couplings(), Couplings()
    expected.unify_ids(ids, f, "reads fixed channels")
    got.pair_range(5, 20, 4)
    assert [a.tolist() for a in got.as_numpy()[0]] == [a.tolist() for a in expected.pair_a]
    assert [b.tolist() for b in got.as_numpy()[1]] == [b.tolist() for b in expected.pair_b]
    assert got.fixed == expected.fixed == []


def _blocks(rng):
    sizes = rng.integers(0, 5, rng.integers(1, 8))
    offsets = 1 + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return sizes, offsets, int(1 + sizes.sum() + rng.integers(0, 4))


@pytest.mark.parametrize("seed", range(5))
def test_folded_ranges_give_the_labels_of_the_expanded_pairs(seed):
    rng = np.random.default_rng(seed)
    for case in range(300):
        sizes, offsets, n = _blocks(rng)
        ranges = []
        for _ in range(rng.integers(0, 7)):
            i, j = rng.integers(0, sizes.size, 2)
            if i != j and sizes[i] == sizes[j]:
                ranges.append((int(offsets[i]), int(offsets[j]), int(sizes[i])))
        if case % 5 == 0 and n > 3:  # blocks that overlap or restart: taken as plain pairs
            ranges.append((1, 2, int(rng.integers(1, 3))))
        m = int(rng.integers(0, 6))
        a, b = [rng.integers(0, n, m)], [rng.integers(0, n, m)]
        expanded_a, expanded_b = list(a), list(b)
        if ranges:
            ra, rb = range_pairs(ranges)
            expanded_a.append(ra)
            expanded_b.append(rb)
        expected = connected_components(n, expanded_a, expanded_b)
        assert connected_components(n, a, b, ranges=ranges).tolist() == expected.tolist(), (n, ranges, a, b)


def _same_meta(a, b):
    return (a is None) == (b is None) and (a is None or (a.shape, a.dtype, a.stride(), a.device)
                                           == (b.shape, b.dtype, b.stride(), b.device))


def _generic(layer, x):
    try:
        if isinstance(layer, nn.Conv2d):
            return meta_shapes._conv_call(layer, x)
        if isinstance(layer, nn.BatchNorm2d):
            return meta_shapes._batch_norm_call(layer, x)
        return meta_shapes.fast_meta(torch.nn.functional.linear, "linear", (x, layer.weight, layer.bias), {})
    except RuntimeError as exc:
        return exc


LAYERS = {
    "conv": (lambda: nn.Conv2d(8, 16, 3, padding=1), (2, 8, 9, 9)),
    "conv strided": (lambda: nn.Conv2d(8, 16, (3, 5), stride=(2, 3), padding=(0, 2), dilation=(1, 2)), (1, 8, 17, 19)),
    "conv grouped": (lambda: nn.Conv2d(8, 16, 3, groups=4), (1, 8, 9, 9)),
    "conv same": (lambda: nn.Conv2d(8, 16, 3, padding="same"), (1, 8, 9, 9)),
    "conv reflect": (lambda: nn.Conv2d(8, 16, 3, padding=1, padding_mode="reflect"), (1, 8, 9, 9)),
    "conv unbatched": (lambda: nn.Conv2d(8, 16, 3), (8, 9, 9)),
    "conv wrong channels": (lambda: nn.Conv2d(8, 16, 3), (1, 6, 9, 9)),
    "conv too small": (lambda: nn.Conv2d(8, 16, 5), (1, 8, 3, 3)),
    "conv int input": (lambda: nn.Conv2d(8, 16, 3), (1, 8, 9, 9), torch.long),
    "bn": (lambda: nn.BatchNorm2d(8).eval(), (2, 8, 5, 5)),
    "bn no stats": (lambda: nn.BatchNorm2d(8, track_running_stats=False).eval(), (2, 8, 5, 5)),
    "bn training": (lambda: nn.BatchNorm2d(8), (2, 8, 5, 5)),
    "bn no affine": (lambda: nn.BatchNorm2d(8, affine=False).eval(), (2, 8, 5, 5)),
    "bn wrong channels": (lambda: nn.BatchNorm2d(8).eval(), (2, 6, 5, 5)),
    "bn 3-d": (lambda: nn.BatchNorm2d(8).eval(), (8, 5, 5)),
    "linear": (lambda: nn.Linear(8, 4), (2, 3, 8)),
    "linear no bias": (lambda: nn.Linear(8, 4, bias=False), (8,)),
    "linear wrong size": (lambda: nn.Linear(8, 4), (2, 6)),
    "linear int input": (lambda: nn.Linear(8, 4), (2, 8), torch.long),
}


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_plain_layer_outputs_on_meta_match_the_generic_rules(case):
    make, shape, *dtype = LAYERS[case]
    layer = make().to("meta")
    x = torch.empty(shape, dtype=dtype[0] if dtype else torch.float32, device="meta")
    if case == "bn 3-d":  # an unbatched call BatchNorm2d refuses: both leave it to the layer's forward
        assert meta_shapes.layer_on_meta(layer, (x,), {}) is None
        return
    expected = _generic(layer, x)
    try:
        got = meta_shapes.layer_on_meta(layer, (x,), {})
    except RuntimeError as exc:
        got = exc
    if isinstance(expected, Exception):
        assert type(got) is type(expected) and str(got) == str(expected)
    else:
        assert _same_meta(got, expected)


class _OwnWalk(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)

    def named_modules(self, *args, **kwargs):
        yield from super().named_modules(*args, **kwargs)


def test_named_modules_of_is_torchs_walk():
    shared = nn.Conv2d(3, 3, 1)
    net = nn.Sequential(shared, nn.Sequential(nn.ReLU(), shared, nn.Sequential(nn.Linear(2, 2))), _OwnWalk())
    net.add_module("none", None)
    for model in (net, net[1], _OwnWalk(), nn.Linear(2, 2)):
        got, expected = named_modules_of(model), list(model.named_modules())
        assert [n for n, _ in got] == [n for n, _ in expected]
        assert all(a is b for (_, a), (_, b) in zip(got, expected))
