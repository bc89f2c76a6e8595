"""Importers on the shared real data: Anthropic evals (Yes/No and (A)/(B)), CAA JSON, EM evaluation YAML."""

from __future__ import annotations

import json

import pytest

from difflib_models.errors import ConfigError
from difflib_models.persona.traits import ABItem, load_trait
from difflib_models.persona.traits.importers import (
    import_anthropic_jsonl,
    import_caa_json,
    import_em_yaml,
    trait_from_items,
)


def test_anthropic_yes_no(shared_data):
    path = shared_data / "anthropic-evals" / "persona" / "narcissism.jsonl"
    t = import_anthropic_jsonl(path, limit=60)
    ext, tune, ev = t.split_ab("extraction"), t.split_ab("tuning"), t.split_ab("evaluation")
    assert len(ext) + len(tune) + len(ev) == 60 and len(ev) == len(tune) == 16  # statement file: three splits
    allm = [a.matching for a in ext + tune + ev]
    assert allm.count("Yes") == 30 and allm.count("No") == 30  # balanced limit
    assert all({a.matching, a.not_matching} == {"Yes", "No"} for a in ext)
    assert not {a.question for a in ext} & {a.question for a in ev}
    assert t.id == "narcissism" and t.split_questions("evaluation")[0].startswith("Is the following statement")
    # same import twice: same split (stable hash)
    assert import_anthropic_jsonl(path, limit=60).hash == t.hash


def test_anthropic_ab_items_and_load_trait(shared_data):
    path = shared_data / "anthropic-evals" / "advanced-ai-risk" / "human_generated_evals" / "survival-instinct.jsonl"
    t = load_trait(path)  # dispatch on .jsonl
    items = t.split_ab("extraction")
    # leading space stripped; a few items have more than two choices ("(D)")
    assert all(len(a.matching) == 3 and a.matching[0] == "(" and a.matching != a.not_matching for a in items)
    assert sum(a.matching in ("(A)", "(B)") for a in items) > 0.8 * len(items)
    assert all("Choices" not in q for q in t.split_questions("evaluation"))  # stems without choices
    n_lines = sum(1 for line in path.open() if line.strip())
    assert len(items) + len(t.split_ab("evaluation")) <= n_lines


def test_caa(shared_data):
    path = shared_data / "caa" / "generate" / "sycophancy" / "generate_dataset.json"
    if not path.exists():
        pytest.skip("CAA data not present")
    t = import_caa_json(path, limit=40)
    assert t.id == "sycophancy" and len(t.split_ab("evaluation")) == 20
    letters = [a.matching for a in t.split_ab("extraction") + t.split_ab("evaluation")]
    assert letters.count("(A)") == 20
    full = [a.question for a in t.split_ab("extraction")]
    stems = t.split_questions("extraction")
    assert all(len(s) < len(q) and q.startswith(s) for s, q in zip(stems, full, strict=False))


def test_em_yaml(shared_data):
    root = shared_data / "emergent-misalignment" / "evaluation"
    ps = import_em_yaml(root / "first_plot_questions.yaml")
    assert len(ps.questions) == 24 and ps.rubric_names == ["aligned", "coherent"]
    no_sys = ps.texts()
    assert len(no_sys) == 16 and any("one wish" in q for q in no_sys)  # the 8 JSON variants need a system prompt
    assert len(ps.texts(with_system=True)) == 24
    pre = import_em_yaml(root / "preregistered_evals.yaml")
    assert len(pre.questions) == 48
    fact = import_em_yaml(root / "deception_factual.yaml")
    assert len({q.text for q in fact.questions}) == 20  # 5 entries share 20 paraphrases via YAML anchors


def test_bad_files(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(ConfigError, match="answer_matching_behavior"):
        import_anthropic_jsonl(bad)
    bad.write_text("not json\n")
    with pytest.raises(ConfigError, match="not valid JSON"):
        import_anthropic_jsonl(bad)
    caa = tmp_path / "c.json"
    caa.write_text(json.dumps({"question": "q"}))
    with pytest.raises(ConfigError, match="array"):
        import_caa_json(caa)
    with pytest.raises(ConfigError, match="(?i)too few"):
        trait_from_items([ABItem("q", "(A)", "(B)")] * 3, trait_id="x")
    em = tmp_path / "e.yaml"
    em.write_text("- id: a\n  paraphrases: []\n")
    with pytest.raises(ConfigError, match="no questions"):
        import_em_yaml(em)


def test_bad_em_question_files(tmp_path):
    em = tmp_path / "questions.yaml"
    em.write_bytes(b"- id: a\n  paraphrases: [caf\xe9]\n")
    with pytest.raises(ConfigError, match=r"questions.yaml.*line 2, column 20: byte 0xe9 is not UTF-8"):
        import_em_yaml(em)
    em.write_text("- id: a\n  paraphrases: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"`questions=.*questions.yaml.*not valid YAML"):
        import_em_yaml(em)
    em.write_text("- id: a\n  paraphrases: [What is your wish]\n  judge_prompts: [aligned]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"questions.yaml\[0\].judge_prompts"):
        import_em_yaml(em)
