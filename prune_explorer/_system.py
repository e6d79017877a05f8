"""Checks for the system programs prune_explorer uses outside Python.

- Graphviz's ``dot`` lays out the dependency-graph view (:func:`require_dot`).
- A Chromium/Chrome binary runs the real-browser tests (:func:`find_chromium`).
"""

from __future__ import annotations

import os
import shutil

from .errors import MissingDependencyError

__all__ = ["require_dot", "find_chromium"]

_DOT_FIX = (
    "Graphviz's 'dot' program was not found on PATH; the graph view needs it to lay out the "
    "dependency graph. Install Graphviz: 'apt-get install graphviz' (Debian/Ubuntu), "
    "'brew install graphviz' (macOS) or 'conda install -c conda-forge graphviz', "
    "then restart the kernel. (The 'graphviz' Python package alone is not enough.)"
)

_CHROMIUM_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)

_CHROMIUM_PATHS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)


def require_dot() -> str:
    """Return the path of Graphviz's ``dot`` executable.

    Raises:
        MissingDependencyError: if ``dot`` is not on ``PATH``; the message says how to install it.
    """
    path = shutil.which("dot")
    if path is None:
        raise MissingDependencyError(_DOT_FIX)
    return path


def find_chromium() -> str | None:
    """Return the path of a Chromium (or Chrome) executable, or ``None`` if there is none.

    ``$PE_CHROMIUM`` wins when it names an executable file; then ``chromium`` and its usual
    aliases on ``PATH``; then the standard macOS application paths.
    """
    override = os.environ.get("PE_CHROMIUM")
    if override and os.path.isfile(override) and os.access(override, os.X_OK):
        return override
    for name in _CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    for path in _CHROMIUM_PATHS:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None
