"""Every status and error text the controller produces: no terminal escape codes, no internal function names, and
each error says what to do next (driven through every action and every refusal the controller has)."""

import re

import pytest
import torch
import torch.nn as nn

from small_models import SmallNet
from prune_explorer.explorer import ExplorerController, ExplorerError
from prune_explorer.explorer.status import Status, clean_text

_ANSI = re.compile(r"\x1b|\[\d{1,3}(;\d{1,3})*m")
_INTERNAL = re.compile(r"\b(_[a-z]\w*|count_ops_and_params|build_dependency|measure_model|build_pruner)\b|Traceback")
_NEXT_STEP = re.compile(
    r"\b(use|pass|give|choose|undo|type|check|create|call|try|set|click|solve|declare|write|run|install|skip|"
    r"restart|did you mean|e\.g\.|allowed|nearest valid|at most|save)\b", re.I)


def _check(text: str, error: bool) -> None:
    assert text and not _ANSI.search(text), text
    assert not _INTERNAL.search(text), text
    if error:
        assert _NEXT_STEP.search(text), f"does not say what to do next: {text}"


class _Unexportable(nn.Module):
    """A conv pair whose forward uses an op the ONNX exporter cannot translate (complex eigenvalues)."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 4)

    def forward(self, x):
        y = self.c2(self.c1(x))
        return self.fc(y.mean((2, 3))) + torch.linalg.eigvals(y[:, :2, :2, :2].flatten(0, 1)).real.sum()


def test_every_status_and_error_text_is_clean_and_says_what_to_do(tmp_path):
    torch.manual_seed(0)
    c = ExplorerController(SmallNet().eval(), torch.randn(2, 3, 16, 16))
    texts = []
    c.subscribe(lambda event: texts.append((event, c.status.text, c.status.is_error)))
    texts.append(("build", c.status.text, False))
    actions = [
        lambda: c.adjust(n=c.allowed_counts()[1]), lambda: c.use_proposal(), lambda: c.accept(), lambda: c.skip(),
        lambda: c.undo(), lambda: c.sweep(), lambda: c.ignore("conv2"), lambda: c.ignore("conv2", False),
        lambda: c.set_ratio(0.3), lambda: c.set_options(round_to=2), lambda: c.set_output_tracking(False),
        lambda: c.set_output_tracking(True), lambda: c.accept(), lambda: c.rewalk(), lambda: c.accept_all_remaining(),
        lambda: c.restart_walk(), lambda: c.measure_speed(repeat=3, warmup=1),
    ]
    for act in actions:
        act()
    refusals = [
        lambda: c.adjust(n=10_000), lambda: c.adjust(idxs="3-1"), lambda: c.adjust(idxs="a, b"),
        lambda: c.adjust(idxs=[99_999]), lambda: c.adjust(n=1, idxs=[1]), lambda: c.ignore("layer9"),
        lambda: c.ignore(nn.Linear(2, 2)), lambda: c.set_ratio(1.5), lambda: c.set_options(pruning_ratio=0.2),
        lambda: c.set_options(no_such_option=1), lambda: c.save(tmp_path / "missing" / "m.pth"), lambda: c.save(tmp_path),
        lambda: c.export_onnx(tmp_path / "m.txt"), lambda: c.undo_since(0) or c.undo(),
    ]
    for act in refusals:
        with pytest.raises(ExplorerError) as info:
            act()
        c.fail(info.value)
    c.accept_all_remaining()
    for act in (lambda: c.accept(), lambda: c.skip(), lambda: c.adjust(n=1)):
        with pytest.raises(ExplorerError) as info:
            act()
        c.fail(info.value)
    events = {e for e, _, _ in texts}
    assert {"build", "accept", "skip", "adjust", "undo", "sweep", "ignore", "ratio", "options", "output", "rewalk",
            "accept_all", "restart", "speed", "status"} <= events
    assert sum(err for _, _, err in texts) == len(refusals) + 3
    for _, text, error in texts:
        _check(text, error)


def test_cannot_start_and_onnx_failures_are_clean_and_say_whose_limit_it_is(tmp_path):
    pytest.importorskip("onnxscript")
    with pytest.raises(ExplorerError) as info:
        ExplorerController(SmallNet().eval(), torch.randn(1, 5, 16, 16))  # wrong channel count
    _check(str(info.value), error=True)
    assert str(info.value).count("cannot start") == 0 and "forward_fn" in str(info.value)
    torch.manual_seed(0)
    c = ExplorerController(_Unexportable(), torch.randn(1, 3, 8, 8))
    c.accept()
    with pytest.raises(ExplorerError) as info:
        c.export_onnx(tmp_path / "m.onnx")
    c.fail(info.value)
    assert "unpruned model fails the same way" in c.status.text and "opset" in c.status.text
    # the exporter's root cause (the op it cannot translate), not its advice to PyTorch developers
    assert "linalg_eig" in c.status.text and "Next steps" not in c.status.text and "PyTorch" not in c.status.text
    _check(c.status.text, error=True)
    assert not list(tmp_path.iterdir())  # nothing left behind, original export included


def test_clean_text_strips_terminal_codes_and_pictographs():
    raw = "\x1b[96mtorch.onnx\x1b[0m ❌ failed [1mbadly[0m\nnext line"
    assert clean_text(raw) == "torch.onnx failed badly next line"
    assert Status.error(RuntimeError(raw)).text == "torch.onnx failed badly next line"


def test_blocked_walk_plan_and_verify_texts_are_clean_and_say_what_to_do():
    """The texts not reached by the walk above: an importance that cannot score (no gradients), deciding every group
    from counts (a plan), and Verify script without a way to build the model."""
    import prune_explorer as pe

    torch.manual_seed(0)
    model, x = SmallNet().eval(), torch.randn(2, 3, 16, 16)
    c = ExplorerController(model, x, importance=pe.importance.TaylorImportance())
    assert c.current is None and c.blocked
    _check(c.status.text, error=True)  # how to give it gradients, then Restart walk
    texts = [c.status.text]
    c.subscribe(lambda event: texts.append(c.status.text))
    model(x).sum().backward()
    c.restart_walk()
    assert c.current is not None
    c.apply_counts(lambda: 2)
    with pytest.raises(ExplorerError) as info:
        c.verify_script()  # no model_fn: the script cannot build the model
    c.fail(info.value)
    _check(c.status.text, error=True)
    assert "model_fn" in c.status.text
    assert len(texts) >= 3
    for text in texts:
        _check(text, error=False)


def _build_small():
    torch.manual_seed(0)
    return SmallNet()


@pytest.mark.slow
def test_the_apps_own_messages_are_clean_and_errors_say_what_to_do(tmp_path):
    """What the app's views put on the status line (Save, Save plan, Export ONNX, Download and Verify script,
    a search, hand-picked channels, shortcuts), the refusals among them, through the same checks."""
    pytest.importorskip("onnxscript")
    import prune_explorer as pe

    torch.manual_seed(0)
    ex = pe.Explorer(SmallNet().eval(), torch.randn(1, 3, 16, 16), model_fn=_build_small)
    c = ex.controller
    seen = []

    def record(error):
        seen.append((c.status.text, error))
        assert c.status.is_error == error, c.status.text

    ex.card.accept_btn.click()
    record(False)
    ex.card.pick.value = ""
    ex.card._on_pick()  # "Use these" with an empty box
    record(True)
    ex.graph.find("conv2")
    record(False)
    ex.graph.find("no_such_layer")
    record(True)
    assert not ex.shortcut("bogus")
    record(True)
    for box, run, path, ok in (
        (ex.finish.save_path, ex.finish.save, tmp_path / "m.pth", True),
        (ex.finish.save_path, ex.finish.save, tmp_path / "missing" / "m.pth", False),
        (ex.finish.plan_path, ex.finish.save_plan, tmp_path / "plan.json", True),
        (ex.finish.onnx_path, ex.finish.export_onnx, tmp_path / "m.onnx", True),
        (ex.finish.onnx_path, ex.finish.export_onnx, tmp_path / "m.txt", False),
    ):
        box.value = str(path)
        assert run() == ok, c.status.text
        record(not ok)
    ex.finish.download_script()
    record(False)
    ex.finish.verify_script()
    record(False)
    assert "reproduces this model" in c.status.text
    for text, error in seen:
        _check(text, error)
