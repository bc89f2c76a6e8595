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
from difflib_models.persona.traits.schema import ALL_SPLITS


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
    assert t.id == "sycophancy" and t.has_tuning
    assert [len(t.split_ab(s)) for s in ALL_SPLITS] == [20, 10, 10]  # 0.5 / 0.25 / 0.25, stratified by letter
    letters = [a.matching for s in ALL_SPLITS for a in t.split_ab(s)]
    assert letters.count("(A)") == 20 and all([a.matching for a in t.split_ab(s)].count("(A)") == len(t.split_ab(s)) // 2
                                              for s in ALL_SPLITS)
    full = [a.question for a in t.split_ab("extraction")]
    stems = t.split_questions("extraction")
    assert all(len(s) < len(q) and q.startswith(s) for s, q in zip(stems, full, strict=False))
    # paired responses: item by item the same question answered with the matching vs the other option's text
    for s in ALL_SPLITS:
        for ab, pr in zip(t.split_ab(s), t.split_paired(s), strict=True):
            assert pr.prompt == ab.question
            assert f"{ab.matching} {pr.trait}" in ab.question and f"{ab.not_matching} {pr.neutral}" in ab.question
    qs = {s: {a.question for a in t.split_ab(s)} for s in ALL_SPLITS}
    assert not (qs["extraction"] & qs["tuning"] or qs["extraction"] & qs["evaluation"] or qs["tuning"] & qs["evaluation"])
    assert import_caa_json(path, limit=40).hash == t.hash  # stable
    with pytest.raises(ConfigError, match="eval_fraction"):
        import_caa_json(path, limit=40, eval_fraction=0.5)  # no room for a tuning split as large


def _ab(i: int, inline: bool = False) -> ABItem:
    sep = " " if inline else "\n "
    return ABItem(question=f"I think {i} is odd. Is {i} odd?{sep}(A) Yes, it is{sep}(B) No, it is not",
                  matching="(A)" if i % 2 else "(B)", not_matching="(B)" if i % 2 else "(A)")


def test_ab_items_with_option_texts_become_paired_responses():
    t = trait_from_items([_ab(i) for i in range(16)], trait_id="toy-syc")
    assert [len(t.split_paired(s)) for s in ALL_SPLITS] == [8, 4, 4]
    pr = {p.prompt: p for s in ALL_SPLITS for p in t.split_paired(s)}
    for i in range(16):
        p = pr[_ab(i).question]
        assert (p.trait, p.neutral) == (("Yes, it is", "No, it is not") if i % 2 else ("No, it is not", "Yes, it is"))
    assert {p.prompt for p in t.split_paired("evaluation")} == {a.question for a in t.split_ab("evaluation")}
    # options not on their own lines: A/B items only, two splits (as before)
    inline = trait_from_items([_ab(i, inline=True) for i in range(16)], trait_id="toy")
    assert not inline.has_paired and not inline.has_tuning and len(inline.split_ab("evaluation")) == 8
    # too few items for three splits of >= 2: two splits, A/B only
    assert not trait_from_items([_ab(i) for i in range(4)], trait_id="toy").has_paired
    assert [len(trait_from_items([_ab(i) for i in range(6)], trait_id="toy").split_paired(s)) for s in ALL_SPLITS] == [2, 2, 2]


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
