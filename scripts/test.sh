#!/usr/bin/env bash
# Install everything the tests need (scripts/setup.sh test: ".[all]", with the YOLO tests' ultralytics), then run the WHOLE test suite:
#   1. pytest tests -n 2                                     (unit, integration, slow model-zoo, browser)
#   2. pytest --nbval --nbval-current-env -n 2 --dist loadfile notebooks/*.ipynb
#      (every tutorial notebook runs; stored outputs are compared, cells saved unexecuted are only run)
# Extra arguments go to both pytest runs, e.g.  bash scripts/test.sh -m "not slow" -x
# Environment knobs: PE_TEST_WORKERS (default 2) = xdist workers for both steps;
#                    PE_TEST_NOTEBOOKS=0 skips step 2.
# Exit status is non-zero if either step fails.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh test || { echo "[test] set-up failed" >&2; exit 1; }
PY="$ROOT/.venv/bin/python"
WORKERS="${PE_TEST_WORKERS:-2}"

start=$SECONDS
echo "[test] 1/2 pytest tests -n $WORKERS $*"
"$PY" -m pytest tests -n "$WORKERS" "$@"
unit_rc=$?

shopt -s nullglob
notebooks=(notebooks/*.ipynb)
shopt -u nullglob
if [ "${PE_TEST_NOTEBOOKS:-1}" = "0" ]; then
    echo "[test] 2/2 notebooks: skipped (PE_TEST_NOTEBOOKS=0)"
    nb_rc=0
elif [ "${#notebooks[@]}" -eq 0 ]; then
    echo "[test] 2/2 notebooks: none in notebooks/ yet, skipped"
    nb_rc=0
else
    echo "[test] 2/2 pytest --nbval --nbval-current-env -n $WORKERS --dist loadfile ${notebooks[*]} $*"
    # --dist loadfile: the cells of one notebook share a kernel, so they all run, in order, on one worker.
    "$PY" -m pytest --nbval --nbval-current-env -n "$WORKERS" --dist loadfile "${notebooks[@]}" "$@"
    nb_rc=$?
fi

echo "[test] tests: exit $unit_rc, notebooks: exit $nb_rc ($((SECONDS - start)) s)"
if [ "$unit_rc" -ne 0 ] || [ "$nb_rc" -ne 0 ]; then
    echo "[test] FAILED" >&2
    exit 1
fi
echo "[test] all passed"
