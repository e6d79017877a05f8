"""Calibration and compensation through the one pruning path: the pruner's step() and the explorer's accept
compensate every cut (exact to undo); the explorer takes calibration= and measures the output change on it."""

import copy

import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.calibration import Calibration


def _setup():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(32, 6, generator=g) for _ in range(4)]
    return m, data


def test_step_compensates_every_cut_and_undoes_exactly():
    m, data = _setup()
    x = torch.cat(data)
    ref = m(x).detach()
    plain = copy.deepcopy(m)
    pe.pruner.MagnitudePruner(plain, data[0], pe.importance.WandaImportance(), pruning_ratio=0.5,
                              calibration=Calibration(data, progress=False)).step()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    comp = pe.compensation.Compensation(bias=True, least_squares=True)
    pruner = pe.pruner.MagnitudePruner(m, data[0], pe.importance.WandaImportance(), pruning_ratio=0.5,
                                       calibration=Calibration(data, progress=False), compensation=comp)
    pruner.DG.undo_depth = 10
    pruner.step()
    assert m[0].out_features == plain[0].out_features == 16
    assert m[2].bias is not None and not torch.equal(m[2].weight, plain[2].weight)
    assert (m(x) - ref).pow(2).mean() < (plain(x) - ref).pow(2).mean()
    while pruner.DG.history:
        pruner.DG.undo()
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_compensation_needs_calibration():
    m, data = _setup()
    import pytest

    with pytest.raises(pe.pruner.PrunerConfigError, match="calibration"):
        pe.pruner.MagnitudePruner(m, data[0], pe.importance.MagnitudeImportance(),
                                  compensation=pe.compensation.Compensation())


def test_explorer_calibration_and_compensation():
    from prune_explorer.explorer.controller import ExplorerController

    m, data = _setup()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    imp = pe.importance.FluctuationImportance()
    comp = pe.compensation.Compensation(bias=True)
    c = ExplorerController(m, data[0], importance=imp, pruning_ratio=0.5,
                           calibration=Calibration(data, progress=False), compensation=comp)
    assert len(imp.stats) > 0 and len(comp.stats) > 0  # one pass fed both
    c.accept()
    assert m[0].out_features == 16 and m[2].bias is not None
    c.undo()
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_apply_plan_with_calibration_and_compensation():
    m, data = _setup()
    x = torch.cat(data)
    ref = m(x).detach()
    plan = pe.sensitivity.uniform_plan(copy.deepcopy(m), data[0], ratio=0.5)
    plain = copy.deepcopy(m)
    pe.apply_plan(plain, plan, example_inputs=data[0], importance=pe.importance.WandaImportance(),
                  calibration=Calibration(data, progress=False))
    comp = pe.compensation.Compensation(bias=True, least_squares=True)
    pe.apply_plan(m, plan, example_inputs=data[0], importance=pe.importance.WandaImportance(),
                  calibration=Calibration(data, progress=False), compensation=comp)
    assert m[0].out_features == plain[0].out_features < 32
    assert (m(x) - ref).pow(2).mean() < (plain(x) - ref).pow(2).mean()


def test_sensitivity_scan_with_calibration():
    m, data = _setup()
    x = torch.cat(data)
    ref = m(x).detach()

    def eval_fn(model):
        with torch.no_grad():
            return -float((model(x) - ref).pow(2).mean())

    imp = pe.importance.WandaImportance()
    table = pe.sensitivity.scan(m, data[0], eval_fn, importance=imp, ratios=(0.5,), executor="serial",
                                progress=False, calibration=Calibration(data, progress=False))
    assert len(imp.stats) > 0 and len(table.rows) >= 2
    assert all(r.metric < 0 for r in table.rows) and torch.equal(m(x), ref)  # every point hurt; model restored
