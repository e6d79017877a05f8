"""Couplings.unify_ids (a layer reading a field that varies along its channel dim only) records exactly what unify
of the field built from the ids records: the same pairs, in order, and the same fixed ids with their reason."""

import numpy as np
import pytest
import torch

from prune_explorer.graph.trace.labels import Couplings, new_field


def _record(c: Couplings):
    return ([a.tolist() for a in c.pair_a], [b.tolist() for b in c.pair_b],
            [(ids.tolist(), reason) for ids, reason in c.fixed])


FIELDS = {
    "all differ": torch.tensor([7, 8, 9, 10]).reshape(1, 4, 1, 1),
    "some equal": torch.tensor([1, 8, 3, 10]).reshape(1, 4, 1, 1),
    "all equal": torch.tensor([1, 2, 3, 4]).reshape(1, 4, 1, 1),
    "unlabeled positions": torch.tensor([-1, 8, 3, -1]).reshape(1, 4, 1, 1),
    "none labeled": torch.full((1, 4, 1, 1), -1),
    "strided": torch.tensor([5, 0, 6, 0, 2, 0, -1, 0])[::2].reshape(1, 4, 1, 1),
    "broadcast": torch.tensor([[6]]).expand(4, 1).reshape(1, 4, 1, 1),
}


@pytest.mark.parametrize("case", sorted(FIELDS))
def test_unify_ids_records_what_unify_of_the_built_field_records(case):
    f = FIELDS[case]
    ids = torch.arange(1, 5)
    expected, got = Couplings(), Couplings()
    expected.unify(new_field(f.shape, 1, ids), f, "reads fixed channels")
    got.unify_ids(ids, f, "reads fixed channels")
    assert _record(got) == _record(expected)
    for a, b in zip(got.pair_a + got.pair_b, expected.pair_a + expected.pair_b):
        assert a.dtype == b.dtype == np.int64
