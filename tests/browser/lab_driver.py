"""Drive a real JupyterLab in a real Chromium, for end-to-end tests of notebooks and widgets.

Two pieces, usable separately:

``running_lab(notebook_dir, port=None)``
    Context manager: starts ``python -m jupyterlab`` on 127.0.0.1 with a random token and throw-away
    config / data / runtime / settings / workspace directories, waits until it answers, yields a
    :class:`LabServer` (unpacks as ``url, token``) and shuts it (and its kernels) down on exit.

``run_notebook_in_browser(url, token, notebook_path, screenshot_path=None, timeout=180)``
    Context manager: launches the system Chromium through Playwright's sync API, opens the notebook,
    accepts the kernel-selection dialog if one appears, runs all cells, waits until the kernel is idle
    and the widgets have rendered, and yields the Playwright ``Page`` so the test can query the DOM,
    click, type and take screenshots. On exit (also on failure) it saves ``screenshot_path``.

Example::

    from lab_driver import running_lab, run_notebook_in_browser, widget_problems

    with running_lab(tmp_path) as (url, token):
        with run_notebook_in_browser(url, token, "demo.ipynb", screenshot_path=tmp_path / "shot.png") as page:
            page.locator(".my-button").click()
            page.locator(".my-label").filter(has_text="clicked").wait_for()
            assert widget_problems(page) == []

Playwright's own browser download does not work on the CI machines; we always use the system
Chromium (``prune_explorer._system.find_chromium``). The JupyterLab server is started with
``--LabApp.expose_app_in_browser=True`` so the page has ``window.jupyterapp``; commands such as
``notebook:run-all-cells`` are executed through it (the same command the Run menu uses).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from pathlib import Path
from typing import Iterator

from prune_explorer._system import find_chromium

__all__ = [
    "BrowserUnavailable",
    "CHROMIUM_ARGS",
    "LabServer",
    "NotebookRunError",
    "browser_available",
    "skip_without_lab",
    "write_notebook",
    "cell_errors",
    "console_messages",
    "run_notebook_in_browser",
    "running_lab",
    "wait_for_widgets",
    "widget_problems",
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

#: Text that a widget output shows while it is not (yet) rendered, or when rendering failed.
WIDGET_PROBLEM_TEXTS = (
    "Loading widget",
    "Error displaying widget",
    "Failed to load model class",
    "Error creating view",
    "model not found",
)

# url -> root directory of every server started by running_lab in this process
_LAB_ROOTS: dict[str, Path] = {}
# page -> console messages / page errors collected while it was open
_CONSOLE: "weakref.WeakKeyDictionary[object, list[str]]" = weakref.WeakKeyDictionary()


class BrowserUnavailable(RuntimeError):
    """Chromium or Playwright is not installed; tests should ``pytest.skip`` on it."""


class NotebookRunError(AssertionError):
    """A cell raised while the notebook ran in the browser (or it did not finish in time)."""


class LabServer(tuple):
    """A running JupyterLab: unpacks as ``(url, token)``; also has ``.root_dir``, ``.log_path``,
    ``.process`` and :meth:`log` (the server's output so far)."""

    def __new__(cls, url: str, token: str, root_dir: Path, log_path: Path, process: subprocess.Popen):
        self = super().__new__(cls, (url, token))
        self.url, self.token, self.root_dir, self.log_path, self.process = url, token, root_dir, log_path, process
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def notebook_url(self, notebook_path: str | os.PathLike) -> str:
        return _notebook_url(self.url, self.token, notebook_path)


# --------------------------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_lab_settings(settings_dir: Path) -> None:
    """User settings that make a fresh JupyterLab quiet and deterministic for tests."""
    settings = {
        # no "get notified about Jupyter news?" toast, no update check
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        # render every cell (no virtual scrolling), so all outputs are in the DOM
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for rel, value in settings.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _get(url: str, token: str, timeout: float = 2.0) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (localhost only)
        return resp.status


def _stop_process(proc: subprocess.Popen, url: str, token: str) -> None:
    if proc.poll() is not None:
        return
    # 1. ask the server to shut down (it also shuts down its kernels)
    with contextlib.suppress(Exception):
        req = urllib.request.Request(
            url + "api/shutdown", method="POST", headers={"Authorization": f"token {token}"}
        )
        urllib.request.urlopen(req, timeout=5).close()  # noqa: S310
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
        return
    # 2. SIGTERM, then SIGKILL, to the server's own process group (start_new_session=True)
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


@contextlib.contextmanager
def running_lab(
    notebook_dir: str | os.PathLike,
    port: int | None = None,
    *,
    startup_timeout: float = 90.0,
    extra_args: list[str] | tuple[str, ...] = (),
) -> Iterator[LabServer]:
    """Start JupyterLab serving ``notebook_dir`` on 127.0.0.1 and yield ``LabServer`` (= ``url, token``).

    ``url`` ends with ``/`` (e.g. ``http://127.0.0.1:41234/``). Everything Jupyter writes (config,
    runtime, data, lab settings, workspaces, IPython dir) goes to a temporary directory, so user
    settings can neither leak in nor be changed. The kernel is the current interpreter's ``python3``,
    importing the same ``prune_explorer`` as this process (its source root goes first on ``PYTHONPATH``).
    With ``port=None`` a free port is chosen (and another one tried if that start fails).
    """
    root = Path(notebook_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"running_lab: notebook_dir {root} is not a directory")
    attempts = 3 if port is None else 1
    with tempfile.TemporaryDirectory(prefix="pe-lab-") as tmp:
        tmpdir = Path(tmp)
        dirs = {
            "JUPYTER_CONFIG_DIR": tmpdir / "config",
            "JUPYTER_DATA_DIR": tmpdir / "data",
            "JUPYTER_RUNTIME_DIR": tmpdir / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": tmpdir / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": tmpdir / "lab-workspaces",
            "IPYTHONDIR": tmpdir / "ipython",
        }
        for d in dirs.values():
            d.mkdir(parents=True)
        _write_lab_settings(dirs["JUPYTERLAB_SETTINGS_DIR"])
        env = dict(os.environ, **{k: str(v) for k, v in dirs.items()})
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        env.pop("JUPYTER_PATH", None)
        # kernels import the same prune_explorer as this process (a worktree, not another editable install)
        import prune_explorer

        src_root = str(Path(prune_explorer.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([src_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])

        last_error = ""
        for attempt in range(attempts):
            the_port = port if port is not None else _free_port()
            token = os.urandom(24).hex()
            url = f"http://127.0.0.1:{the_port}/"
            log_path = tmpdir / f"lab-{attempt}.log"
            cmd = [
                sys.executable, "-m", "jupyterlab",
                "--no-browser",
                "--ServerApp.open_browser=False",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={the_port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={root}",
                f"--IdentityProvider.token={token}",
                "--ServerApp.terminals_enabled=False",
                "--LabApp.expose_app_in_browser=True",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
                *extra_args,
            ]
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            server = LabServer(url, token, root, log_path, proc)
            deadline = time.monotonic() + startup_timeout
            up = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if _get(url + "api/status", token) == 200:
                        up = True
                        break
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
                time.sleep(0.2)
            if up:
                break
            last_error = server.log()[-4000:]
            _stop_process(proc, url, token)
        else:
            raise RuntimeError(
                f"JupyterLab did not start within {startup_timeout:.0f}s "
                f"({attempts} attempt(s)); last server log:\n{last_error}"
            )

        _LAB_ROOTS[url] = root
        try:
            yield server
        finally:
            _LAB_ROOTS.pop(url, None)
            _stop_process(proc, url, token)


# -------------------------------------------------------------------------------------------- browser



def skip_without_lab(*modules: str, dot: bool = False) -> None:
    """Skip the calling test unless a headless browser (:func:`browser_available`) and JupyterLab are installed,
    and every module named in ``modules`` imports; with ``dot=True`` also unless graphviz's ``dot`` is on PATH."""
    import pytest

    ok, why = browser_available()
    if not ok:
        pytest.skip(why)
    pytest.importorskip("jupyterlab")
    for name in modules:
        pytest.importorskip(name)
    if dot and shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' is not installed (apt-get install graphviz)")


def write_notebook(path, cells, *, kernelspec: bool = True) -> None:
    """Write a notebook of ``cells`` (code strings, or nbformat cells) to ``path``, with the python3 kernelspec unless
    ``kernelspec=False`` (a fresh JupyterLab then shows its "Select Kernel" dialog). Skips without nbformat."""
    import pytest

    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    if kernelspec:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    nbformat.write(nb, str(path))


def browser_available() -> tuple[bool, str]:
    """``(True, "")`` if Playwright and a Chromium binary are there, else ``(False, reason)``."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return False, f"playwright is not installed ({exc}); pip install playwright"
    if find_chromium() is None:
        return False, "no chromium binary on PATH (apt-get install chromium, or set PE_CHROMIUM)"
    return True, ""


def _notebook_url(url: str, token: str, notebook_path: str | os.PathLike) -> str:
    path = Path(notebook_path)
    if path.is_absolute():
        root = _LAB_ROOTS.get(url)
        if root is None:
            raise ValueError(
                f"{notebook_path} is absolute but {url} was not started by running_lab in this "
                "process; pass the path relative to the server's root directory"
            )
        try:
            path = path.resolve().relative_to(root)
        except ValueError:
            raise ValueError(f"{notebook_path} is not inside the server root {root}") from None
    rel = path.as_posix()
    return f"{url}lab/tree/{urllib.parse.quote(rel)}?reset&token={urllib.parse.quote(token)}"


# JS helpers, run with page.evaluate(...). `path` is the notebook's path relative to the server root.
_JS_FIND_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
}
"""

_JS_STATE = (
    "(path) => { const find = "
    + _JS_FIND_PANEL
    + """;
  const panel = find(path);
  const dialog = document.querySelector('.jp-Dialog');
  const state = {app: !!window.jupyterapp, panel: !!panel, dialog: dialog ? dialog.innerText : null,
                 kernel: null, ready: false, cells: 0, running: 0, unexecuted: 0, errors: []};
  if (!panel) return state;
  const sc = panel.sessionContext;
  state.ready = !!sc.isReady;
  state.kernel = sc.session && sc.session.kernel ? sc.session.kernel.status : null;
  panel.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    state.cells += 1;
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    if (prompt && prompt.textContent.includes('*')) state.running += 1;
    if (cell.model.executionCount === null) state.unexecuted += 1;
    for (const out of cell.model.outputs.toJSON()) {
      if (out.output_type === 'error')
        state.errors.push({cell: i, ename: out.ename, evalue: out.evalue,
                           traceback: (out.traceback || []).join('\\n')});
    }
  });
  return state;
}"""
)

_JS_RUN_ALL = (
    "async (path) => { const find = "
    + _JS_FIND_PANEL
    + """;
  const app = window.jupyterapp;
  const panel = find(path);
  app.shell.activateById(panel.id);
  await app.commands.execute('notebook:clear-all-cell-outputs');
  for (const cell of panel.content.widgets)
    if (cell.model.type === 'code') cell.model.executionCount = null;
  // do not await: long notebooks would outlive page.evaluate; completion is polled instead
  app.commands.execute('notebook:run-all-cells');
  return true;
}"""
)


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def console_messages(page) -> list[str]:
    """Browser console errors/warnings and uncaught page errors seen while the page was open."""
    return list(_CONSOLE.get(page, []))


def cell_errors(page, notebook_path: str) -> list[dict]:
    """Error outputs currently in the notebook: ``[{cell, ename, evalue, traceback}, ...]``."""
    return page.evaluate(_JS_STATE, notebook_path)["errors"]


def widget_problems(page) -> list[str]:
    """Texts of output areas that show a widget placeholder or widget error (empty list = all good)."""
    return page.evaluate(
        """(needles) => {
          const found = [];
          for (const el of document.querySelectorAll('.jp-OutputArea-output')) {
            const t = el.innerText || '';
            for (const n of needles) if (t.includes(n)) { found.push(t.slice(0, 300)); break; }
          }
          return found;
        }""",
        list(WIDGET_PROBLEM_TEXTS),
    )


def wait_for_widgets(page, timeout: float = 60.0) -> list[str]:
    """Wait until no output shows "Loading widget..."; return :func:`widget_problems` at the end."""
    deadline = time.monotonic() + timeout
    problems = widget_problems(page)
    while problems and time.monotonic() < deadline:
        if all("Loading widget" not in p for p in problems):
            break  # only hard errors left: waiting will not help
        time.sleep(0.25)
        problems = widget_problems(page)
    return problems


def _run_and_wait(page, rel_path: str, timeout: float) -> dict:
    """Open-notebook handshake + run all + wait idle. Returns the final state dict."""
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            state = page.evaluate(_JS_STATE, rel_path)
            raise NotebookRunError(f"{rel_path}: timed out after {timeout:.0f}s; last state: {state}")
        return left

    page.wait_for_function("() => !!(window.jupyterapp && window.jupyterapp.shell)", timeout=remaining() * 1000)
    page.evaluate("async () => { await window.jupyterapp.restored; }")

    # 1. wait for the notebook panel and an idle kernel, accepting any dialog on the way
    #    (a fresh JupyterLab asks "Select Kernel" when the notebook names none).
    while True:
        remaining()
        state = page.evaluate(_JS_STATE, rel_path)
        if state["dialog"] is not None:
            accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
            if accept.count():
                accept.first.click()
            else:
                page.keyboard.press("Enter")
        elif state["panel"] and state["ready"] and state["kernel"] == "idle":
            break
        time.sleep(0.2)

    # 2. run all cells, then wait until nothing runs and every code cell has run (or one failed)
    page.evaluate(_JS_RUN_ALL, rel_path)
    stable = 0
    while True:
        remaining()
        time.sleep(0.25)
        state = page.evaluate(_JS_STATE, rel_path)
        if state["dialog"] is not None:  # e.g. a kernel-restart prompt: accept and go on
            accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
            if accept.count():
                accept.first.click()
            continue
        done = (
            state["kernel"] == "idle"
            and state["running"] == 0
            and (state["unexecuted"] == 0 or state["errors"])
        )
        stable = stable + 1 if done else 0
        if stable >= 3:  # idle for ~0.75 s: no cell was still queued
            return state


@contextlib.contextmanager
def run_notebook_in_browser(
    url: str,
    token: str,
    notebook_path: str | os.PathLike,
    screenshot_path: str | os.PathLike | None = None,
    timeout: float = 180.0,
    *,
    raise_on_error: bool = True,
    viewport: tuple[int, int] = (1400, 1000),
    headless: bool = True,
) -> Iterator["object"]:
    """Open ``notebook_path`` in JupyterLab in Chromium, run all cells, and yield the Playwright page.

    ``notebook_path`` is relative to the server root (or absolute inside a root started by
    :func:`running_lab`). Waits until the kernel is idle, every code cell has run, and no widget
    still shows "Loading widget..." (at most ``timeout`` seconds in all). With ``raise_on_error``
    a cell error raises :class:`NotebookRunError` (with the traceback) before the page is yielded.
    ``screenshot_path`` is written when the block exits, whether it passed or failed.
    The page's default timeout for Playwright actions is ``timeout`` as well.

    Raises :class:`BrowserUnavailable` when Playwright or Chromium is missing.
    """
    ok, why = browser_available()
    if not ok:
        raise BrowserUnavailable(why)
    from playwright.sync_api import sync_playwright

    nb_url = _notebook_url(url, token, notebook_path)
    rel_path = urllib.parse.unquote(nb_url[len(url) + len("lab/tree/") :].split("?", 1)[0])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), headless=headless, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            page.set_default_timeout(timeout * 1000)
            messages: list[str] = []
            _CONSOLE[page] = messages
            page.on(
                "console",
                lambda m: messages.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            try:
                start = time.monotonic()
                page.goto(nb_url, wait_until="domcontentloaded")
                state = _run_and_wait(page, rel_path, timeout)
                if raise_on_error and state["errors"]:
                    err = state["errors"][0]
                    raise NotebookRunError(
                        f"{rel_path}: cell {err['cell']} raised {err['ename']}: {err['evalue']}\n"
                        + _strip_ansi(err["traceback"])
                    )
                wait_for_widgets(page, max(1.0, timeout - (time.monotonic() - start)))
                yield page
            finally:
                if screenshot_path is not None:
                    with contextlib.suppress(Exception):
                        Path(screenshot_path).parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(screenshot_path), full_page=True)
        finally:
            browser.close()
