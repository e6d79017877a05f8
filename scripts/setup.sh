#!/usr/bin/env bash
# One-shot, idempotent set-up of everything prune_explorer needs on a fresh Debian machine:
#   1. system programs: graphviz (`dot`, used to lay out the dependency graph), and for the tests chromium
#      (used only by the real-browser tests), via apt-get when we are root;
#   2. a virtualenv in .venv (python3 >= 3.10);
#   3. pip install -e with the extras of the job, skipped when a hash stamp in .venv shows pyproject.toml
#      unchanged since the last successful install of those extras:
#        bash scripts/setup.sh        the explorer: ".[lab,timm,hf,onnx]" (what scripts/run.sh needs: JupyterLab and
#                                     the optional model libraries of the tutorials; no AGPL package)
#        bash scripts/setup.sh test   everything the tests need: ".[all]" (adds pytest, ray and the AGPL-3.0
#                                     ultralytics of the YOLO tests; what scripts/test.sh installs)
# Safe to run again and again; the second run takes well under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { echo "[setup] $*"; }

JOB="${1:-app}"
case "$JOB" in
    app) EXTRAS="lab,timm,hf,onnx" ;;
    test) EXTRAS="all" ;;
    *) echo "[setup] error: unknown job '$JOB' (use: bash scripts/setup.sh [app|test])" >&2; exit 1 ;;
esac

have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
        || command -v google-chrome >/dev/null 2>&1 || command -v google-chrome-stable >/dev/null 2>&1
}

# ---------------------------------------------------------------- 1. system packages
if command -v dot >/dev/null 2>&1 && { [ "$JOB" != "test" ] || have_chromium; }; then
    say "system: graphviz (dot) and chromium present"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    APT_PKGS=(graphviz)
    [ "$JOB" = "test" ] && APT_PKGS+=(chromium)
    say "system: installing ${APT_PKGS[*]} with apt-get"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PKGS[@]}"; }; then
        say "note: apt-get install failed; continuing without it (graph view needs 'dot', browser tests need chromium)"
    fi
else
    command -v dot >/dev/null 2>&1 \
        || say "note: graphviz 'dot' not found and cannot apt-get (not root / no apt): install graphviz (apt-get install graphviz | brew install graphviz | conda install -c conda-forge graphviz)"
    [ "$JOB" != "test" ] || have_chromium \
        || say "note: chromium not found and cannot apt-get: the real-browser tests will be skipped"
fi

# ---------------------------------------------------------------- 2. virtualenv
PY="$ROOT/.venv/bin/python"
if [ ! -x "$PY" ]; then
    BASE_PY="${PYTHON:-python3}"
    if ! "$BASE_PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "[setup] error: $BASE_PY is missing or older than 3.10; set PYTHON=/path/to/python3.10+" >&2
        exit 1
    fi
    say "venv: creating .venv with $("$BASE_PY" --version 2>&1)"
    "$BASE_PY" -m venv "$ROOT/.venv"
else
    say "venv: .venv exists ($("$PY" --version 2>&1))"
fi

# ---------------------------------------------------------------- 3. pip install -e .[extras]
STAMP="$ROOT/.venv/.prune_explorer_install.$JOB.sha256"
WANT="$( { cat pyproject.toml; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
   && "$PY" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("prune_explorer") is None)' 2>/dev/null; then
    say "pip: up to date (pyproject.toml unchanged since last install)"
else
    say "pip: installing -e .[$EXTRAS] (first run downloads torch etc.; takes a few minutes; log: .venv/pip-install.log)"
    # PIP_FIND_LINKS is blanked on purpose: some machines point it (and /etc/pip.conf) at a local
    # CPU-only torch wheel, and torchvision from the registry then fails at import with
    # "operator torchvision::nms does not exist". NB: an *empty* PIP_FIND_LINKS is ignored by pip
    # (pip.conf's find-links still applies); a single space overrides it with an empty list.
    LOG="$ROOT/.venv/pip-install.log"
    if ! { PIP_FIND_LINKS=" " "$PY" -m pip install --upgrade pip \
           && PIP_FIND_LINKS=" " "$PY" -m pip install -e ".[$EXTRAS]"; } >"$LOG" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -n 30 >&2
        echo "[setup] error: pip install failed (full log: $LOG)" >&2
        exit 1
    fi
    echo "$WANT" > "$STAMP"
    say "pip: done"
fi
