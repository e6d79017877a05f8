"""DOM probes for the explorer in a real browser (Playwright ``page.evaluate`` snippets and small waits).

Used by the browser tests and by ``scripts/screenshots.py``. Every probe takes the index of the app on the page
(the apps are ``.pe-app`` elements in cell order).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

#: the explorer's panels, checked for overflow
PANELS = (".pe-header-view", ".pe-group-card", ".pe-graph-view", ".pe-curves-view", ".pe-ignored-view", ".pe-status",
          ".pe-finish-view")

_APP = "const app = document.querySelectorAll('.pe-app')[i]; if (!app) return null;"

VISIBLE_NODES = """([i]) => { %s
  const vp = app.querySelector('.pe-gv-viewport'); if (!vp) return -1;
  const a = vp.getBoundingClientRect(); let k = 0;
  for (const n of vp.querySelectorAll('g.node')) { const b = n.getBoundingClientRect();
    if (b.width && b.right > a.left && b.left < a.right && b.bottom > a.top && b.top < a.bottom) k++; }
  return k; }""" % _APP

IN_VIEW = """([i, id]) => { %s
  const vp = app.querySelector('.pe-gv-viewport'); const n = vp && vp.querySelector(`[id="${id}"]`);
  if (!n) return {found: false};
  const a = vp.getBoundingClientRect(), b = n.getBoundingClientRect();
  return {found: true, inside: b.width > 0 && b.left >= a.left - 1 && b.right <= a.right + 1 && b.top >= a.top - 1
          && b.bottom <= a.bottom + 1, highlighted: n.classList.contains('pe-hl'),
          selected: n.classList.contains('pe-sel'), node: [b.left, b.top, b.right, b.bottom],
          viewport: [a.left, a.top, a.right, a.bottom]}; }""" % _APP

OVERFLOW = """([i, panels]) => { %s
  const out = [];
  const ar = app.getBoundingClientRect();
  const host = app.closest('.jp-OutputArea-output');
  if (host) { const h = host.getBoundingClientRect(); if (ar.right > h.right + 1) out.push(`app ends at ${ar.right}, its output area at ${h.right}`); }
  if (app.scrollWidth > app.clientWidth + 1) out.push(`the app scrolls sideways (${app.scrollWidth} > ${app.clientWidth})`);
  for (const sel of panels) {
    const p = app.querySelector(sel); if (!p) continue;
    const pr = p.getBoundingClientRect(); if (!pr.width) continue;
    if (pr.right > ar.right + 1 || pr.left < ar.left - 1) out.push(`${sel} (${pr.left}-${pr.right}) outside the app (${ar.left}-${ar.right})`);
    if (p.scrollWidth > p.clientWidth + 1) out.push(`${sel} scrolls sideways (${p.scrollWidth} > ${p.clientWidth})`);
    for (const e of p.querySelectorAll('*')) {
      if (e.closest('.pe-gv-canvas')) continue;  // the drawing is larger than its viewport on purpose
      if (e.ownerSVGElement && e.ownerSVGElement.matches('.main-svg')) continue;  // inside a chart: its svg clips
      const r = e.getBoundingClientRect(); if (!r.width || !r.height) continue;
      if (r.right > pr.right + 1 || r.left < pr.left - 1) {
        const cls = (e.className && e.className.baseVal !== undefined) ? e.className.baseVal : e.className;
        out.push(`${sel}: <${e.tagName.toLowerCase()} class="${cls}"> spans ${Math.round(r.left)}-${Math.round(r.right)}, panel ${Math.round(pr.left)}-${Math.round(pr.right)}`);
        break; }
    }
  }
  return out; }""" % _APP

CHARTS = """([i]) => { %s
  const out = [];
  for (const c of app.querySelectorAll('.pe-chart')) {
    const box = c.getBoundingClientRect(); if (!box.width) continue;  // hidden (e.g. MACs chart before a report)
    const svg = c.querySelector('.js-plotly-plot .main-svg');
    const name = c.closest('[class*="pe-"][class*="-view"], .pe-group-card');
    const where = name ? [...name.classList].find(k => k.startsWith('pe-')) : '?';
    if (!svg) { out.push(`${where}: a chart not drawn (${c.innerText.slice(0, 80)})`); continue; }
    const r = svg.getBoundingClientRect();
    if (Math.abs(r.width - box.width) > 2 || r.height < 100) out.push(`${where}: chart ${Math.round(r.width)}x${Math.round(r.height)} in a box ${Math.round(box.width)} wide`);
  }
  return out; }""" % _APP

#: number of drawn (visible) charts of app i
CHARTS_DRAWN = """([i]) => { %s return [...app.querySelectorAll('.pe-chart')].filter(c => c.getBoundingClientRect().width > 0 && c.querySelector('.main-svg')).length; }""" % _APP

HEADER_PARAMS = """([i]) => { %s const e = app.querySelector('.pe-params-now'); return e ? +e.dataset.value : null; }""" % _APP


def app(page, i: int):
    return page.locator(".pe-app").nth(i)


@contextlib.contextmanager
def explorer_page(folder: Path, name: str, cells: Sequence, *, requires: Iterable[str] = (), apps: Iterable[int] = (0,),
                  timeout: float = 300) -> Iterator:
    """The explorer tests' set-up: skip unless JupyterLab, Chromium, graphviz and the ``requires`` modules are
    there; write ``cells`` as notebook ``name`` in ``folder``; run it in a real JupyterLab page (1400x1000, a
    screenshot ``page.png`` in ``folder`` on failure; ``timeout`` seconds for the cells) and yield the page once
    the apps at the indices ``apps`` are attached (60 s default timeout for the page's own waits)."""
    from lab_driver import run_notebook_in_browser, running_lab, skip_without_lab, write_notebook

    skip_without_lab(*requires, dot=True)
    write_notebook(folder / name, cells)
    with running_lab(folder) as (url, token):
        with run_notebook_in_browser(url, token, name, screenshot_path=folder / "page.png", timeout=timeout,
                                     viewport=(1400, 1000)) as page:
            page.set_default_timeout(60_000)
            for i in apps:
                app(page, i).wait_for(state="attached", timeout=120_000)
            yield page


def wait_until(page, js: str, arg, pred, timeout: float = 60.0, what: str = "condition"):
    """Poll ``page.evaluate(js, arg)`` until ``pred(value)``; returns the value, or raises AssertionError."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(js, arg)
        if pred(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {value!r}")


def status_text(page, i: int) -> str:
    return app(page, i).locator(".pe-status").first.inner_text()


def wait_status(page, i: int, needle: str, timeout: float = 60.0) -> str:
    """Wait until the status line of app ``i`` contains ``needle``."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = status_text(page, i)
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"status never said {needle!r}; it says {text!r}")


def search(page, i: int, query: str) -> None:
    box = app(page, i).locator(".pe-layer-search input").first
    box.fill(query)
    box.press("Enter")


def click_element(page, i: int, element_id: str) -> None:
    """Click a box of the graph (scrolling the page to it; the box must be inside the graph's viewport)."""
    app(page, i).locator(f'.pe-gv-viewport [id="{element_id}"]').first.click()
