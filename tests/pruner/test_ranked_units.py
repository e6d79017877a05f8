"""The planner's array answers (units ranked as arrays, member constraints from the flat member layout, feasible
prefixes in closed form) are the answers of the plain definitions: a unit's score is the mean of its channels'
scores, a member loses the channels whose root channel a removed unit holds, a prefix is feasible when the root and
every member keep their constraints."""

import types

import numpy as np
import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.pruner import guards as G
from prune_explorer.pruner.units import member_constraints, ranked_units


def _bits(t: torch.Tensor) -> np.ndarray:
    """The float32 values' bits, every NaN as one (a NaN made by inf - inf has its sign bit set on some paths)."""
    out = t.detach().contiguous().view(torch.int32).numpy().copy()
    out[torch.isnan(t).numpy()] = 0x7FC00000
    return out


def _fake_group(n: int):
    root = np.arange(n, dtype=np.int64) * 2  # ascending, not positions
    return types.SimpleNamespace(root_array=root, root_idxs=root.tolist(), root_name="fake")


def _units(rng, root: np.ndarray, size: int):
    perm = rng.permutation(root).tolist()
    return sorted(sorted(perm[k:k + size]) for k in range(0, len(perm), size))


@pytest.mark.parametrize("size", [1, 2, 3, 7])
@pytest.mark.parametrize("seed", range(4))
def test_numpy_and_torch_rankings_are_the_same(size, seed):
    rng = np.random.default_rng(seed)
    group = _fake_group(42)
    units = [[int(r)] for r in group.root_array] if size == 1 else _units(rng, group.root_array, size)
    scores = rng.choice(np.array([0.0, -0.0, 1.5, 1e-30, 3.25, np.inf, -np.inf, np.nan], dtype=np.float32), 42)
    scores[::5] = rng.random(9).astype(np.float32)
    imp = torch.from_numpy(scores)
    in_numpy = ranked_units(group, imp, units)  # a float32 CPU vector: ranked in numpy
    in_torch = ranked_units(group, imp.double(), units)  # the same float32 values through torch
    assert np.array_equal(in_numpy.order, in_torch.order)
    assert np.array_equal(in_numpy.roots, in_torch.roots) and np.array_equal(in_numpy.sizes, in_torch.sizes)
    assert np.array_equal(_bits(in_numpy.scores), _bits(in_torch.scores))
    # the definition: a unit's score is its channels' scores summed in listed order (float32), over its size
    pos = {int(r): k for k, r in enumerate(group.root_array)}
    means = []
    with np.errstate(all="ignore"):
        for u in units:
            total = np.float32(0.0)
            for r in u:
                total = np.float32(total + scores[pos[r]])
            means.append(np.float32(total / np.float32(len(u))))
    means = np.array(means, dtype=np.float32)
    assert np.array_equal(in_numpy.order, np.argsort(means, kind="stable"))
    assert np.array_equal(in_numpy.roots, np.array([r for k in in_numpy.order for r in units[k]]))


def test_without_scores_the_units_keep_their_order():
    group = _fake_group(6)
    units = [[0, 6], [2, 4], [8, 10]]
    ranking = ranked_units(group, None, units)
    assert ranking.order.tolist() == [0, 1, 2] and ranking.roots.tolist() == [0, 6, 2, 4, 8, 10]
    assert ranking.scores.tolist() == [0.0, 0.0, 0.0]


class _Tied(nn.Module):
    """conv1 feeds a grouped conv (its inputs tie the same offset of every group) and a GroupNorm (a multiple); side's
    halves feed a conv each (each loses every channel it has when its half goes); the concatenation hands conv2 part
    of its inputs from each."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1)
        self.gn = nn.GroupNorm(4, 24)
        self.gconv = nn.Conv2d(24, 24, 3, padding=1, groups=6)
        self.bn = nn.BatchNorm2d(24)
        self.side = nn.Conv2d(3, 8, 1)
        self.side_a = nn.Conv2d(4, 4, 1)
        self.side_b = nn.Conv2d(4, 4, 1)
        self.conv2 = nn.Conv2d(32, 16, 1)
        self.out = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        y = self.gn(self.conv1(x))
        y = self.bn(self.gconv(torch.relu(y)))
        a, b = torch.chunk(self.side(x), 2, 1)
        return self.out(self.conv2(torch.cat([y, self.side_a(a), self.side_b(b)], 1)))


def _brute_ok(group, ranking, cur, min_keep, round_to, members):
    """Feasible prefixes from their definition: per prefix, per member, the channels it loses."""
    n_units = ranking.order.size
    bounds = np.concatenate([[0], np.cumsum(ranking.sizes)])
    ok = []
    for k in range(n_units + 1):
        removed = set(ranking.roots[: bounds[k]].tolist())
        good = cur - bounds[k] >= min_keep and (k == 0 or not round_to or round_to < 2 or (cur - bounds[k]) % round_to == 0)
        for j, it in enumerate(group.items):
            lost = sum(1 for r in it.root_array.tolist() if r in removed)
            mult, size = int(members.multiples[j]), int(members.sizes[j])
            good = good and lost < size and (mult <= 1 or lost % mult == 0)
        ok.append(good or k == 0)
    return np.array(ok)


@pytest.mark.parametrize("round_to", [None, 4])
@pytest.mark.parametrize("seed", range(3))
def test_member_constraints_give_the_feasible_prefixes_of_their_definition(round_to, seed):
    torch.manual_seed(seed)
    model = _Tied()
    pruner = pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 8, 8), pe.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=0.5, round_to=round_to, ignored_layers=[model.out])
    planner = pruner.planner
    groups = list(pruner.get_all_groups())
    assert any(len(u) > 1 for g in groups for u in g.units)  # the grouped conv ties units
    rng = np.random.default_rng(seed)
    for group in groups:
        members = planner.members(group)
        assert (members.multiples > 1).any() or group.root_name != "conv1"
        for imp in (planner.estimate_importance(group), torch.from_numpy(rng.random(len(group.root_idxs), dtype=np.float32))):
            ranking = ranked_units(group, imp, planner.units_of(group, members))
            cur, min_keep, rt = planner.limits(group)
            ok, _ = G.feasible_prefixes(ranking.sizes, cur, min_keep, rt, member_constraints(group, ranking, members))
            assert np.array_equal(ok, _brute_ok(group, ranking, cur, min_keep, rt, members)), group.root_name


@pytest.mark.parametrize("n", [0, 1, 5, 40])
def test_prefixes_in_closed_form_answer_as_the_prefix_table(n):
    for cur in range(max(1, n - 2), n + 3):
        for min_keep in (1, 2, cur, cur + 1):
            closed = G.Prefixes(None, n, cur, min_keep, None, [])
            table = G.Prefixes(np.ones(n, dtype=np.int64), n, cur, min_keep, None, [])
            assert closed.cum is None and table.cum is not None
            assert closed.max_removable == table.max_removable
            assert closed.next_after_none() == table.next_after_none()
            for target in range(0, n + 3):
                assert closed.choose(target) == table.choose(target)
                assert closed.down(target) == table.down(target)
                k = closed.choose(target)
                assert closed.removed(k) == table.removed(k)
