#!/usr/bin/env bash
# Install the explorer (scripts/setup.sh: ".[lab,timm,hf,onnx]"; no test-only packages such as the AGPL-3.0
# ultralytics), then
#   bash scripts/run.sh               start JupyterLab on notebooks/ (the explorer tutorials) and print its URL
#   bash scripts/run.sh --headless    no browser, no server: run `python -m prune_explorer.demo`
# Options for JupyterLab: --port N (default: a free port from 8888 up), --ip ADDR (default 127.0.0.1);
# any other arguments are passed to `jupyter lab` (or to the demo with --headless).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
PY="$ROOT/.venv/bin/python"

headless=0
port=""
ip="127.0.0.1"
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --headless) headless=1 ;;
        --port) port="$2"; shift ;;
        --port=*) port="${1#--port=}" ;;
        --ip) ip="$2"; shift ;;
        --ip=*) ip="${1#--ip=}" ;;
        *) rest+=("$1") ;;
    esac
    shift
done

if [ "$headless" = "1" ]; then
    echo "[run] headless: python -m prune_explorer.demo ${rest[*]+${rest[*]}}"
    exec "$PY" -m prune_explorer.demo ${rest[@]+"${rest[@]}"}
fi

mkdir -p notebooks
if [ -z "$port" ]; then
    port="$("$PY" - <<'PYEOF'
import socket
for port in list(range(8888, 8900)) + [0]:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(s.getsockname()[1])
        break
PYEOF
)"
fi
token="$("$PY" -c 'import secrets; print(secrets.token_hex(24))')"

browser_flag=()
if [ "$(uname -s)" != "Darwin" ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    browser_flag=(--no-browser)
    echo "[run] no display found: not opening a browser"
fi
[ "$(id -u)" = "0" ] && browser_flag+=(--allow-root)   # containers often run as root
host="$ip"
[ "$ip" = "0.0.0.0" ] && host="$(hostname -f 2>/dev/null || hostname)"
echo "[run] JupyterLab on notebooks/ -> http://$host:$port/lab?token=$token"
echo "[run] (Ctrl-C twice to stop)"
exec "$PY" -m jupyterlab \
    --ServerApp.root_dir="$ROOT/notebooks" \
    --ServerApp.ip="$ip" --ServerApp.port="$port" --ServerApp.port_retries=0 \
    --IdentityProvider.token="$token" \
    ${browser_flag[@]+"${browser_flag[@]}"} ${rest[@]+"${rest[@]}"}
