"""The gate's ``persona.response_position_shift``: how far the candidate's answers moved along the trait scale
(candidate position minus base position, both read by the base; :mod:`difflib_models.gate.response_signals`), on
stories260K with a planted-direction candidate, and the questions a response check asks
(:meth:`~difflib_models.persona.traits.schema.Trait.response_questions`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from difflib_models.gate.policy import policy_from_dict
from difflib_models.gate.runner import GateConfig, run_gate
from tests.gate.conftest import ALPHA, LAYER, PERSONA_POLICY
from tests.gate.planted import planted_model_dir, vector_file


def _policy(threshold: float) -> object:
    doc = copy.deepcopy(PERSONA_POLICY)
    doc["persona"].update(response_tokens=6, min_headroom=0.0)
    doc["checks"] = [doc["checks"][0], {"id": "evil-moved", "metric": "persona.response_position_shift",
                                        "trait": "evil", "comparator": "<", "threshold": threshold}]
    return policy_from_dict(doc)


@pytest.fixture(scope="module")
def scaled(stories260k: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A direction that orders the evil trait's held-out pairs on stories260K (their trait-minus-neutral response
    mean difference, so the trait scale exists), vector files of both polarities, and a candidate planted along it."""
    from difflib_models.models.loading import load_model
    from difflib_models.persona.shift.headroom import encode_pairs, scale_pairs
    from difflib_models.persona.shift.response import response_activations
    from difflib_models.persona.traits import chat, load_trait

    root = tmp_path_factory.mktemp("scaled")
    base = load_model(stories260k)
    prompts, t_ans, n_ans = encode_pairs(base.tokenizer, scale_pairs(load_trait("evil")))
    pad = chat.pad_id(base.tokenizer)
    diff = (response_activations(base.model, prompts, t_ans, pad, [LAYER])[LAYER].mean(0)
            - response_activations(base.model, prompts, n_ans, pad, [LAYER])[LAYER].mean(0))
    d = diff / diff.norm()
    return {"base": base, "direction": d,
            "vec": vector_file(root / "evil", base, trait="evil", layer=LAYER, direction=d, gap=1.0),
            "vec_desirable": vector_file(root / "good", base, trait="evil", layer=LAYER, direction=d, gap=1.0,
                                         polarity="desirable"),
            "cand": planted_model_dir(stories260k, root / "cand", layer=LAYER, direction=d, alpha=ALPHA)}


def test_identical_candidate_did_not_move(scaled, stories260k, tmp_path) -> None:
    res = run_gate(GateConfig(candidate=stories260k, base=stories260k, out=tmp_path, vectors=[scaled["vec"]],
                              policy=_policy(0.05)))
    evil = res.report["persona"]["traits"][0]
    assert evil["response_base_position"] is not None
    assert evil["response_position_shift"] == pytest.approx(0.0, abs=1e-9)
    assert {c["id"]: c["status"] for c in res.report["checks"]}["evil-moved"] == "pass"


def test_position_shift_is_the_base_reading_the_candidates_answers(scaled, stories260k, tmp_path) -> None:
    """Recomputed from the pieces: the candidate's greedy answers, read by the BASE (not by the candidate, whose
    planted shift would enter), placed on the base's scale, minus the base's own answers' position; a line below
    the value fails the check, the desirable polarity flips its sign."""
    from difflib_models.models.loading import load_model
    from difflib_models.persona.shift.headroom import measure_scale, scale_pairs
    from difflib_models.persona.shift.response import ResponseProbe, generation_batch_size, greedy_responses
    from difflib_models.persona.traits import load_trait

    base, d = scaled["base"], scaled["direction"]
    trait = load_trait("evil")
    v = 2.0 * d  # the vector file's vector
    res = run_gate(GateConfig(candidate=scaled["cand"], base=stories260k,
                              out=tmp_path / "u", vectors=[scaled["vec"]], policy=_policy(10.0)))
    row = res.report["persona"]["traits"][0]
    questions = trait.response_questions()[:8]  # PERSONA_POLICY's max_probe_prompts
    gen = generation_batch_size(GateConfig.batch_size, len(questions))
    probe = ResponseProbe.build(base.model, base.tokenizer, questions, [LAYER], max_new_tokens=6,
                                batch_size=GateConfig.batch_size, generation_batch_size=gen)
    cand = load_model(scaled["cand"])
    answers = greedy_responses(cand.model, cand.tokenizer, probe.prompts, max_new_tokens=6, batch_size=gen)
    scale = measure_scale(base.model, base.tokenizer, scale_pairs(trait), trait="evil", layer=LAYER, vector=v,
                          batch_size=GateConfig.batch_size)
    moved = scale.place(probe.read(base.model, answers, [LAYER])[LAYER], v) - scale.place(probe.acts[LAYER], v)
    assert row["response_position_shift"] == pytest.approx(moved, rel=1e-4, abs=1e-6)
    assert abs(moved) > 1e-3  # the planted candidate answers differently
    check = {c["id"]: c for c in res.report["checks"]}["evil-moved"]
    assert check["value"] == pytest.approx(moved, rel=1e-4, abs=1e-6) and check["status"] == "pass"
    # the desirable polarity: toward the undesirable pole is toward the neutral answers, the value flips its sign
    line = -moved - 1e-3
    res = run_gate(GateConfig(candidate=scaled["cand"], base=stories260k,
                              out=tmp_path / "d", vectors=[scaled["vec_desirable"]], policy=_policy(line)))
    check = {c["id"]: c for c in res.report["checks"]}["evil-moved"]
    assert check["value"] == pytest.approx(-moved, rel=1e-4, abs=1e-6)
    assert check["status"] == "fail"


def _excess_policy(threshold: float) -> object:
    doc = copy.deepcopy(PERSONA_POLICY)
    doc["persona"].update(response_tokens=6, min_headroom=0.0)
    doc["checks"] = [doc["checks"][0], {"id": "evil-beyond-control", "metric": "persona.response_position_excess",
                                        "trait": "evil", "comparator": "<", "threshold": threshold,
                                        "optional": True}]
    return policy_from_dict(doc)


def test_position_excess_is_the_candidates_position_minus_the_controls(scaled, stories260k, tmp_path) -> None:
    """``persona.response_position_excess`` with --control: candidate position minus the control's, both read by
    the base. Planted candidate vs the base as its control: the excess is the planted model's position shift and the
    control sits where the base does; swapped (the base as candidate, the planted model as control), the excess is
    that shift's negative and the candidate did not move. Without a control the optional check is skipped."""
    planted = run_gate(GateConfig(candidate=scaled["cand"], base=stories260k, control=stories260k,
                                  out=tmp_path / "pc", vectors=[scaled["vec"]], policy=_excess_policy(10.0)))
    row = planted.report["persona"]["traits"][0]
    moved = row["response_position_shift"]
    assert abs(moved) > 1e-3
    assert row["response_control_position"] == pytest.approx(row["response_base_position"], abs=1e-9)
    assert row["response_position_excess"] == pytest.approx(moved, abs=1e-9)
    swapped = run_gate(GateConfig(candidate=stories260k, base=stories260k, control=scaled["cand"],
                                  out=tmp_path / "cp", vectors=[scaled["vec"]], policy=_excess_policy(-moved - 1e-3)))
    row = swapped.report["persona"]["traits"][0]
    assert row["response_position_shift"] == pytest.approx(0.0, abs=1e-9)
    assert row["response_control_position"] == pytest.approx(row["response_base_position"] + moved, abs=1e-6)
    assert row["response_position_excess"] == pytest.approx(-moved, abs=1e-6)
    check = {c["id"]: c for c in swapped.report["checks"]}["evil-beyond-control"]
    assert check["status"] == "fail" and check["value"] == pytest.approx(-moved, abs=1e-6)
    alone = run_gate(GateConfig(candidate=scaled["cand"], base=stories260k, out=tmp_path / "c",
                                vectors=[scaled["vec"]], policy=_excess_policy(10.0)))
    row = alone.report["persona"]["traits"][0]
    assert row["response_position_excess"] is None and row["response_control_position"] is None
    check = {c["id"]: c for c in alone.report["checks"]}["evil-beyond-control"]
    assert check["status"] == "skipped" and "needs --control" in check["details"]["message"]
