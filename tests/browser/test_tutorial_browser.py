"""Tutorial 01 run with Run All in a real JupyterLab (headless Chromium): when the kernel is idle, the app the
reader is meant to click (``ex``) still shows its first group, undecided: the group card with its buttons
enabled, not "All groups decided" (the scripted walk-through drives a second explorer). A click on Accept then
works. The notebook is copied to a temporary folder first (tests never write tracked files)."""

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_probes import HEADER_PARAMS, app, wait_status, wait_until  # noqa: E402
from lab_driver import console_messages, run_notebook_in_browser, running_lab, skip_without_lab  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = next((Path(__file__).resolve().parents[2] / "notebooks").glob("01_*.ipynb"))

#: what the first app's card shows: done text visible?, accept enabled?, card title
CARD = """([i]) => { const app = document.querySelectorAll('.pe-app')[i]; if (!app) return null;
  const card = app.querySelector('.pe-group-card'); if (!card) return null;
  const done = card.querySelector('.pe-card-done'); const title = card.querySelector('.pe-card-title');
  const accept = card.querySelector('button.pe-accept');
  return {done: done && done.offsetParent !== null ? done.innerText : '',
          title: title && title.offsetParent !== null ? title.innerText : '',
          accept: !!accept && !accept.disabled, app: app.innerText.includes('All groups decided')}; }"""


def test_quick_start_leaves_the_app_undecided_after_run_all(tmp_path):
    skip_without_lab()
    pytest.importorskip("torchvision")
    if shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' is not installed (apt-get install graphviz)")
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    with running_lab(tmp_path) as (url, token):
        with run_notebook_in_browser(url, token, NOTEBOOK.name, screenshot_path=tmp_path / "page.png", timeout=480,
                                     viewport=(1400, 1000)) as page:
            page.set_default_timeout(60_000)
            assert page.locator(".pe-app").count() == 1  # the one app of the tutorial: `ex`
            a = app(page, 0)
            a.scroll_into_view_if_needed()
            card = wait_until(page, CARD, [0], lambda v: v and v["title"], what="the group card of the app")
            assert card["done"] == "" and not card["app"], card  # not "All groups decided"
            assert card["accept"], card
            assert "Group 1 of" in card["title"] and "conv1" in card["title"], card
            assert a.locator("button.pe-skip").first.is_enabled()
            assert not a.locator("button.pe-undo").first.is_enabled()  # nothing accepted in it yet
            # the text the tutorial shows next ("What you see: the group card...") matches: the reader can click
            p0 = page.evaluate(HEADER_PARAMS, [0])
            a.locator("button.pe-accept").first.click()
            wait_status(page, 0, "accepted conv1")
            assert wait_until(page, HEADER_PARAMS, [0], lambda v: v != p0, what="the header after Accept") < p0
            assert [m for m in console_messages(page) if m.startswith("pageerror")] == []
