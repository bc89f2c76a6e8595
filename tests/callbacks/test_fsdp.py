"""FSDP2 on CPU (2 processes, gloo, ``fully_shard`` through Lightning's ModelParallelStrategy): ActivationSnapshot
and PersonaMonitor run their probe forward on every rank through the sharded model, rank 0 alone writes, the
pre-training snapshot equals a capture of the unsharded model and the recorded weight hash is the full model's."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("fsdp_run.py")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fsdp2_snapshots_and_monitor(tmp_path: Path, tinystories_656k: Path) -> None:
    from difflib_models.capture.capture import iter_capture
    from difflib_models.models.identity import weight_hash
    from difflib_models.models.loading import from_pretrained_objects
    from difflib_models.store.manifest import act_key
    from difflib_models.store.reader import ActivationStore
    from tests.callbacks.fsdp_run import PROMPTS
    from tests.callbacks.lit_helpers import TinyLM

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(tinystories_656k)], env=env,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]

    index = json.loads((tmp_path / "snaps" / "index.json").read_text())
    assert [e["step"] for e in index["snapshots"]] == [0, 2, 4, 5]
    stores = sorted((tmp_path / "snaps").glob("step-*"))
    assert len(stores) == 4

    # step 0 is the untouched model: same activations and the same (full, not per-shard) weight hash
    untouched = TinyLM(tokenizer_dir=str(tinystories_656k), n_samples=16)
    loaded = from_pretrained_objects(untouched.model, untouched.tokenizer)
    expected = {0: [], 1: []}
    for _ids, batch in iter_capture(loaded, PROMPTS, [0, 1]):
        for layer in expected:
            expected[layer].append(batch.acts[layer])
    store = ActivationStore.open(stores[0])
    assert store.complete and store.prompt_ids() == [0, 1, 2]
    shard = store.load_shard(0)
    for layer, parts in expected.items():
        torch.testing.assert_close(shard[act_key("model", layer)], torch.cat(parts), atol=1e-5, rtol=1e-5)
    assert store.manifest.identities["model"]["weight_hash"] == weight_hash(untouched.model)
    later = ActivationStore.open(stores[-1]).manifest.identities["model"]["weight_hash"]
    assert later != weight_hash(untouched.model)  # trained weights, re-hashed on every rank

    # the monitor checked at steps 2 and 4 and both ranks logged identical numbers
    rows = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert rows[0]["world_size"] == 2 and rows[0]["rows"] == rows[1]["rows"]
    assert "persona/sycophancy/shift_z" in rows[0]["rows"][-1]
    series = json.loads((tmp_path / "mon" / "persona_monitor.json").read_text())["series"]
    assert [r["step"] for r in series] == [2, 4]
    assert "persona/sycophancy/response_null_z" in rows[0]["rows"][-1]
    assert all(math.isfinite(r["traits"]["sycophancy"]["response_null_z"]) for r in series)
