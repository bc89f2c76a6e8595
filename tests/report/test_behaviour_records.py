"""The behavioural section's typed records: exact JSON form, read-back, refusal of malformed blocks."""

from __future__ import annotations

import json

import pytest

from difflib_models.errors import ConfigError
from difflib_models.report.behaviour_records import (
    BalancedScores,
    BalancedSide,
    BehaviouralBlock,
    BehaviouralSection,
    BehaviourItemRow,
    PairedShift,
    RateSummary,
)
from difflib_models.report.builder import attach_behavioural, new_report
from difflib_models.report.schema import validate_report
from tests.report.synthetic import rich_report


def _block(trait: str, shift: float) -> BehaviouralBlock:
    rates = {"base": RateSummary(24, 6, 0.25, 0.12, 0.45, mean_p_matching=0.48, n_unscored=0),
             "candidate": RateSummary(24, 12, 0.5, 0.31, 0.69, mean_p_matching=0.55, n_unscored=0)}
    sides = {name: BalancedSide(n=24, n_unscored=0, mean=m, order_effect=0.01)
             for name, m in (("base", -0.2), ("candidate", -0.2 + shift))}
    paired = PairedShift(n=24, mean=shift, ci_low=shift - 0.05, ci_high=shift + 0.05, n_boot=2000, level=0.95)
    items = (BehaviourItemRow(id=f"{trait}-000", question="Q?", model="candidate", score=0.7, misaligned=True,
                              balanced_score=None),)
    return BehaviouralBlock(trait=trait, models=rates, items=items,
                            balanced=BalancedScores(models=sides, shift=paired, score="s", n_items=24, seed=0))


def test_ab_section_json_form_and_read_back() -> None:
    section = BehaviouralSection.ab({"evil": _block("evil", 0.3), "sycophancy": _block("sycophancy", 0.0)})
    out = section.to_dict()
    assert list(out) == ["mode", "judge", "trait", "models", "items", "balanced", "traits"]
    assert out["trait"] == "evil" and out["balanced"] == out["traits"]["evil"]["balanced"]
    assert list(out["traits"]["sycophancy"]) == ["mode", "judge", "trait", "models", "balanced"]  # no items
    assert list(out["models"]["base"]) == ["n", "n_misaligned", "rate", "ci_low", "ci_high", "mean_p_matching",
                                           "n_unscored"]
    assert list(out["balanced"]) == ["score", "n_items", "seed", "models", "shift", "control_shift",
                                     "excess_over_control"]
    assert out["balanced"]["control_shift"] is None and out["items"][0]["balanced_score"] is None
    report = attach_behavioural(new_report("gate"), section)
    validate_report(report)
    back = BehaviouralSection.from_report(json.loads(json.dumps(report)))
    assert back is not None
    assert back == section and back.to_dict() == out  # record -> JSON -> record
    assert section.traits["evil"].items == () and len(section.items) == 1  # items kept once, at the top
    assert back.block("sycophancy").balanced.shift.mean == 0.0 and back.block("nope") is None


def test_judge_section_keeps_the_ab_blocks() -> None:
    judged = BehaviourItemRow(question="Q?", answer="A.", model="candidate", score=10.0, coherent=90.0,
                              misaligned=True)
    section = BehaviouralSection(mode="judge", judge="openai-compatible:m", items=(judged,),
                                 models={"candidate": RateSummary(1, 1, 1.0, 0.2, 1.0, n_unscored=3)})
    out = section.to_dict()
    assert list(out) == ["mode", "judge", "models", "items"]
    assert list(out["items"][0]) == ["question", "answer", "model", "score", "coherent", "misaligned"]
    assert list(out["models"]["candidate"])[-1] == "n_unscored" and "mean_p_matching" not in out["models"]["candidate"]
    both = section.with_traits({"evil": _block("evil", 0.1)})
    assert list(both.to_dict()) == ["mode", "judge", "models", "items", "traits"]
    assert BehaviouralSection.from_dict(json.loads(json.dumps(both.to_dict()))) == both


def test_hand_written_section_reads_leniently() -> None:
    report = rich_report()
    section = BehaviouralSection.from_report(report)
    assert section is not None and section.mode == "ab_probability"
    assert section.models["candidate"].rate == report["behavioural"]["models"]["candidate"]["rate"]
    assert section.items[0].id is None and section.items[0].question.startswith("Question 0")
    assert set(section.traits) == {"evil", "sycophancy", "hallucination"}
    assert BehaviouralSection.from_report({"behavioural": None}) is None
    assert BehaviouralSection.from_report({}) is None


@pytest.mark.parametrize(("path", "bad", "match"), [
    (("models", "candidate", "n"), "24", "n"), (("mode",), "guess", "mode"),
    (("balanced", "shift", "mean"), None, "mean"), (("traits", "evil", "balanced"), [], "JSON object"),
])
def test_malformed_sections_are_refused(path: tuple[str, ...], bad: object, match: str) -> None:
    data = json.loads(json.dumps(rich_report()["behavioural"]))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(ConfigError, match=match):
        BehaviouralSection.from_dict(data)
    with pytest.raises(ConfigError, match="'n_misaligned'"):
        RateSummary.from_dict({"n": 1, "rate": 0.0, "ci_low": 0.0, "ci_high": 1.0})
