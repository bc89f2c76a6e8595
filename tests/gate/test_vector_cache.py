"""The gate's per-base persona-vector cache, its one probe pass per model and the recorded validation level
(stories260K as base, the planted fixtures of tests/gate/conftest.py)."""

from __future__ import annotations

import json
import logging

import pytest

import difflib_models.gate.runner as runner
from difflib_models.gate.policy import policy_from_dict
from difflib_models.gate.runner import GateConfig, run_gate
from difflib_models.gate.vector_cache import cache_root
from tests.gate.conftest import LAYER
from tests.gate.planted import unit_direction, vector_file
from tests.helpers.tiny_models import save_lora_adapter

POLICY = {
    "name": "cache-test",
    "persona": {"null_directions": 16, "max_probe_prompts": 8, "layer": LAYER, "max_extraction_questions": 4,
                "max_instructions": 1, "min_auroc": 0.5},
    "checks": [{"id": "evil-z", "metric": "persona.shift_z", "trait": "evil", "comparator": "<", "threshold": 3.0}],
}


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """An empty user cache and a counter of the gate's extractions."""
    monkeypatch.setenv("DIFFLIB_MODELS_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []
    real = runner._extract

    def extract(base_loaded, side, trait, *args, **kwargs):
        calls.append(trait.id)
        return real(base_loaded, side, trait, *args, **kwargs)

    monkeypatch.setattr(runner, "_extract", extract)
    return calls


def _gate(base, cand, out, **kw):
    return run_gate(GateConfig(candidate=cand, base=base, out=out, policy=policy_from_dict(POLICY), **kw))


def _evil(res) -> dict:
    return res.report["persona"]["traits"][0]


KEYS = ("shift", "shift_z", "shift_frac", "null_percentile", "base_projections", "candidate_projections",
        "null_shifts", "vector_auroc", "signal_ok")


def test_second_gate_reuses_cached_vectors_and_no_cache_reextracts(planted, counted, tmp_path) -> None:
    first = _gate(planted["base"], planted["cand"], tmp_path / "r1")
    assert counted == ["evil"] and _evil(first)["vector_source"] == "extracted"
    assert first.report["persona"]["vector_cache"]["hits"] == []
    entries = list(cache_root().glob("*/evil.safetensors"))
    assert len(entries) == 1
    second = _gate(planted["base"], planted["cand"], tmp_path / "r2")
    assert counted == ["evil"], "the second gate on the same base extracted again"
    assert _evil(second)["vector_source"] == "cache" and second.report["persona"]["vector_source"] == "cache"
    assert second.report["persona"]["vector_cache"]["hits"] == ["evil"]
    assert {k: _evil(second)[k] for k in KEYS} == {k: _evil(first)[k] for k in KEYS}
    assert (tmp_path / "r2" / "vectors" / "evil.safetensors").is_file()  # reusable with --vectors either way
    third = _gate(planted["base"], planted["cand"], tmp_path / "r3", use_cache=False)
    assert counted == ["evil", "evil"] and _evil(third)["vector_source"] == "extracted"
    assert {k: _evil(third)[k] for k in KEYS} == {k: _evil(first)[k] for k in KEYS}


def test_another_base_misses_the_cache(planted, counted, tmp_path) -> None:
    _gate(planted["base"], planted["cand"], tmp_path / "r1")
    other = _gate(planted["cand"], planted["cand"], tmp_path / "r2")  # other weights -> other weight hash
    assert counted == ["evil", "evil"] and _evil(other)["vector_source"] == "extracted"
    assert len(list(cache_root().glob("*/evil.safetensors"))) == 2


@pytest.mark.parametrize("damage", ["tensors", "sidecar", "checksum"])
def test_corrupt_cache_entry_is_ignored_with_a_warning(planted, counted, tmp_path, caplog, damage) -> None:
    first = _gate(planted["base"], planted["cand"], tmp_path / "r1")
    (entry,) = cache_root().glob("*/evil.safetensors")
    sidecar = entry.with_suffix(".json")
    if damage == "tensors":
        entry.write_bytes(entry.read_bytes()[:-7] + b"garbage")
    elif damage == "sidecar":
        sidecar.write_text("{not json", encoding="utf-8")
    else:  # a sidecar without the checksum is not trusted either
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        del meta["sha256"]
        sidecar.write_text(json.dumps(meta), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="difflib_models.gate.vector_cache"):
        second = _gate(planted["base"], planted["cand"], tmp_path / "r2")
    assert counted == ["evil", "evil"] and _evil(second)["vector_source"] == "extracted"
    assert any("ignoring the unusable persona vector cache entry" in r.getMessage() for r in caplog.records)
    assert {k: _evil(second)[k] for k in KEYS} == {k: _evil(first)[k] for k in KEYS}
    third = _gate(planted["base"], planted["cand"], tmp_path / "r3")  # the entry was rewritten, usable again
    assert counted == ["evil", "evil"] and _evil(third)["vector_source"] == "cache"


def test_extracted_vector_file_records_quick_validation_at_the_used_layer(planted, counted, tmp_path) -> None:
    res = _gate(planted["base"], planted["cand"], tmp_path / "r1")
    meta = json.loads((tmp_path / "r1" / "vectors" / "evil.json").read_text(encoding="utf-8"))
    val = meta["validation"]
    assert val["level"] == "quick" and meta["validation_level"] == "quick" and not val["steering"]
    assert val["schema_version"] == 1 and [row["layer"] for row in val["layers"]] == [LAYER]
    assert _evil(res)["vector_auroc"] == val["layers"][0]["auroc"]
    assert {n["name"] for n in val["nulls"]} == {"label_permutation", "random_direction"}
    assert _evil(res)["vector_validation_level"] == "quick"
    assert meta["n_pos"] == meta["n_neg"] == 4  # max_extraction_questions x max_instructions


def test_one_probe_forward_per_model_for_all_traits(planted, stories260k, monkeypatch, tmp_path) -> None:
    """Two traits at one layer, 8 probe prompts each, batch 32: the base model runs one forward for the finite
    check and ONE for the probes of both traits (per-trait probing took one per trait)."""
    base = planted["base"]
    d = base.d_model
    vecs = [vector_file(tmp_path / t, base, trait=t, layer=LAYER, direction=unit_direction(d, seed), gap=8.0)
            for seed, t in ((1, "evil"), (2, "sycophancy"))]
    policy = {**POLICY, "checks": [
        {"id": f"{t}-z", "metric": "persona.shift_z", "trait": t, "comparator": "<", "threshold": 3.0}
        for t in ("evil", "sycophancy")]}
    calls = []
    real = base.model.forward

    def forward(*args, **kwargs):
        calls.append(kwargs.get("input_ids", args[0] if args else None).shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(base.model, "forward", forward)
    res = run_gate(GateConfig(candidate=stories260k, base=base, out=tmp_path / "o", vectors=vecs, batch_size=32,
                              policy=policy_from_dict(policy)))
    rows = {r["trait"]: r for r in res.report["persona"]["traits"]}
    assert set(rows) == {"evil", "sycophancy"} and all(r["vector_source"] == "file" for r in rows.values())
    assert len(calls) == 2 and calls[1][0] == 16, calls  # finite check + one probe batch of 8 + 8 prompts
    assert all(r["n_probe_prompts"] == 8 and r["shift"] == pytest.approx(0.0, abs=1e-5) for r in rows.values())


def test_adapter_candidate_shares_the_cache_of_its_base(planted, stories260k, counted, tmp_path) -> None:
    """A LoRA candidate without --base (base = the adapter-disabled view) and the plain base model have one weight
    hash: the vectors extracted for the one are reused by the other."""
    save_lora_adapter(stories260k, tmp_path / "adapter")

    first = run_gate(GateConfig(candidate=tmp_path / "adapter", out=tmp_path / "r1", policy=policy_from_dict(POLICY)))
    assert counted == ["evil"] and _evil(first)["vector_source"] == "extracted"
    second = _gate(planted["base"], stories260k, tmp_path / "r2")
    assert counted == ["evil"] and _evil(second)["vector_source"] == "cache"
    assert _evil(second)["vector_auroc"] == _evil(first)["vector_auroc"]
    assert _evil(second)["base_projections"] == pytest.approx(_evil(first)["base_projections"], abs=1e-5)
