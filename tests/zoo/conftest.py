"""Model zoo of issues 13 / 14 (timm, transformers, ultralytics YOLO): shared fixtures and a summary of the
fraction of parameters each model keeps.

``pruned`` (module scope, parametrized indirectly with a case name of :data:`zoo_models.CASES`) builds the case
with random weights and prunes it once with the issue's recipe; every test of that module and case shares the
result. Importing :mod:`zoo_models` sets the offline environment (``HF_HUB_OFFLINE``, ``YOLO_OFFLINE``, ...)
before any of the three libraries is imported.
"""

from __future__ import annotations

import pytest
import torch

import zoo_models as Z

_KEPT = {}  # nodeid -> (params before, params after)


def library_or_skip(case: Z.ZooCase):
    """Import the case's library, or skip the test when it is not installed (optional extras timm / hf / yolo).
    ultralytics is imported through :func:`zoo_models.ultralytics_offline` (private settings folder, sync off)."""
    if case.library == "ultralytics" and Z.has_library("ultralytics"):
        return Z.ultralytics_offline()
    return pytest.importorskip(case.library)


@pytest.fixture(scope="module")
def pruned(request) -> Z.PruneOutcome:
    """The case named by the parameter, pruned once per module with ``MagnitudePruner`` / L2 at ratio 0.5."""
    case = Z.CASES[request.param]
    library_or_skip(case)
    torch.manual_seed(0)
    return Z.prune_case(case)


@pytest.fixture
def record_kept(record_property):
    """``record_kept(outcome)``: record the parameter counts and the fraction kept (shown in the summary at the end
    of the run and in ``--junitxml`` reports; not asserted yet)."""

    def record(out: Z.PruneOutcome):
        record_property("params_before", out.params_before)
        record_property("params_after", out.params_after)
        record_property("kept", round(out.kept, 4))

    return record


def pytest_runtest_logreport(report):
    if report.when != "call":
        return
    props = dict(report.user_properties)
    if "kept" in props:
        _KEPT[report.nodeid] = (props["params_before"], props["params_after"])


def pytest_terminal_summary(terminalreporter):
    if not _KEPT:
        return
    tr = terminalreporter
    tr.section("zoo: fraction of parameters kept at pruning_ratio=0.5 (recorded, not asserted)")
    for nodeid, (before, after) in sorted(_KEPT.items()):
        tr.write_line(f"{before / 1e6:9.3f}M -> {after / 1e6:9.3f}M  kept {after / before:6.3f}  {nodeid}")
