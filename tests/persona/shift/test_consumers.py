"""The shift core's consumers agree: the PersonaMonitor (a tiny Lightning run) and the gate's persona section
measure the same base, candidate and vector file to identical numbers, and a vector file without a pos-neg gap
gives a NaN ``shift_frac`` in both (the monitor's frac thresholds and the gate's frac check see no value)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from tests.callbacks.lit_helpers import TinyLM

LAYER = 1
BATCH = 8
N_NULL = 16
SEED = 4


def _monitor_and_gate(tmp_path: Path, tokenizer_dir: Path, *, gap: float | None):
    import lightning.pytorch as L

    from difflib_models.callbacks import PersonaMonitor
    from difflib_models.gate.policy import policy_from_dict
    from difflib_models.gate.runner import persona_section
    from difflib_models.models.loading import from_pretrained_objects
    from difflib_models.persona.extraction.vectors import PersonaVectorSet

    module = TinyLM(tokenizer_dir=str(tokenizer_dir))
    base_model = copy.deepcopy(module.model)
    base = from_pretrained_objects(base_model, module.tokenizer)
    g = torch.Generator().manual_seed(7)
    vs = PersonaVectorSet(trait_id="sycophancy", vectors={LAYER: torch.randn(32, generator=g)},
                          model=base.identity.to_dict(), mode="prompt_contrast", selected_layer=LAYER,
                          gap={LAYER: gap} if gap is not None else {})
    vf = str(vs.save(tmp_path / "syc"))
    # a frac threshold every shift would cross: with no gap it must not fire
    mon = PersonaMonitor(vectors=vf, every_n_steps=3, n_null=N_NULL, null_seed=SEED, batch_size=BATCH,
                         warn_z=None, fail_z=None, warn_frac=0.0, fail_frac=0.0, fail_null_percentile=0.0,
                         stop_on_fail=False, out_dir=str(tmp_path / "mon"))
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, max_steps=3,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[mon])
    trainer.fit(module)
    cand = from_pretrained_objects(module.model, module.tokenizer)
    policy = policy_from_dict({
        "name": "parity", "persona": {"layer": LAYER, "null_directions": N_NULL, "seed": SEED,
                                      "max_probe_prompts": 40},
        "checks": [{"id": "syc-frac", "metric": "persona.shift_frac", "trait": "sycophancy", "comparator": "<",
                    "threshold": 0.25}],
    })
    section, _ = persona_section({"base": (base, "model"), "candidate": (cand, "model")}, policy,
                                 vectors={"sycophancy": PersonaVectorSet.load(vf)}, batch_size=BATCH)
    return mon, section.traits[0].to_dict()


@pytest.mark.parametrize("gap", [None, 50.0])
def test_monitor_and_gate_give_identical_numbers(tmp_path: Path, tinystories_656k: Path, gap) -> None:
    mon, row = _monitor_and_gate(tmp_path, tinystories_656k, gap=gap)
    last = mon.series[-1]["traits"]["sycophancy"]
    assert mon.series[-1]["step"] == 3 and abs(last["shift"]) > 1e-5  # training moved the probes
    for key in ("shift", "shift_z", "drift_cos", "drift_norm", "null_percentile"):
        assert row[key] == last[key], key  # exact: one baseline, one measurement
    baseline = mon.monitors["sycophancy"].baseline
    assert row["base_projections"] == baseline.projections.tolist()
    assert row["n_probe_prompts"] == baseline.n_prompts == len(mon.monitors["sycophancy"].prompts)
    if gap is None:
        assert math.isnan(last["shift_frac"]) and row["shift_frac"] is None
        assert last["status"] == 0 and not last["crossing"]  # the frac thresholds (0.0) were not applied
        assert not row["signal_ok"] and "no finite pos-neg gap" in row["signal_note"]
    else:
        assert row["shift_frac"] == last["shift_frac"] == pytest.approx(last["shift"] / gap, rel=1e-12)
        assert last["crossing"] == (last["toward_undesirable"] >= 0)
