"""DDP (ddp_spawn, 2 CPU processes, gloo): the probe forward runs on both ranks, rank 0 alone writes one store per
snapshot step, nothing hangs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.callbacks.lit_helpers import MetricRecorder, TinyLM

PROMPTS = ["Once upon a time there was a cat.", "The dog ran to the park.", "Lily had a red ball."]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_spawn_snapshots(tmp_path: Path, tinystories_656k: Path) -> None:
    import lightning.pytorch as L

    from difflib_models.callbacks import ActivationSnapshot, PersonaMonitor
    from difflib_models.store.reader import ActivationStore
    from tests.callbacks.test_persona_monitor import _vector_file

    module = TinyLM(tokenizer_dir=str(tinystories_656k), n_samples=16)
    vf = _vector_file(tmp_path / "syc", module, torch.randn(32, generator=torch.Generator().manual_seed(5)))
    # responses=True: every check also generates on both ranks (generate(synced_gpus=True) over gloo)
    mon = PersonaMonitor(vectors=vf, every_n_steps=2, responses=True, response_tokens=4, response_prompts=4,
                         fail_response_null_z=None, out_dir=str(tmp_path / "mon"))
    snap = ActivationSnapshot(prompts=PROMPTS, layers=[0, 1], every_n_steps=2, out_dir=str(tmp_path / "snaps"))
    rec = MetricRecorder(str(tmp_path / "ranks"))
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=5,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[snap, mon, rec])
    trainer.fit(module)
    # both ranks finished (no hang) and saw 5 optimizer steps
    rows = []
    for r in (0, 1):
        data = json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text())
        assert data["world_size"] == 2 and data["rows"][-1]["step"] == 5
        rows.append(data["rows"])
    # the monitor's metrics are identical on both ranks (rank 0's numbers broadcast before logging)
    assert rows[0] == rows[1]
    assert "persona/sycophancy/shift_z" in rows[0][-1] and "persona/sycophancy/null_percentile" in rows[0][-1]
    series = json.loads((tmp_path / "mon" / "persona_monitor.json").read_text())["series"]
    assert [r["step"] for r in series] == [2, 4]
    assert rows[0][-1]["persona/sycophancy/shift"] == pytest.approx(series[-1]["traits"]["sycophancy"]["shift"])
    assert rows[0][-1]["persona/sycophancy/response_null_z"] == pytest.approx(
        series[-1]["traits"]["sycophancy"]["response_null_z"])
    index = json.loads((tmp_path / "snaps" / "index.json").read_text())
    assert [e["step"] for e in index["snapshots"]] == [0, 2, 4, 5]
    stores = sorted((tmp_path / "snaps").glob("step-*"))
    assert [p.name for p in stores] == ["step-00000000", "step-00000002", "step-00000004", "step-00000005"]
    for p in stores:
        store = ActivationStore.open(p)
        assert store.complete and store.prompt_ids() == [0, 1, 2]  # each prompt once: one writer
