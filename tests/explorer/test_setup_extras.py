"""scripts/setup.sh: the explorer's job (what scripts/run.sh installs) has no AGPL package; the tests' job has all."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _job_extras() -> dict:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    return dict(re.findall(r"^\s*(\w+)\) EXTRAS=\"([^\"]+)\"", text, flags=re.M))


def _requirements(extras: str) -> set:
    """Every requirement name the extras pull in (self-references such as prune_explorer[lab] expanded)."""
    opt = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    todo, seen, names = extras.split(","), set(), set()
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        for req in opt[e]:
            m = re.match(r"prune_explorer\[([^\]]+)\]", req)
            if m:
                todo.extend(m.group(1).split(","))
            else:
                names.add(re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower())
    return names


def test_run_sh_installs_no_agpl_package_and_test_sh_installs_yolo():
    jobs = _job_extras()
    assert set(jobs) == {"app", "test"}
    app, test = _requirements(jobs["app"]), _requirements(jobs["test"])
    assert "ultralytics" not in app and "jupyterlab" in app and "transformers" in app
    assert "ultralytics" in test and "pytest" in test and app <= test
    assert re.search(r"^bash scripts/setup.sh\s*$", (ROOT / "scripts" / "run.sh").read_text(), flags=re.M)
    assert "bash scripts/setup.sh test" in (ROOT / "scripts" / "test.sh").read_text()
