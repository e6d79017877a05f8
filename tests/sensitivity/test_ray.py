"""The Ray executor: the same table as local worker processes (on a local Ray instance with 2 CPUs)."""

import os
import sys

import pytest

import prune_explorer as pe
from prune_explorer.sensitivity import RayExecutor, SensitivityError
from sens_helpers import RATIOS, NegMSE, assert_unchanged, returns_string, snapshot

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OPTS = dict(ignored_layers=["fc"], round_to=4, max_pruning_ratio=0.75, progress=False)


def test_missing_ray_names_the_extra(tiny, monkeypatch):
    model, x, batch, ref = tiny
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    snap = snapshot(model)
    with pytest.raises(pe.MissingDependencyError, match=r"pip install prune_explorer\[ray\]"):
        pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=(0.5,), executor="ray", **OPTS)
    assert_unchanged(model, snap)


def _start_ray(ray, attempts: int = 4):
    """A local Ray node with 1 CPU (the two actors below take half a CPU each: a 2-core CI box keeps a core for
    the rest), no dashboard, whose workers import this repository's prune_explorer and the test helpers.

    Ray gives its raylet a fixed 30 s to register with the GCS (not configurable); on a saturated machine that can
    run out, so the start is retried: up to ``attempts`` x 30 s in all. A node that still cannot start fails the
    test with Ray's reason; the test is skipped only when Ray is not installed."""
    errors = []
    for _ in range(attempts):
        try:
            ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([REPO, HERE])}})
            return
        except Exception as exc:  # Ray raises a bare Exception when its node times out during start-up
            ray.shutdown()
            errors.append(f"{type(exc).__name__}: {exc}")
    pytest.fail(f"Ray could not start a local node in {attempts} attempts of 30 s (machine overloaded?): {errors[-1]}")


@pytest.mark.slow  # starting Ray takes 10-30 s
def test_ray_and_local_processes_give_identical_tables(tiny):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install prune_explorer[ray])")
    model, x, batch, ref = tiny
    snap = snapshot(model)
    local = pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=RATIOS, executor="local", workers=2, **OPTS)
    _start_ray(ray)
    try:
        two_actors = RayExecutor(workers=2, num_cpus_per_worker=0.5, threads_per_worker=1)
        remote = pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=RATIOS, executor=two_actors, **OPTS)
        assert remote.stats["executor"] == "ray" and remote.stats["workers"] == 2
        assert remote == local
        with pytest.raises(SensitivityError, match="eval_fn returned str 'high'"):  # from whichever point ends first
            pe.sensitivity.scan(model, x, returns_string, ratios=(0.5,), executor="ray", **OPTS)
    finally:
        ray.shutdown()
    assert_unchanged(model, snap)
