from __future__ import annotations

import json

import pytest
import torch

from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.errors import ConfigError
from difflib_models.gate.alignment import (
    crosscoder_alignment,
    nonfinite_weights,
    persona_alignment,
    source_layers,
)
from difflib_models.gate.engine import evaluate
from difflib_models.gate.policy import policy_from_dict
from difflib_models.models.identity import ModelIdentity
from difflib_models.report.alignment_records import CrosscoderAlignment
from difflib_models.report.builder import attach_alignment
from tests.report.synthetic import synthetic_report

D = 16


def _crosscoder() -> tuple[Crosscoder, torch.Tensor]:
    cfg = CrosscoderConfig(d_model=D, n_sources=2, dict_size=8, k=2, source_names=["base/blocks.3", "ft/blocks.3"])
    cc = Crosscoder(cfg)
    v = torch.zeros(D)
    v[0] = 1.0
    other = torch.zeros(D)
    other[1] = 1.0
    with torch.no_grad():
        cc.W_dec.zero_()
        cc.W_dec[:, 0, :] = other  # every latent exists in the base ...
        for i in (0, 1, 2):  # ... except 0, 1, 2: fine-tune-only
            cc.W_dec[i, 0, :] = 0.0
        cc.W_dec[0, 1, :] = 2.0 * v  # aligned (cos 1)
        cc.W_dec[1, 1, :] = -v + other  # cos -0.707: counts by abs value
        cc.W_dec[2, 1, :] = other  # orthogonal
        cc.W_dec[3:, 1, :] = v  # shared latents along v do not count
    return cc, v


def test_persona_alignment_counts_ft_only_latents(tmp_path) -> None:
    cc, v = _crosscoder()
    out = persona_alignment(cc, {"evil": (3, v), "syc": (5, v)})
    assert out.row("evil").ft_only_latents == (0, 1, 2)
    assert out.row("evil").ft_only_cos == pytest.approx([1.0, -2 ** -0.5, 0.0], abs=1e-6)
    assert "not 5" in out.row("syc").error
    cc.save(tmp_path / "cc")
    assert crosscoder_alignment(tmp_path / "cc", {"evil": (3, v)}).row("evil") == out.row("evil")
    assert CrosscoderAlignment.from_dict(json.loads(json.dumps(out.to_dict()))) == out  # record -> JSON -> record
    assert out.to_dict()["syc"] == {"layer": 5, "error": out.row("syc").error}

    report = synthetic_report()
    attach_alignment(report, out)
    pol = policy_from_dict({"checks": [
        {"id": "a", "metric": "crosscoder.ft_only_aligned", "trait": "evil", "comparator": "<=", "threshold": 1,
         "min_cos": 0.5},
        {"id": "b", "metric": "crosscoder.ft_only_aligned", "trait": "evil", "comparator": "<=", "threshold": 1,
         "min_cos": 0.9},
        {"id": "c", "metric": "crosscoder.ft_only_aligned", "trait": "syc", "comparator": "<=", "threshold": 1}]})
    checks = {c["id"]: c for c in evaluate(report, pol)["checks"]}
    assert (checks["a"]["value"], checks["a"]["status"]) == (2.0, "fail")
    assert (checks["b"]["value"], checks["b"]["status"]) == (1.0, "pass")
    assert checks["c"]["status"] == "error"


def test_source_layers() -> None:
    assert source_layers(["base/blocks.2", "base/blocks.7", "ft/blocks.2", "ft/blocks.7"], 2) == [2, 7]
    with pytest.raises(ConfigError):
        source_layers(["a", "b"], 1)


def _ident(name: str, h: int, adapter: int | None = None) -> ModelIdentity:
    return ModelIdentity(name=name, source="hf_dir", path=None, weight_hash=f"sha256:{h:064x}",
                         adapter_hash=f"sha256:{adapter:064x}" if adapter is not None else None)


BASE, CAND, OTHER = _ident("base", 1), _ident("cand", 1, adapter=2), _ident("other", 3)
#: the identities as crosscoder.json records them (``extra.identities``)
REC_BASE, REC_CAND, REC_OTHER = BASE.to_dict(), CAND.to_dict(), OTHER.to_dict()
EVIL_CHECK = {"id": "a", "metric": "crosscoder.ft_only_aligned", "trait": "evil", "comparator": "<=",
              "threshold": 1, "min_cos": 0.5}


def _gate_value(alignment: CrosscoderAlignment | dict) -> dict:
    """The engine on a report holding ``alignment``: the gate's record, or hand-written JSON rows as such."""
    report = synthetic_report()
    if isinstance(alignment, CrosscoderAlignment):
        attach_alignment(report, alignment)
    else:
        report["crosscoder"]["persona_alignment"] = alignment
    return evaluate(report, policy_from_dict({"checks": [EVIL_CHECK]}))


def test_crosscoder_with_nan_decoder_is_an_error(tmp_path) -> None:
    """Issue 14: an all-NaN decoder made every relative norm NaN -> "0 aligned ft-only latents" -> PASS."""
    cc, v = _crosscoder()
    with torch.no_grad():
        cc.W_dec.fill_(float("nan"))
    cc.save(tmp_path / "cc", extra={"identities": [REC_BASE, REC_CAND]})
    out = crosscoder_alignment(tmp_path / "cc", {"evil": (3, v)}, expected={"base": BASE, "candidate": CAND})
    assert "W_dec" in out.row("evil").error and "not finite" in out.row("evil").error
    assert crosscoder_alignment(tmp_path / "cc", {"evil": (3, v)}).row("evil").error  # even without identities
    report = _gate_value(out)
    assert report["checks"][0]["status"] == "error" and report["verdict"] == "error"
    assert nonfinite_weights(_crosscoder()[0]) == []


def test_crosscoder_must_record_the_gate_models(tmp_path) -> None:
    cc, v = _crosscoder()
    cc.save(tmp_path / "ok", extra={"identities": [REC_BASE, REC_CAND]})
    out = crosscoder_alignment(tmp_path / "ok", {"evil": (3, v)}, expected={"base": BASE, "candidate": CAND})
    assert out.row("evil").ft_only_latents == (0, 1, 2) and _gate_value(out)["checks"][0]["status"] == "fail"

    cc.save(tmp_path / "swapped", extra={"identities": [REC_BASE, REC_OTHER]})
    out = crosscoder_alignment(tmp_path / "swapped", {"evil": (3, v)}, expected={"base": BASE, "candidate": CAND})
    assert "trained on 'other'" in out.row("evil").error and "candidate 'cand'" in out.row("evil").error
    assert _gate_value(out)["checks"][0]["status"] == "error"
    # same base weights but no adapter: not the candidate
    cc.save(tmp_path / "noadapter", extra={"identities": [REC_BASE, REC_BASE]})
    out = crosscoder_alignment(tmp_path / "noadapter", {"evil": (3, v)}, expected={"base": BASE, "candidate": CAND})
    assert out.row("evil").error is not None

    cc.save(tmp_path / "old")  # no identities recorded
    out = crosscoder_alignment(tmp_path / "old", {"evil": (3, v)}, expected={"base": BASE, "candidate": CAND})
    assert "records no identities" in out.row("evil").error and "HINT" in out.row("evil").error
    assert _gate_value(out)["checks"][0]["status"] == "error"


@pytest.mark.parametrize("row", [{"layer": 3}, {"layer": 3, "ft_only_cos": None}, {"layer": 3, "ft_only_cos": "1"},
                                 {"layer": 3, "ft_only_cos": [0.9, float("nan")]}, {"layer": 3, "ft_only_cos": [True]},
                                 "row"])
def test_malformed_alignment_rows_are_errors(row) -> None:
    assert _gate_value({"evil": row})["checks"][0]["status"] == "error"
