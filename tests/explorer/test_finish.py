"""The finish view and its controller side: the per-layer report (totals equal to count_ops_and_params), the
groups left alone, saving (reloads to identical outputs), the reproducing script, ONNX export (runs in
onnxruntime with matching outputs), measured speed, attention-head options."""

import shutil

import pytest
import torch

import prune_explorer as pe
from prune_explorer.explorer import ExplorerController, ExplorerError
from prune_explorer.explorer.views.finish import report_html

from explorer_helpers import same_as, snapshot
from small_models import AttnModel, SmallNet

torchvision = pytest.importorskip("torchvision")
X64 = torch.randn(1, 3, 64, 64)


@pytest.fixture
def r18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    c = ExplorerController(model, X64)
    c.accept()
    c.skip()
    c.adjust(idxs="0-7")
    c.accept()
    return c


def test_report_totals_equal_count_ops_and_params_and_layers_add_up(r18):
    c = r18
    r = c.report()
    macs, params = pe.utils.count_ops_and_params(c.model, X64)
    assert r.params == (c.params0, params) and r.macs == (c.macs0, macs)
    assert r.params[1] < r.params[0] and r.macs[1] < r.macs[0]
    assert sum(row.params[1] for row in r.layers) == params  # every parameter of a ResNet sits in a layer
    assert sum(row.params[0] for row in r.layers) == c.params0
    conv1 = next(row for row in r.layers if row.name == "conv1")
    assert conv1.channels == {"in": (3, 3), "out": (64, c.model.conv1.out_channels)} and conv1.changed
    assert conv1.params == (64 * 3 * 49, c.model.conv1.weight.numel())
    fc = next(row for row in r.layers if row.name == "fc")
    assert fc.channels["out"] == (1000, 1000)
    assert r.accepted == 2 and r.left_alone == [{"root": "layer1.0.conv1", "reason": "skipped by you"}]
    html = report_html(r)
    assert f"data-value='{params}'" in html and f"data-value='{macs}'" in html
    assert "layer1.0.conv1" in html and "skipped by you" in html
    assert f"{len(r.changed_layers)} of {len(r.layers)} layers changed" in html


def test_guard_skipped_groups_are_listed_with_their_reason():
    from test_controller import GuardNet

    torch.manual_seed(0)
    c = ExplorerController(GuardNet(), torch.randn(1, 3, 6, 6))
    c.adjust(n=1)
    c.accept()  # a keeps one channel: the single-channel guard skips r
    r = c.report()
    assert r.left_alone == [{"root": "r", "reason": "single-channel guard: a.out has 1 channel"}]
    assert "single-channel guard" in report_html(r)
    assert "1 group(s) after it skipped by guards" in c.status.text


def test_saved_model_reloads_to_identical_outputs(r18, tmp_path):
    c = r18
    path = c.save(tmp_path / "pruned.pth")
    fresh = torchvision.models.resnet18().eval()
    pe.load_pruned(fresh, path)
    with torch.no_grad():
        torch.testing.assert_close(fresh(X64), c.model(X64), rtol=0, atol=0)
    with pytest.raises(ExplorerError, match="does not exist"):
        c.save(tmp_path / "missing" / "x.pth")
    with pytest.raises(ExplorerError, match="file name"):
        c.save(tmp_path)


def test_onnx_export_runs_in_onnxruntime_with_matching_outputs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = SmallNet().eval()
    x = torch.randn(2, 3, 16, 16)
    c = ExplorerController(model, x)
    c.accept()
    c.accept()
    res = c.export_onnx(tmp_path / "small.onnx")
    assert res.path.is_file() and res.size_bytes == res.path.stat().st_size and res.opset > 0
    assert res.inputs == [("input_0", (2, 3, 16, 16))] and res.outputs == [("output_0", (2, 10))]
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input_0": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ExplorerError, match=r"\.onnx"):
        c.export_onnx(tmp_path / "small.txt")
    with pytest.raises(ExplorerError, match="does not exist"):
        c.export_onnx(tmp_path / "nope" / "small.onnx")


def test_measure_speed_times_the_original_once_and_leaves_the_model_as_it_was(accepted_once):
    model, c, snap = accepted_once
    history = c.history
    pair = c.measure_speed(repeat=3, warmup=1)
    assert same_as(model, snap) and c.history == history  # undone, timed, replayed exactly
    assert pair.original_ms > 0 and pair.current_ms > 0 and pair.device == "cpu" and pair.repeat == 3
    assert c.latency is pair and "latency on cpu" in c.status.text
    first = c.speed.original[1]
    c.accept()
    c.measure_speed(repeat=3, warmup=1)
    assert c.speed.original[1] is first  # the original is timed once


def test_head_options_rebuild_the_pruner_and_bad_ones_change_nothing():
    torch.manual_seed(0)
    m = AttnModel().eval()
    x = torch.randn(2, 6, 8)
    c = ExplorerController(m, x, pruning_ratio=0.25, num_heads=m.heads(), ignored_layers=[m.fc])
    assert c.head_options == {"blocks": 1, "prune_num_heads": False, "prune_head_dims": True,
                              "head_pruning_ratio": 0.0}
    c.set_options(prune_num_heads=True, head_pruning_ratio=0.5)
    assert c.head_options["prune_num_heads"] and c.head_options["head_pruning_ratio"] == 0.5
    assert "new pruner options" in c.status.text
    snap = snapshot(m)
    pruner = c.pruner
    with pytest.raises(ExplorerError):
        c.set_options(head_pruning_ratio=2.0)
    assert c.head_options["head_pruning_ratio"] == 0.5 and same_as(m, snap)
    assert c.pruner_kwargs["head_pruning_ratio"] == 0.5 and c.pruner is not pruner  # rebuilt with the old options
    with pytest.raises(ExplorerError, match="set_ratio"):
        c.set_options(pruning_ratio=0.1)
    plain = ExplorerController(SmallNet(), torch.randn(1, 3, 16, 16))
    assert plain.head_options is None


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' is not installed")
def test_finish_view_in_the_app(small, tmp_path):
    from prune_explorer.explorer import Explorer

    model, x = small
    ex = Explorer(model, x)
    fv = ex.finish
    assert "3 group(s) left to decide" in fv.summary.value and fv.table.value == ""
    ex.card.accept_btn.click()
    assert fv.make_report()
    macs, params = pe.utils.count_ops_and_params(model, x)
    assert f"data-value='{params}'" in fv.table.value and "The model changed" not in fv.table.value
    orig, pruned = fv.macs_chart.fig.data  # MACs of the costliest layers, original and now
    rows = {r.name: r.macs for r in fv.report.layers if r.macs is not None}
    assert fv.macs_chart.layout.display == "" and orig.x[0] == max(a for a, _ in rows.values())
    assert all(rows[n] == (a, b) for n, a, b in zip(orig.y, orig.x, pruned.x))
    ex.card.skip_btn.click()
    ex.card.all_btn.click()  # the walk ends: the summary is made by itself
    assert "All groups decided" in fv.summary.value
    macs, params = pe.utils.count_ops_and_params(model, x)
    assert f"data-value='{params}'" in fv.table.value and "skipped by you" in fv.table.value
    fv.save_path.value = str(tmp_path / "m.pth")
    assert fv.save() and (tmp_path / "m.pth").is_file() and "saved the pruned model" in ex.controller.status.text
    fv.save_path.value = str(tmp_path / "no" / "m.pth")
    assert not fv.save() and ex.controller.status.is_error and "does not exist" in ex.controller.status.text
    payload = fv.download_script()
    assert payload["filename"] == "reproduce_pruning.py" and payload["text"] == ex.code()
    ex.card.undo_btn.click()
    assert "The model changed since this summary" in fv.table.value
