#!/usr/bin/env bash
# Create (or reuse) benchmarks/.venv-peer: the virtualenv of the peer in bench_crosscoder.py, PyPI
# dictionary-learning 0.1.0 (BatchTopKTrainer), beside torch==2.13.0 (the CPU build, as in the project venv).
#
#   bash benchmarks/setup_peer.sh          # then: .venv/bin/python benchmarks/bench_crosscoder.py
#
# torch goes in first and pinned: dictionary-learning's requirements pull nnsight (-> torchvision, diffusers),
# wandb, umap-learn, datasets and circuitsvis, which would replace it by a CUDA build. So dictionary-learning and
# nnsight (0.3.x, its pin) are installed with --no-deps, followed by exactly what
# `from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer` imports (the package __init__ imports
# nnsight through its ActivationBuffer), at the versions used for benchmarks/results/crosscoder*.json.
# Env: PYTHON (default python3, 3.10+), DIFFLIB_MODELS_PEER_VENV (default benchmarks/.venv-peer; the benchmark
# itself only looks in the default place).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIFFLIB_MODELS_PEER_VENV:-$ROOT/benchmarks/.venv-peer}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet)
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" --no-deps "dictionary-learning==0.1.0" "nnsight==0.3.7"
# the import closure of the trainer (nnsight's imports at module level), pinned; torch stays as installed above
"${PIP[@]}" "torch==2.13.0" "numpy==2.4.6" "safetensors==0.8.0" "einops==0.8.2" "tqdm==4.70.1" "PyYAML==6.0.4" \
  "pydantic==2.14.4" "transformers==5.25.0" "accelerate==1.16.0" "requests==2.34.2" \
  "python-socketio[client]==5.18.1" "protobuf==7.36.2" "sentencepiece==0.2.3" "pillow==13.0.0"
"$VENV/bin/python" - <<'EOF'
import dictionary_learning
import torch
from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer  # noqa: F401

assert dictionary_learning.__version__ == "0.1.0", dictionary_learning.__version__
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
print(f"peer venv ready: dictionary_learning {dictionary_learning.__version__}, torch {torch.__version__}")
EOF
