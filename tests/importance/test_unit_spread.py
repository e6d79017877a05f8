"""The members of a group whose channels pile up on one root channel per unit (grouped convs reading the root's
outputs) are evened out inside each unit alike, whichever member came before: each member's scores and covered
positions from one pass over the group are those it gets scored alone (a fresh spread)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.importance import MagnitudeImportance


class TwoReaders(nn.Module):
    """conv1's 8 channels read by two grouped convs (both tie channels c and c + 4) and a plain 1x1 conv."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 1)
        self.g1 = nn.Conv2d(8, 6, 3, padding=1, groups=2)
        self.g2 = nn.Conv2d(8, 4, 3, padding=1, groups=2)
        self.plain = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.conv1(x)
        return self.g1(y).sum() + self.g2(y).sum() + self.plain(y).sum()


def test_each_member_spread_as_if_alone():
    torch.manual_seed(3)
    m = TwoReaders()
    DG = pe.DependencyGraph().build_dependency(m, torch.randn(1, 3, 6, 6))
    g = next(g for g in DG.get_all_groups() if g.root_module is m.conv1)
    assert sorted(g.units) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    imp = MagnitudeImportance(normalizer=None)
    n, vectors = imp.member_vectors(g)
    assert n == 8 and len(vectors) >= 4
    for k, vec, covered in vectors:
        n_alone, alone = imp.member_vectors(g, members=lambda j, item, k=k: j == k)
        (k_alone, vec_alone, covered_alone), = alone
        assert k_alone == k and vec.dtype == vec_alone.dtype == np.float32
        assert np.array_equal(vec, vec_alone) and np.array_equal(covered, covered_alone)
    # both grouped convs share each unit's total evenly: the two channels of a unit score the same
    readers = [vec for k, vec, _ in vectors if g.items[k].dep.layer in (m.g1, m.g2)]
    assert len(readers) == 2
    for vec in readers:
        assert np.array_equal(vec[:4], vec[4:])
    torch.testing.assert_close(imp(g), imp.combine([v for v in vectors], n))
