"""save_pruned / load_pruned (safe, exact, refuses mismatches) and progressive_pruning."""

import json
import pickle

import pytest
import torch
import torch.nn as nn
import torchvision

import prune_explorer as pe


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def pruned_resnet(seed=0):
    torch.manual_seed(seed)
    m = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    dg = pe.DependencyGraph().build_dependency(m, x)
    for k, g in enumerate(dg.get_all_groups(ignored_layers=[m.fc])):
        n = len(g.root_idxs)
        g.select(list(range(k % 3, n, 3))).prune()  # a different, non-trivial pattern per group
    return m, x


def test_save_and_load_rebuild_the_exact_pruned_model(tmp_path):
    m, x = pruned_resnet()
    path = tmp_path / "r18.pt"
    pe.save_pruned(m, path)
    # the file is plain data: the safe loader accepts it (no pickled classes or code)
    raw = torch.load(path, weights_only=True)
    json.dumps(raw["history"])
    fresh = torchvision.models.resnet18().eval()
    restored = pe.load_pruned(fresh, path)
    assert restored is fresh
    a, b = state(m), state(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert repr(m) == repr(fresh)
    assert torch.allclose(m(x), fresh(x))
    # the loaded model can be pruned further and saved again
    dg = pe.DependencyGraph().build_dependency(fresh, x)
    next(iter(dg.get_all_groups())).select([0]).prune()
    pe.save_pruned(fresh, tmp_path / "again.pt")
    again = pe.load_pruned(torchvision.models.resnet18().eval(), tmp_path / "again.pt")
    assert again.conv1.out_channels == fresh.conv1.out_channels


def test_loose_parameters_roundtrip(tmp_path):
    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Linear(4, 8)
            self.pos = nn.Parameter(torch.randn(1, 3, 8))
            self.out = nn.Linear(8, 2)

        def forward(self, x):
            return self.out(self.emb(x) + self.pos).mean(1)

    torch.manual_seed(0)
    m, x = Tok(), torch.randn(2, 3, 4)
    dg = pe.DependencyGraph().build_dependency(m, x)
    dg.get_pruning_group(m.emb, pe.prune_linear_out_channels, [1, 5]).prune()
    pe.save_pruned(m, tmp_path / "t.pt")
    torch.manual_seed(1)
    fresh = pe.load_pruned(Tok(), tmp_path / "t.pt")
    assert fresh.pos.shape == (1, 3, 6) and torch.equal(fresh.pos, m.pos)
    assert torch.allclose(fresh(x), m(x))


def test_mismatched_file_is_refused_and_model_untouched(tmp_path):
    m, _ = pruned_resnet()
    pe.save_pruned(m, tmp_path / "r18.pt")
    other = torchvision.models.resnet34().eval()
    with pytest.raises(pe.PruningError, match="do not fit"):  # same class, different architecture
        before = state(other)
        pe.load_pruned(other, tmp_path / "r18.pt")
    assert all(torch.equal(v, state(other)[k]) for k, v in before.items())

    wrong_class = torchvision.models.vgg11()
    with pytest.raises(pe.PruningError, match="construct the same model class"):
        pe.load_pruned(wrong_class, tmp_path / "r18.pt")

    # a tampered history: index out of range and unknown module
    data = torch.load(tmp_path / "r18.pt", weights_only=True)
    data["history"][0]["members"][0]["idxs"] = [10_000]
    torch.save(data, tmp_path / "bad_idx.pt")
    fresh = torchvision.models.resnet18()
    before, reprs = state(fresh), repr(fresh)
    with pytest.raises(pe.PruningError, match="do not fit"):
        pe.load_pruned(fresh, tmp_path / "bad_idx.pt")
    assert repr(fresh) == reprs and all(torch.equal(v, state(fresh)[k]) for k, v in before.items())
    assert pe.history.pruning_history(fresh) == []

    data = torch.load(tmp_path / "r18.pt", weights_only=True)
    data["history"][0]["members"][1]["name"] = "layer9.conv"
    torch.save(data, tmp_path / "bad_name.pt")
    with pytest.raises(pe.PruningError, match="layer9.conv"):
        pe.load_pruned(fresh, tmp_path / "bad_name.pt")
    assert repr(fresh) == reprs


def test_loading_never_unpickles_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": pe.history.FORMAT, "payload": Evil()}, f)
    with pytest.raises(pe.PruningError, match="weights_only"):
        pe.load_pruned(torchvision.models.resnet18(), path)
    assert not (tmp_path / "PWNED").exists()


def test_progressive_pruning_reaches_the_target_speedup():
    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    pruner = pe.pruner.MagnitudePruner(m, x, pe.importance.MagnitudeImportance(p=2), iterative_steps=40,
                                       pruning_ratio=0.8, ignored_layers=[m.fc])
    base_macs, _ = pe.utils.count_ops_and_params(m, x)
    speedup = pe.utils.progressive_pruning(pruner, x, target_speedup=2.0)
    macs, _ = pe.utils.count_ops_and_params(m, x)
    assert speedup >= 2.0 and abs(base_macs / macs - speedup) < 1e-6
    assert speedup < 2.6  # stopped soon after reaching the target, not at the last step
    assert pruner.current_step < pruner.iterative_steps
    with pytest.raises(pe.PruningError, match="target_speedup"):
        pe.utils.progressive_pruning(pruner, x, target_speedup=0.5)
