"""The per-base cache of the gate's base-side measurements (difflib_models/gate/base_cache.py) on stories260K: a
second gate on the same base reads the base's response probe and A/B scores from the cache (the base is not
measured again) and reports the same numbers; ``use_cache=False``, another item set, a changed scorer, a hooked
base and an unusable entry all measure again."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from difflib_models.gate import base_cache, behavioural, response_signals
from difflib_models.gate.policy import policy_from_dict
from difflib_models.gate.runner import GateConfig, run_gate
from difflib_models.persona.shift.response import ResponseProbe
from tests.gate.conftest import PERSONA_POLICY


def _policy() -> Any:
    doc = copy.deepcopy(PERSONA_POLICY)
    doc["persona"]["response_tokens"] = 6
    doc["behavioural"] = {"trait": "evil", "max_items": 10, "min_scored": 10}
    doc["checks"] = [doc["checks"][0],
                     {"id": "evil-resp", "metric": "persona.response_null_z", "trait": "evil", "comparator": "<",
                      "threshold": 3.0},
                     {"id": "evil-beh", "metric": "behavioural.shift_ci_low", "trait": "evil", "comparator": "<",
                      "threshold": 0.1}]
    return policy_from_dict(doc)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, int]:
    """A fresh cache dir; counts of base probes built, trait scales read and A/B scoring passes (any model)."""
    monkeypatch.setenv("DIFFLIB_MODELS_CACHE", str(tmp_path / "cache"))
    calls = {"probe": 0, "scale": 0, "scores": 0}
    build, scores, scale = ResponseProbe.build.__func__, behavioural.item_scores, response_signals.measure_scale

    def counting_build(cls: Any, *a: Any, **kw: Any) -> Any:
        calls["probe"] += 1
        return build(cls, *a, **kw)

    def counting_scores(*a: Any, **kw: Any) -> Any:
        calls["scores"] += 1
        return scores(*a, **kw)

    def counting_scale(*a: Any, **kw: Any) -> Any:
        calls["scale"] += 1
        return scale(*a, **kw)

    monkeypatch.setattr(ResponseProbe, "build", classmethod(counting_build))
    monkeypatch.setattr(response_signals, "measure_scale", counting_scale)
    monkeypatch.setattr(behavioural, "item_scores", counting_scores)
    return calls


def _gate(planted: dict[str, Any], out: Path, **kw: Any) -> dict[str, Any]:
    res = run_gate(GateConfig(candidate=planted["cand"], base=planted["base"], out=out, vectors=[planted["vec"]],
                              policy=_policy(), **kw))
    row = res.report["persona"]["traits"][0]
    return {"response": {k: row[k] for k in row if k.startswith("response_")},
            "behavioural": json.dumps(res.report["behavioural"]["traits"], sort_keys=True),
            "checks": {c["id"]: (c["status"], c["value"]) for c in res.report["checks"]}}


def test_second_gate_reads_the_base_from_the_cache(planted, counted, tmp_path: Path) -> None:
    first = _gate(planted, tmp_path / "a")
    assert counted == {"probe": 1, "scale": 1, "scores": 2}  # base + candidate scored
    assert len(list(base_cache.cache_root().glob("*.json"))) == 3  # the base's probe, trait scale and A/B scores
    second = _gate(planted, tmp_path / "b")
    assert counted == {"probe": 1, "scale": 1, "scores": 3}  # only the candidate measured again
    assert second == first and first["response"]["response_null_z"] is not None
    assert "response_headroom" in first["response"]  # None here: the planted direction does not order the pairs
    third = _gate(planted, tmp_path / "c", use_cache=False)
    assert counted == {"probe": 2, "scale": 2, "scores": 5} and third == first


def test_unusable_entries_are_measured_again(planted, counted, tmp_path: Path, caplog) -> None:
    first = _gate(planted, tmp_path / "a")
    for f in base_cache.cache_root().glob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")
    for f in base_cache.cache_root().glob("*.json"):
        meta = json.loads(f.read_text())
        if meta["kind"] == "ab_scores":
            meta["first"] = meta["first"][:-1]  # one score short
        if meta["kind"] == "trait_scale":
            meta["trait_mean"] = "NaN"  # not a number
        f.write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger="difflib_models.gate.base_cache"):
        again = _gate(planted, tmp_path / "b")
    assert counted == {"probe": 2, "scale": 2, "scores": 4} and again == first
    assert sum("ignoring the unusable gate base cache entry" in r.message for r in caplog.records) == 3
    _gate(planted, tmp_path / "c")  # the rewritten entries are used
    assert counted == {"probe": 2, "scale": 2, "scores": 5}


def test_keys_follow_items_code_and_hooks(planted, monkeypatch: pytest.MonkeyPatch, counted) -> None:
    base = planted["base"]
    ident = base_cache.measured_identity(base, "model")
    settings = {"items": ["a"], **base_cache.model_settings(base)}
    key = base_cache.cache_key(ident, "ab_scores", settings)
    assert key != base_cache.cache_key(ident, "ab_scores", {**settings, "items": ["b"]})
    assert key != base_cache.cache_key(ident, "response_probe", settings)
    assert key != base_cache.cache_key(ident + "0", "ab_scores", settings)
    monkeypatch.setattr(base_cache, "code_hash", lambda kind: "another scorer")
    assert key != base_cache.cache_key(ident, "ab_scores", settings)
    handle = base.model.get_submodule("model.layers.0").register_forward_hook(lambda *a: None)
    try:  # a hooked base (e.g. steered) computes something its weight hash does not say: never cached
        assert base_cache.measured_identity(base, "model") is None
    finally:
        handle.remove()
    assert base_cache.measured_identity(base, "model") == ident


def test_cached_trait_scale_equals_the_measured_one(planted, counted) -> None:
    """The scale read back from the cache has the measured means bit for bit (so every position and headroom derived
    from it is the same); another direction or other pairs are a new key, measured again."""
    from difflib_models.persona.shift.headroom import scale_pairs
    from difflib_models.persona.traits import load_trait

    base = planted["base"]
    pairs = scale_pairs(load_trait("evil"))[:6]
    v = torch.randn(base.d_model, generator=torch.Generator().manual_seed(3))
    kw = {"trait": "evil", "layer": 1, "batch_size": 3, "use_cache": True}
    measured = response_signals._base_scale(base, "model", pairs, vector=v, **kw)
    cached = response_signals._base_scale(base, "model", pairs, vector=v, **kw)
    assert counted["scale"] == 1 and cached == measured
    assert math.isfinite(measured.trait_mean) and measured.trait_mean != measured.neutral_mean
    response_signals._base_scale(base, "model", pairs, vector=-v, **kw)
    response_signals._base_scale(base, "model", pairs[:5], vector=v, **kw)
    assert counted["scale"] == 3
    flipped = response_signals._base_scale(base, "model", pairs, vector=-v, **kw)
    assert counted["scale"] == 3 and flipped.trait_mean == pytest.approx(-measured.trait_mean, rel=1e-5)


def test_a_base_edited_in_memory_is_measured_again_and_reported_with_its_new_hash(planted, stories260k: Path,
                                                                                    counted, tmp_path: Path,
                                                                                    caplog) -> None:
    """A LoadedModel passed to the gate is checked against its identity: edited in memory after loading (here
    through ``.data``, which autograd's version counter does not see), it is re-hashed, so the base cache misses,
    the report names the weights the gate measured (not the files they were loaded from) and a persona vector
    extracted on the loaded weights is refused for it."""
    from difflib_models.errors import IdentityMismatchError
    from difflib_models.models.loading import load_model

    doc = copy.deepcopy(PERSONA_POLICY)
    doc["behavioural"] = {"trait": "evil", "max_items": 10, "min_scored": 10}
    doc["checks"] = [{"id": "evil-beh", "metric": "behavioural.shift_ci_low", "trait": "evil", "comparator": "<",
                      "threshold": 0.1}]
    policy = policy_from_dict(doc)
    base = load_model(stories260k)

    def gate(out: str) -> Any:
        return run_gate(GateConfig(candidate=planted["cand"], base=base, out=tmp_path / out, policy=policy))

    first = gate("a")
    assert counted["scores"] == 2  # base + candidate
    assert gate("b").report["behavioural"] == first.report["behavioural"] and counted["scores"] == 3  # cache hit
    loaded_hash = first.report["models"]["base"]["weight_hash"]
    base.model.get_submodule("model.layers.1.mlp").down_proj.weight.data.mul_(1.5)
    with caplog.at_level("WARNING", logger="difflib_models.models.loading"):
        edited = gate("c")
    assert counted["scores"] == 5  # the base measured again: the cached scores are of the loaded weights
    assert edited.report["models"]["base"]["weight_hash"] != loaded_hash
    assert edited.report["models"]["base"]["extra"]["edited_in_memory"] is True
    assert sum("changed in memory after the model was loaded" in r.message for r in caplog.records) == 1
    def base_scores(res: Any) -> list[float]:
        return [it["balanced_score"] for it in res.report["behavioural"]["items"] if it["model"] == "base"]

    # the edited base scores the items differently: a cache hit would have reported the loaded weights' scores
    assert len(base_scores(edited)) == 10 and base_scores(edited) != base_scores(first)
    # a vector extracted on the loaded weights does not belong to the edited base (the stale hash let it through)
    with pytest.raises(IdentityMismatchError, match="extracted on model"):
        run_gate(GateConfig(candidate=planted["cand"], base=base, out=tmp_path / "d", vectors=[planted["vec"]],
                            policy=_policy()))
