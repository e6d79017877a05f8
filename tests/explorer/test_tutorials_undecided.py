"""Tutorials 01-06 leave the app a reader clicks undecided after Run All: the scripted walk-through drives a second
explorer (or copy), never the app's own controller."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("0[1-6]_*.ipynb"))

#: the actions that change a walk
_ACTIONS = r"(accept|skip|undo|adjust|accept_all_remaining|restart_walk|rewalk|set_ratio|ignore|set_ignored|set_options|apply_counts)\("


def _code(cell: str) -> str:
    return "\n".join(line.split("#")[0] for line in cell.splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_app_is_left_undecided_after_run_all(path):
    cells = [_code("".join(c["source"])) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    apps = [i for i, s in enumerate(cells) if re.search(r"\bex = pe\.Explorer\(", s)]
    for i in apps:
        later = "\n".join(cells[i + 1:])
        names = ["ex", r"ex\.controller"] + re.findall(r"\b(\w+) = ex\.controller\b", later)
        drives = re.compile(r"\b(" + "|".join(names) + r")\." + _ACTIONS)
        assert not drives.search(later), f"{path.name}: a later cell drives the app: {drives.search(later).group(0)}"
