"""Under FSDP2 on CPU (2 processes, gloo, ``fully_shard`` through ModelParallelStrategy) the data filter and the
persona monitor score the sharded model exactly as the unsharded one: early stop is refused there (its
post-forward hooks must reshard), so every probe is a full forward through the sharded blocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("fsdp_scores_run.py")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fsdp2_filter_and_monitor_scores_equal_the_unsharded_model(tmp_path: Path, tinystories_656k: Path) -> None:
    from safetensors.torch import load_file

    from difflib_models.models.loading import from_pretrained_objects
    from difflib_models.persona.extraction.vectors import PersonaVectorSet
    from difflib_models.persona.filtering.scoring import FilterConfig, filter_samples, samples_from_rows
    from difflib_models.persona.shift.core import probe_activations
    from difflib_models.persona.traits import load_trait
    from tests.callbacks.test_persona_monitor import LAYER
    from tests.hooks.fsdp_scores_run import FILTER, N_ROWS, ShardedChatLM, vector_file

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "run"), str(tinystories_656k)], env=env,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # the same module, unsharded and untrained (configure_model never runs here)
    plain = ShardedChatLM(tokenizer_dir=str(tinystories_656k), n_rows=N_ROWS)
    vf = vector_file(tmp_path / "plain", plain)
    loaded = from_pretrained_objects(plain.model, plain.tokenizer)
    cfg = FilterConfig(max_length=256, **FILTER)
    ref = filter_samples(loaded, PersonaVectorSet.load(vf), samples_from_rows(plain.train_dataset.rows), cfg)

    scores = [json.loads(x) for x in (tmp_path / "run" / "filter" / "round-0-epoch-0" / "scores.jsonl")
              .read_text(encoding="utf-8").splitlines()]
    assert len(scores) == N_ROWS and sum(s["flagged"] for s in scores) == 4
    for key in ("proj_train", "proj_base", "delta_p"):
        assert [s[key] for s in scores] == pytest.approx([getattr(r, key) for r in ref.records], abs=1e-5)
    assert [s["flagged"] for s in scores] == [r.flagged for r in ref.records]

    # the monitor's baseline (step 0, before training) is the unsharded model's probe
    base = load_file(str(tmp_path / "run" / "mon" / "baseline.safetensors"))
    prompts = load_trait("sycophancy").split_questions("evaluation")
    acts = probe_activations(plain.model, plain.tokenizer, prompts, [LAYER])[LAYER]
    torch.testing.assert_close(base["sycophancy.m0"], acts.double().mean(dim=0), atol=1e-5, rtol=1e-5)
    v_hat = base["sycophancy.vector"] / base["sycophancy.vector"].norm()
    assert float(base["sycophancy.sigma0"]) == pytest.approx(float((acts @ v_hat).std()), rel=1e-4)
    series = json.loads((tmp_path / "run" / "mon" / "persona_monitor.json")
                        .read_text(encoding="utf-8"))["series"]
    assert [r["step"] for r in series] == [1]
