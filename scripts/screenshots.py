"""Refresh the explorer screenshots shown in the README (the only thing that writes them; tests never do).

    python scripts/screenshots.py                      # assets/explorer_{resnet18,densenet121}_{open,midway,finished}.png
    python scripts/screenshots.py --models resnet18 --out /tmp/shots --width 1600

Starts a throw-away JupyterLab, runs a notebook that builds one explorer per model (torchvision, random weights),
and drives each app in headless Chromium as a user would: the app as it opens; mid-way (a few groups accepted,
one skipped, one adjusted, the uniform sweep drawn, a layer found with the search box); and finished (every
group decided). Needs Playwright, Chromium and Graphviz, like the browser tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from explorer_probes import CHARTS, CHARTS_DRAWN, HEADER_PARAMS, app, search, wait_status, wait_until  # noqa: E402
from lab_driver import browser_available, run_notebook_in_browser, running_lab  # noqa: E402

SETUP = """\
import torch, torchvision
import prune_explorer as pe
torch.manual_seed(0)
x = torch.randn(1, 3, 224, 224)
"""
CELL = """\
ex_{name} = pe.Explorer(torchvision.models.{name}().eval(), x, pruning_ratio=0.5)  # random weights
ex_{name}
"""
#: the header's output-change line shows a measured figure (not "measuring...")
OUTPUT_MEASURED = """([i]) => { const a = document.querySelectorAll('.pe-app')[i]; if (!a) return null;
  return !!a.querySelector('.pe-output-line') && !a.querySelector('.pe-output-pending'); }"""
#: what the mid-way screenshot searches for
SEARCH = {"resnet18": "layer3.1.conv1", "densenet121": "features.denseblock2.denselayer3.conv1"}


def _notebook(path: Path, models) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(CELL.format(name=m)) for m in models]
    nbformat.write(nb, str(path))


def _shoot(page, i: int, path: Path, width: int) -> None:
    """Screenshot the whole app ``i`` (the window is made tall enough to hold it)."""
    a = app(page, i)
    height = a.evaluate("e => e.getBoundingClientRect().height")
    page.set_viewport_size({"width": width, "height": int(height) + 260})
    time.sleep(0.8)
    a.scroll_into_view_if_needed()
    wait_until(page, CHARTS, [i], lambda v: v == [], timeout=30, what="every chart drawn at its box width")
    time.sleep(0.4)
    a.screenshot(path=str(path))
    print(f"  wrote {path} ({path.stat().st_size // 1024} KB)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "densenet121"])
    ap.add_argument("--out", type=Path, default=ROOT / "assets")
    ap.add_argument("--width", type=int, default=1500, help="browser window width in px")
    args = ap.parse_args(argv)
    ok, why = browser_available()
    if not ok:
        print(f"cannot take screenshots: {why}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pe-shots-") as tmp:
        _notebook(Path(tmp) / "explorer.ipynb", args.models)
        with running_lab(tmp) as (url, token):
            with run_notebook_in_browser(url, token, "explorer.ipynb", timeout=600,
                                         viewport=(args.width, 1000)) as page:
                page.set_default_timeout(120_000)
                for i, name in enumerate(args.models):
                    print(f"{name}:")
                    a = app(page, i)
                    a.locator(".pe-gv-viewport svg").first.wait_for(state="attached")
                    wait_until(page, CHARTS_DRAWN, [i], lambda v: v >= 2, what="the charts drawn")
                    _shoot(page, i, args.out / f"explorer_{name}_open.png", args.width)
                    # mid-way: accept two groups, skip one, adjust one, accept it; sweep; search
                    p0 = page.evaluate(HEADER_PARAMS, [i])
                    a.locator("button.pe-accept").first.click()
                    wait_until(page, HEADER_PARAMS, [i], lambda v: v != p0, what="accept")
                    a.locator("button.pe-skip").first.click()
                    wait_status(page, i, "skipped")
                    p1 = page.evaluate(HEADER_PARAMS, [i])
                    a.locator("button.pe-accept").first.click()
                    wait_until(page, HEADER_PARAMS, [i], lambda v: v != p1, what="accept")
                    a.locator(".pe-pick input").first.fill("0-7")
                    a.locator(".pe-pick input").first.press("Enter")
                    time.sleep(1.0)
                    a.locator("button.pe-sweep").first.click()
                    a.locator(".pe-curves-view", has_text="uniform p = 0.5 removes").first.wait_for()
                    search(page, i, SEARCH.get(name, "conv"))
                    wait_status(page, i, "found")
                    wait_until(page, OUTPUT_MEASURED, [i], lambda v: v is True, what="the output change measured")
                    time.sleep(1.0)
                    _shoot(page, i, args.out / f"explorer_{name}_midway.png", args.width)
                    # finished
                    a.locator("button.pe-accept-all").first.click()
                    wait_status(page, i, "all groups decided", timeout=300)
                    a.locator(".pe-finish-view .pe-total-params").first.wait_for()
                    a.locator(".pe-finish-macs .main-svg").first.wait_for()
                    time.sleep(1.0)
                    _shoot(page, i, args.out / f"explorer_{name}_finished.png", args.width)
                    page.set_viewport_size({"width": args.width, "height": 1000})
    return 0


if __name__ == "__main__":
    sys.exit(main())
