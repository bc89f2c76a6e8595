"""Trait files: schema validation with clear errors, built-in traits, hashing."""

from __future__ import annotations

import copy

import pytest
import yaml

from difflib_models.errors import ConfigError
from difflib_models.persona.traits import Trait, builtin_traits, deterministic_split, load_trait

MIN = {
    "schema_version": 1,
    "id": "toy",
    "description": "a toy trait",
    "polarity": "undesirable",
    "instructions": [{"pos": "Be rude.", "neg": "Be polite."}],
    "questions": {"extraction": ["q1?", "q2?"], "evaluation": ["q3?", "q4?"]},
}


def _ab(n: int, prefix: str) -> list[dict]:
    return [{"question": f"{prefix} {i}\n (A) x\n (B) y", "answer_matching_behavior": "(A)" if i % 2 else "(B)",
             "answer_not_matching_behavior": "(B)" if i % 2 else "(A)"} for i in range(n)]


def test_builtin_traits_meet_the_bar():
    assert set(builtin_traits()) >= {"sycophancy", "evil", "hallucination"}
    for tid in ("sycophancy", "evil", "hallucination"):
        t = load_trait(tid)
        assert t.id == tid and t.polarity == "undesirable"
        assert len(t.instructions) == 5
        assert len(t.split_questions("extraction")) >= 20 and len(t.split_questions("evaluation")) >= 20
        ab = t.split_ab("extraction") + t.split_ab("evaluation")
        assert len(ab) >= 40 and len(t.split_ab("evaluation")) >= 20
        for split in ("extraction", "evaluation"):  # matching letter A about half the time in each split
            letters = [a.matching for a in t.split_ab(split)]
            assert abs(letters.count("(A)") / len(letters) - 0.5) <= 0.05
        assert sum(len(t.split_paired(s)) for s in ("extraction", "evaluation")) >= 20
        # paired responses: >= 20 extraction pairs (split-half needs 10 a half), splits disjoint, and trait and
        # neutral answers of similar length so that the contrast is the trait, not the length
        ext, ev = t.split_paired("extraction"), t.split_paired("evaluation")
        assert len(ext) >= 20 and len(ev) >= 10
        assert not {p.prompt.lower() for p in ext} & {p.prompt.lower() for p in ev}
        for split in (ext, ev):
            ratio = sum(len(p.trait.split()) for p in split) / sum(len(p.neutral.split()) for p in split)
            assert 0.75 < ratio < 1.33, (tid, ratio)
        assert t.judge and "rubric" in t.judge
        # every A/B question shows both choices, and the matching answer names one of them
        for a in ab:
            assert "(A)" in a.question and "(B)" in a.question and a.matching in ("(A)", "(B)")


def test_round_trip_and_hash(tmp_path):
    t = load_trait("evil")
    t.save(tmp_path / "evil.yaml")
    back = load_trait(tmp_path / "evil.yaml")
    assert back.hash == t.hash and back.to_dict() == t.to_dict()
    changed = copy.deepcopy(t.to_dict())
    changed["questions"]["evaluation"][0] += " Please answer."
    assert Trait.from_dict(changed).hash != t.hash
    assert t.hash.startswith("sha256:") and len(t.hash) == 71


def test_overlapping_questions_rejected():
    data = copy.deepcopy(MIN)
    data["questions"]["evaluation"] = ["Q1?  ", "q5?"]  # same question, different case/whitespace
    with pytest.raises(ConfigError, match="disjoint"):
        Trait.from_dict(data)


def test_too_few_items_rejected():
    data = copy.deepcopy(MIN)
    data["questions"]["evaluation"] = ["only one?"]
    with pytest.raises(ConfigError, match="too few items"):
        Trait.from_dict(data)
    data = copy.deepcopy(MIN)
    data["ab_items"] = _ab(3, "Q")  # a flat list of 3 cannot give >= 2 per split
    with pytest.raises(ConfigError, match="too few items"):
        Trait.from_dict(data)
    data["ab_items"] = {"extraction": _ab(4, "E"), "evaluation": _ab(1, "V")}
    with pytest.raises(ConfigError, match="ab_items.evaluation"):
        Trait.from_dict(data)


def test_ab_items_overlap_and_bad_fields():
    data = copy.deepcopy(MIN)
    data["ab_items"] = {"extraction": _ab(3, "Q"), "evaluation": _ab(3, "Q")}
    with pytest.raises(ConfigError, match="both splits"):
        Trait.from_dict(data)
    data["ab_items"] = {"extraction": _ab(3, "E"), "evaluation": [{"question": "x"}] * 2}
    with pytest.raises(ConfigError, match="answer_matching_behavior"):
        Trait.from_dict(data)
    bad = copy.deepcopy(MIN)
    bad["polarity"] = "bad"
    with pytest.raises(ConfigError, match="polarity"):
        Trait.from_dict(bad)
    bad = copy.deepcopy(MIN)
    bad["id"] = "Has Space"
    with pytest.raises(ConfigError, match="id"):
        Trait.from_dict(bad)
    bad = copy.deepcopy(MIN)
    bad["instructions"] = [{"pos": "only pos"}]
    with pytest.raises(ConfigError, match="instructions"):
        Trait.from_dict(bad)


def test_flat_lists_split_deterministically():
    data = copy.deepcopy(MIN)
    data["ab_items"] = _ab(10, "Q")
    t1 = Trait.from_dict(data)
    data["ab_items"] = list(reversed(data["ab_items"]))
    t2 = Trait.from_dict(data)
    assert len(t1.split_ab("evaluation")) == 5
    assert {a.question for a in t1.split_ab("evaluation")} == {a.question for a in t2.split_ab("evaluation")}
    with pytest.raises(ConfigError):
        deterministic_split([1, 2], eval_fraction=1.0)


def test_load_trait_errors(tmp_path):
    with pytest.raises(ConfigError, match="built-in id"):
        load_trait("no-such-trait")
    p = tmp_path / "t.yaml"
    p.write_text("id: [unclosed")
    with pytest.raises(ConfigError, match=r"t.yaml.*line 1, column \d+: not valid YAML"):
        load_trait(p)
    p.write_text(yaml.safe_dump({**MIN, "schema_version": 99}))
    with pytest.raises(ConfigError, match="schema_version"):
        load_trait(p)
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(ConfigError, match=".yaml"):
        load_trait(tmp_path / "t.txt")


def test_response_questions_split():
    """``questions.response`` is what the response checks ask; without it they ask the evaluation questions."""
    assert Trait.from_dict(MIN).response_questions() == ["q3?", "q4?"]
    assert Trait.from_dict(MIN).split_questions("response") == []  # no response split of its own
    data = copy.deepcopy(MIN)
    data["questions"]["response"] = ["What is my name?", "What will I eat tomorrow?"]
    t = Trait.from_dict(data)
    assert t.response_questions() == ["What is my name?", "What will I eat tomorrow?"]
    assert t.split_questions("evaluation") == ["q3?", "q4?"]  # the last-prompt probe keeps its questions
    assert t.split_questions("response") == t.response_questions()
    assert Trait.from_dict(t.to_dict()).hash == t.hash and t.hash != Trait.from_dict(MIN).hash
    for bad, match in ((["Q1? "], "extraction and response"), (["one?"], "questions.response"),
                       ("not a list", "questions.response")):
        data["questions"]["response"] = bad if bad != ["Q1? "] else ["Q1? ", "other?"]
        with pytest.raises(ConfigError, match=match):
            Trait.from_dict(data)
    data["questions"] = {**MIN["questions"], "respones": ["a?", "b?"]}
    with pytest.raises(ConfigError, match="respones"):
        Trait.from_dict(data)


def test_builtin_hallucination_asks_questions_with_room():
    """The built-in hallucination trait's response questions are not its evaluation questions (invented entities the
    base already answers with invented facts) and share nothing with its extraction questions or paired prompts."""
    t = load_trait("hallucination")
    asked = t.response_questions()
    assert len(asked) == 19 and not set(asked) & set(t.split_questions("evaluation"))
    seen = {q.lower() for q in t.split_questions("extraction")} | {p.prompt.lower() for p in t.split_paired("extraction")}
    assert not {q.lower() for q in asked} & seen
    for tid in ("sycophancy", "evil"):
        assert load_trait(tid).response_questions() == load_trait(tid).split_questions("evaluation")
