"""Re-run the tutorial notebooks and save their outputs clean (what nbval compares against).

    python scripts/refresh_notebooks.py                    # every notebooks/*.ipynb
    python scripts/refresh_notebooks.py notebooks/01_quick_start.ipynb --no-execute

For each notebook:

1. ``# NBVAL_IGNORE_OUTPUT`` / ``# NBVAL_SKIP`` / ``# NBVAL_RAISES_EXCEPTION`` comment lines become the
   equivalent nbval cell tags (``nbval-ignore-output``...), so the code a reader sees has no test markers;
2. the notebook runs top to bottom in a fresh kernel (this checkout's ``prune_explorer``);
3. outputs are saved without widget state: a widget output keeps only its text form (the explorer's is a
   readable one-line summary), so a notebook opened before running shows no raw widget repr and no
   "model not found" error; empty leftovers (a finished progress display) and execution timestamps are dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MARKERS = {"# NBVAL_IGNORE_OUTPUT": "nbval-ignore-output", "# NBVAL_SKIP": "nbval-skip",
           "# NBVAL_RAISES_EXCEPTION": "nbval-raises-exception", "# NBVAL_CHECK_OUTPUT": "nbval-check-output"}


def markers_to_tags(nb) -> int:
    """Move nbval marker comments into cell tags. Returns how many cells changed."""
    changed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n")
        tags = list(cell.metadata.get("tags", []))
        kept = []
        for line in lines:
            tag = MARKERS.get(line.strip())
            if tag is not None:
                if tag not in tags:
                    tags.append(tag)
                continue
            kept.append(line)
        if len(kept) != len(lines):
            cell.source = "\n".join(kept)
            cell.metadata["tags"] = tags
            changed += 1
    return changed


def clean_outputs(nb) -> None:
    """Widget outputs keep their text form only; empty outputs and execution timestamps go."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data is not None:
                data.pop(WIDGET_VIEW, None)
                if not any(str(v).strip() for v in data.values()):
                    continue  # nothing a reader would see
            outputs.append(out)
        cell.outputs = outputs


def execute(nb, path: Path, timeout: int) -> None:
    from nbclient import NotebookClient

    env_path = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    os.environ["PYTHONPATH"] = env_path  # the kernel imports this checkout's prune_explorer
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()


def main(argv=None) -> int:
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--no-execute", action="store_true", help="only move markers to tags and clean the outputs")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        n = markers_to_tags(nb)
        if not args.no_execute:
            execute(nb, path, args.timeout)
        clean_outputs(nb)
        nbformat.write(nb, str(path))
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {n} marker(s) moved to tags"
              + ("" if args.no_execute else ", executed") + ", outputs cleaned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
