"""Tutorials run with Run All in a real JupyterLab (headless Chromium): 01 (ResNet-18) and 06 (a Llama, whole
heads). When the kernel is idle, the app the reader is meant to click (``ex``) still shows its first group,
undecided: the group card with its buttons enabled, not "All groups decided" (the scripted walk-through drives a
second explorer). A click on Accept then works. One JupyterLab for the module, serving copies of the notebooks in a
temporary folder (tests never write tracked files)."""

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_probes import HEADER_PARAMS, app, wait_status, wait_until  # noqa: E402
from lab_driver import console_messages, run_notebook_in_browser, running_lab, skip_without_lab  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: notebook -> the root layer of the first group its app shows
TUTORIALS = {"01_quick_start.ipynb": "conv1", "06_llama_heads_and_plans.ipynb": "model.layers.0.self_attn.q_proj"}

#: what the first app's card shows: done text visible?, accept enabled?, card title
CARD = """([i]) => { const app = document.querySelectorAll('.pe-app')[i]; if (!app) return null;
  const card = app.querySelector('.pe-group-card'); if (!card) return null;
  const done = card.querySelector('.pe-card-done'); const title = card.querySelector('.pe-card-title');
  const accept = card.querySelector('button.pe-accept');
  return {done: done && done.offsetParent !== null ? done.innerText : '',
          title: title && title.offsetParent !== null ? title.innerText : '',
          accept: !!accept && !accept.disabled, app: app.innerText.includes('All groups decided')}; }"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    skip_without_lab("torchvision", "transformers", dot=True)
    tmp = tmp_path_factory.mktemp("tutorials")
    for name in TUTORIALS:
        shutil.copy(_NOTEBOOKS / name, tmp / name)
    with running_lab(tmp) as server:
        yield server


@pytest.mark.parametrize("name", list(TUTORIALS))
def test_the_tutorial_leaves_its_app_undecided_after_run_all(lab, name):
    url, token = lab
    root = TUTORIALS[name]
    with run_notebook_in_browser(url, token, name, screenshot_path=lab.root_dir / f"{name}.png", timeout=480,
                                 viewport=(1400, 1000)) as page:
        page.set_default_timeout(60_000)
        assert page.locator(".pe-app").count() == 1  # the one app of the tutorial: `ex`
        a = app(page, 0)
        a.scroll_into_view_if_needed()
        card = wait_until(page, CARD, [0], lambda v: v and v["title"], what="the group card of the app")
        assert card["done"] == "" and not card["app"], card  # not "All groups decided"
        assert card["accept"], card
        assert "Group 1 of" in card["title"] and root in card["title"], card
        assert a.locator("button.pe-skip").first.is_enabled()
        assert not a.locator("button.pe-undo").first.is_enabled()  # nothing accepted in it yet
        # the text the tutorial shows next ("What you see: the group card...") matches: the reader can click
        p0 = page.evaluate(HEADER_PARAMS, [0])
        a.locator("button.pe-accept").first.click()
        wait_status(page, 0, f"accepted {root}")
        assert wait_until(page, HEADER_PARAMS, [0], lambda v: v != p0, what="the header after Accept") < p0
        assert [m for m in console_messages(page) if m.startswith("pageerror")] == []
