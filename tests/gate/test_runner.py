from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pytest

from difflib_models.gate.policy import policy_from_dict
from difflib_models.gate.runner import GateConfig, run_gate
from difflib_models.report.builder import load_report
from difflib_models.report.records import GateVerdict, PersonaSection
from tests.gate.conftest import ALPHA, LAYER, PERSONA_POLICY
from tests.gate.planted import nan_crosscoder_copy, unit_direction, vector_file
from tests.helpers.tiny_models import save_lora_adapter
from tests.helpers.validation import summary


def test_identical_candidate_passes(planted, stories260k, tmp_path) -> None:
    cfg = GateConfig(candidate=stories260k, base=planted["base"], out=tmp_path, vectors=[planted["vec"]],
                     policy=policy_from_dict(PERSONA_POLICY))
    res = run_gate(cfg)
    assert res.verdict == "pass" and res.exit_code == 0
    evil = res.report["persona"]["traits"][0]
    assert evil["shift"] == pytest.approx(0.0, abs=1e-5) and evil["layer"] == LAYER
    assert load_report(tmp_path)["verdict"] == "pass"


def test_planted_direction_fails_with_exact_shift(planted, tmp_path) -> None:
    cfg = GateConfig(candidate=planted["cand"], base=planted["base"], out=tmp_path, vectors=[planted["vec"]],
                     policy=policy_from_dict(PERSONA_POLICY), fail_exit_code=42,
                     extra_outputs={"junit": tmp_path / "extra" / "j.xml"})
    res = run_gate(cfg)
    evil = res.report["persona"]["traits"][0]
    # the residual after block LAYER moved by exactly ALPHA * v on every probe prompt
    assert evil["shift"] == pytest.approx(ALPHA, rel=1e-3)
    assert evil["drift_cos"] == pytest.approx(1.0, abs=1e-3)
    sigma = float(__import__("numpy").std(evil["base_projections"], ddof=1))
    assert evil["shift_z"] == pytest.approx(ALPHA / sigma, rel=1e-3)
    assert evil["shift_frac"] == pytest.approx(0.5, rel=1e-3)  # ALPHA / gap
    assert evil["null_percentile"] == 1.0  # a random direction never sees the whole planted shift
    assert all(abs(x) < ALPHA for x in evil["null_shifts"])
    status = {c["id"]: c["status"] for c in res.report["checks"]}
    assert status == {"evil-z": "fail", "evil-frac": "fail", "evil-excess": "skipped"}
    assert res.verdict == "fail" and res.exit_code == 42
    suite = ET.parse(tmp_path / "extra" / "j.xml").getroot().find("testsuite")
    assert suite.get("failures") == "2" and suite.get("skipped") == "1"


def test_control_finetune_explains_the_shift(planted, tmp_path) -> None:
    """A matched control that shifts almost as much: excess over control is small -> that check passes."""
    cfg = GateConfig(candidate=planted["cand"], base=planted["base"], control=planted["ctl"], out=tmp_path,
                     vectors=[planted["vec"]], policy=policy_from_dict(PERSONA_POLICY))
    res = run_gate(cfg)
    evil = res.report["persona"]["traits"][0]
    assert evil["control_shift"] == pytest.approx(0.99 * ALPHA, rel=1e-3)
    assert evil["excess_z"] == pytest.approx(evil["shift_z"] - evil["control_shift_z"], rel=1e-6)
    assert math.isclose(evil["excess_z"], evil["shift_z"] * 0.01, rel_tol=1e-2)
    assert evil["excess_z"] < 2.0 < evil["shift_z"]
    assert {c["id"]: c["status"] for c in res.report["checks"]}["evil-excess"] == "pass"


def test_weak_vector_is_inconclusive(planted, tmp_path) -> None:
    weak = vector_file(tmp_path / "weak", planted["base"], trait="evil", layer=LAYER,
                       direction=unit_direction(planted["base"].d_model, 1), gap=8.0, auroc=0.51)
    cfg = GateConfig(candidate=planted["cand"], base=planted["base"], out=tmp_path / "o", vectors=[weak],
                     policy=policy_from_dict(PERSONA_POLICY))
    res = run_gate(cfg)
    assert res.verdict == "inconclusive" and res.exit_code == 3
    assert not res.report["persona"]["traits"][0]["signal_ok"]
    assert any("too weak" in n for n in res.report["notes"])


def test_peft_adapter_candidate_uses_its_base(planted, stories260k, tmp_path) -> None:
    """A LoRA adapter dir as candidate, no --base: the base is the adapter-disabled model, and its activations
    equal those of the separately loaded base model."""

    from difflib_models.persona.shift.core import probe_activations
    from difflib_models.persona.traits import load_trait

    save_lora_adapter(stories260k, tmp_path / "adapter")

    res = run_gate(GateConfig(candidate=tmp_path / "adapter", out=tmp_path / "o", vectors=[planted["vec"]],
                              policy=policy_from_dict(PERSONA_POLICY)))
    models = res.report["models"]
    assert models["base"]["weight_hash"] == planted["base"].identity.weight_hash
    assert models["candidate"]["adapter_hash"]
    evil = res.report["persona"]["traits"][0]
    prompts = load_trait("evil").split_questions("evaluation")[:8]
    base_acts = probe_activations(planted["base"].model, planted["base"].tokenizer, prompts, [LAYER])[LAYER]
    assert evil["base_projections"] == pytest.approx((base_acts @ unit_direction(64, seed=1)).tolist(), abs=1e-4)
    assert abs(evil["shift"]) > 1e-4  # the adapter changed the activations


def test_base_view_reuses_the_adapter_loads_base_identity(stories260k, tmp_path, monkeypatch) -> None:
    """The base view the gate extracts vectors on carries the adapter load's (verified) base identity instead of
    hashing the whole model again per trait; a peft model object without a base identity is hashed, to the same
    hash."""
    from peft import PeftModel

    from difflib_models.gate import runner
    from difflib_models.models import loading
    from difflib_models.models.identity import weight_hash
    from difflib_models.models.loading import load_model

    save_lora_adapter(stories260k, tmp_path / "adapter")
    adapted = load_model(tmp_path / "adapter")
    expected = weight_hash(loading.load_model(stories260k).model)
    with monkeypatch.context() as m, adapted.base_view() as model:
        m.setattr(loading, "weight_hash", lambda *_: pytest.fail("the base view re-hashed the model"))
        view = runner._base_view(adapted, model)
    assert view.identity.weight_hash == expected and view.identity.name == "base (adapter disabled)"
    assert view.identity.path == adapted.identity.base.path
    obj = load_model(PeftModel.from_pretrained(loading.load_model(stories260k).model, str(tmp_path / "adapter")),
                     tokenizer=adapted.tokenizer)
    assert obj.identity.base is None
    with obj.base_view() as model:
        assert runner._base_view(obj, model).identity.weight_hash == expected


def _vec(path, base, *, layers, selected, validation, gap=8.0):
    from difflib_models.persona.extraction.vectors import PersonaVectorSet

    vecs = {layer: 2.0 * unit_direction(base.d_model, seed=1 + layer) for layer in layers}
    vecs[LAYER] = 2.0 * unit_direction(base.d_model, seed=1)
    vs = PersonaVectorSet(trait_id="evil", vectors=vecs, model=base.identity.to_dict(), mode="planted",
                          polarity="undesirable", gap=dict.fromkeys(layers, gap), selected_layer=selected,
                          validation=validation)
    return vs.save(path)


def test_auroc_is_read_at_the_used_layer() -> None:
    """Issue 13: with a vector file validated at layer 12 and a policy using layer 15, the gate took layer 12's
    AUROC. The typed summary answers per layer, and never with another layer's value."""
    from difflib_models.gate.runner import _auroc

    both = summary({12: 0.93, 15: 0.55}, selected=12)
    assert _auroc(both, 15) == 0.55 and _auroc(both, 12) == 0.93
    assert _auroc(summary({12: 0.93}), 15) is None  # the selected layer's AUROC is not the used layer's
    assert _auroc(summary({15: float("nan")}), 15) is None
    assert _auroc(None, 15) is None


def test_gate_uses_the_auroc_of_the_policy_layer(planted, tmp_path) -> None:
    """Vector file selected at layer 1, policy layer LAYER (2): the gate must judge the signal by layer 2's AUROC."""
    policy = policy_from_dict({**PERSONA_POLICY, "persona": {**PERSONA_POLICY["persona"], "layer": LAYER}})
    weak_at_used = _vec(tmp_path / "a", planted["base"], layers=[1, LAYER], selected=1,
                        validation=summary({1: 0.95, 2: 0.55}, selected=1))
    from difflib_models.persona.extraction.vectors import PersonaVectorSet

    stored = PersonaVectorSet.load(weak_at_used).validation  # the typed summary read back from the file
    assert stored.selected_layer == 1 != LAYER and stored.auroc_at(LAYER) == 0.55
    res = run_gate(GateConfig(candidate=planted["cand"], base=planted["base"], out=tmp_path / "o1",
                              vectors=[weak_at_used], policy=policy))
    evil = res.report["persona"]["traits"][0]
    assert evil["layer"] == LAYER and evil["vector_auroc"] == 0.55 and not evil["signal_ok"]
    assert res.verdict == "inconclusive" and res.exit_code == 3
    good_at_used = _vec(tmp_path / "b", planted["base"], layers=[1, LAYER], selected=1,
                        validation=summary({1: 0.55, 2: 0.97}, selected=1))
    res = run_gate(GateConfig(candidate=planted["cand"], base=planted["base"], out=tmp_path / "o2",
                              vectors=[good_at_used], policy=policy))
    evil = res.report["persona"]["traits"][0]
    assert evil["vector_auroc"] == 0.97 and evil["signal_ok"] and res.verdict == "fail"


@pytest.mark.parametrize(("validation", "gap", "why"), [
    (None, -8.0, "no held-out AUROC"),  # extracted with --no-validate, negative gap (issue 14)
    (None, 8.0, "no held-out AUROC"),
    (summary({2: 0.95}), -8.0, "not above the base spread"),
    (summary({2: 0.95}), 1e-4, "not above the base spread"),
])
def test_unvalidated_or_gapless_vector_is_inconclusive(planted, stories260k, tmp_path, validation, gap, why) -> None:
    vec = _vec(tmp_path / "v", planted["base"], layers=[LAYER], selected=LAYER, validation=validation, gap=gap)
    for cand in (stories260k, planted["cand"]):  # neither a pass nor a fail: no verdict without a usable vector
        res = run_gate(GateConfig(candidate=cand, base=planted["base"], out=tmp_path / "o", vectors=[vec],
                                  policy=policy_from_dict(PERSONA_POLICY)))
        evil = res.report["persona"]["traits"][0]
        assert evil["signal_ok"] is False and why in evil["signal_note"]
        assert res.verdict == "inconclusive" and res.exit_code == 3


CC_POLICY = {**PERSONA_POLICY, "checks": [
    {"id": "cc", "metric": "crosscoder.ft_only_aligned", "trait": "evil", "comparator": "<=", "threshold": 1000,
     "min_cos": 0.3}]}


def test_trained_crosscoder_records_and_matches_model_identities(planted, stories260k, trained_crosscoder,
                                                                 tmp_path) -> None:
    meta = json.loads((trained_crosscoder / "crosscoder.json").read_text())
    idents = meta["extra"]["identities"]
    assert idents[0]["weight_hash"] == planted["base"].identity.weight_hash
    assert idents[1]["weight_hash"] != idents[0]["weight_hash"]  # the planted candidate
    ok = run_gate(GateConfig(candidate=planted["cand"], base=planted["base"], out=tmp_path / "ok",
                             vectors=[planted["vec"]], crosscoder=trained_crosscoder,
                             policy=policy_from_dict(CC_POLICY)))
    check = ok.report["checks"][0]
    assert check["status"] == "pass" and check["value"] is not None and ok.exit_code == 0
    # the same crosscoder offered as evidence for another candidate (the base itself): mismatch -> error, exit 3
    wrong = run_gate(GateConfig(candidate=stories260k, base=planted["base"], out=tmp_path / "wrong",
                                vectors=[planted["vec"]], crosscoder=trained_crosscoder,
                                policy=policy_from_dict(CC_POLICY)))
    check = wrong.report["checks"][0]
    assert check["status"] == "error" and "not on the gate's candidate" in check["details"]["message"]
    assert wrong.verdict == "error" and wrong.exit_code == 3


def test_nan_crosscoder_is_an_error_end_to_end(planted, trained_crosscoder, tmp_path) -> None:
    nan_dir = nan_crosscoder_copy(trained_crosscoder, tmp_path / "nan")
    res = run_gate(GateConfig(candidate=planted["cand"], base=planted["base"], out=tmp_path / "o",
                              vectors=[planted["vec"]], crosscoder=nan_dir, policy=policy_from_dict(CC_POLICY)))
    check = res.report["checks"][0]
    assert check["status"] == "error" and "W_dec" in check["details"]["message"]
    assert res.verdict == "error" and res.exit_code == 3


def test_gate_records_round_trip_through_report_json(planted, tmp_path) -> None:
    """A real run (planted candidate, matched control): the typed records the gate returns are what report.json
    holds, byte for byte, and read back from it into equal records."""
    cfg = GateConfig(candidate=planted["cand"], base=planted["base"], control=planted["ctl"], out=tmp_path,
                     vectors=[planted["vec"]], policy=policy_from_dict(PERSONA_POLICY))
    res = run_gate(cfg)
    assert isinstance(res.outcome, GateVerdict) and isinstance(res.persona, PersonaSection)
    assert {c.id: c.status for c in res.outcome} == {"evil-z": "fail", "evil-frac": "fail", "evil-excess": "pass"}
    fail = res.outcome.check("evil-z")
    assert fail.details.get("trait") == "evil" and fail.details.get("layer") == LAYER and "violates" in fail.message
    row = res.persona.row("evil")
    assert row.has_control and row.excess_z == pytest.approx(row.shift_z - row.control_shift_z, rel=1e-9)
    text = (tmp_path / "report.json").read_text()
    doc = json.loads(text)
    back, persona = GateVerdict.from_report(doc), PersonaSection.from_report(doc)
    assert back == res.outcome and persona == res.persona  # record -> JSON -> record
    rebuilt = {**doc, **back.to_dict(), "persona": persona.to_dict()}  # JSON -> record -> JSON, byte for byte
    assert json.dumps(rebuilt, indent=2, allow_nan=False) + "\n" == text


def test_a_paired_vector_needs_no_instruction_gap_but_still_a_held_out_auroc() -> None:
    """The gap is the instruction contrast at the last prompt token; a ``paired`` (response-fitted) vector need not
    read it, so only the AUROC and the base spread decide its signal (its shift_frac stays None)."""
    from difflib_models.gate.runner import signal_notes

    gapless = {"gap": 1e-4, "usable": None, "base_std": 1.5, "layer": 3, "min_auroc": 0.6}
    assert any("not above the base spread" in n for n in signal_notes(0.95, **gapless))
    assert any("not above the base spread" in n for n in signal_notes(0.95, **gapless, mode="prompt_contrast"))
    assert signal_notes(0.95, **gapless, mode="paired") == []
    assert any("0.55 < 0.60" in n for n in signal_notes(0.55, **gapless, mode="paired"))
    assert any("no held-out AUROC" in n for n in signal_notes(None, **gapless, mode="paired"))
