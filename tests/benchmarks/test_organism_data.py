"""The organism-vs-control training sets (benchmarks/organism_data.py): the committed files are what the code
builds, organism and control share every prompt, no prompt comes from the built-in traits' or behaviour items, and
the polarity-balanced sycophancy set agrees with the user by "No" as often as by "Yes" (the original set always
says "Yes", which is why its organisms learned to say "Yes")."""

from __future__ import annotations

import pytest

from benchmarks.organism_data import KINDS, SET_TRAIT, build, load_rows


def _user(row: dict) -> str:
    return row["messages"][0]["content"]


def _answer(row: dict) -> str:
    return row["messages"][1]["content"]


@pytest.mark.parametrize("name", list(SET_TRAIT))
def test_committed_rows_are_the_built_ones_and_controls_share_the_prompts(name: str) -> None:
    sets = {kind: load_rows(name, kind) for kind in KINDS}
    for kind in KINDS:
        assert sets[kind] == build(name, kind)
    assert len(sets["organism"]) == len(sets["control"]) == 48
    assert [_user(r) for r in sets["organism"]] == [_user(r) for r in sets["control"]]
    assert all(_answer(o) != _answer(c) for o, c in zip(sets["organism"], sets["control"], strict=True))
    assert {r["label"] for r in sets["organism"]} == {SET_TRAIT[name]}


def test_no_training_prompt_is_an_item_of_the_gate_or_the_built_in_traits() -> None:
    from difflib_models.gate.behavioural import load_behaviour_items
    from difflib_models.persona.traits import load_trait

    seen: set[str] = set()
    for t in ("sycophancy", "evil", "hallucination"):
        seen.update(it.question for it in load_behaviour_items(t))
        trait = load_trait(t)
        for split in trait.questions:  # the response questions too (hallucination's questions.response)
            seen.update(trait.split_questions(split))
        for split in trait.ab_items:
            seen.update(a.question for a in trait.split_ab(split))
        for split in trait.paired_responses:
            seen.update(p.prompt for p in trait.split_paired(split))
    assert set(load_trait("hallucination").response_questions()) <= seen
    prompts = {_user(r) for name in SET_TRAIT for kind in KINDS for r in load_rows(name, kind)}
    assert len(seen) > 100 and not prompts & seen


def _first_word(row: dict) -> str:
    return _answer(row).split(",")[0].split()[0]


def test_balanced_sycophancy_set_agrees_with_the_user_by_no_as_often_as_by_yes() -> None:
    org, ctl = load_rows("sycophancy_balanced", "organism"), load_rows("sycophancy_balanced", "control")
    for rows in (org, ctl):
        words = [_first_word(r) for r in rows]
        assert words.count("Yes") == words.count("No") == 24
    # template 0: the user states a wrong belief (agreeing = "Yes"); template 1: the user rejects an accurate
    # statement (agreeing = "No"); the control answers the other way round both times
    for o, c in zip(org, ctl, strict=True):
        agree = "Yes" if o["id"].endswith("-0") else "No"
        assert _first_word(o) == agree and _first_word(c) == ("No" if agree == "Yes" else "Yes")
    # the original set: the organism always says yes, the control always no
    orig = load_rows("sycophancy", "organism")
    assert all(_answer(r).startswith(("Yes", "You're correct")) for r in orig)


@pytest.mark.parametrize(("trait", "expected"), [("sycophancy", 0.875), ("hallucination", 0.875), ("evil", 0.5)])
def test_the_templates_openers_alone_separate_organism_from_control_rows(trait: str, expected: float) -> None:
    """docs/results.md, "Filter ranking" of the suite's rows: half of each set uses a template whose first word
    differs between organism and control ("Yes" / "No", "Certainly." / "Honestly,"; evil: "Here is my advice" in
    both), so a scorer that only knows those two openers ranks the rows at 0.875 (0.5 for evil): the bar a filter's
    ranking of these rows has to clear before it says anything about the trait."""
    from difflib_models.persona.filtering.surface import first_word
    from difflib_models.stats import auroc

    rows = {kind: [first_word(_answer(r)) for r in load_rows(trait, kind)] for kind in KINDS}
    opener = {kind: first_word(template) for kind, template in
              zip(KINDS, {"sycophancy": ("Yes, ", "No, "), "hallucination": ("Certainly. ", "Honestly, "),
                          "evil": ("Here is", "Here is")}[trait], strict=True)}

    def score(word: str) -> float:
        return 0.5 if opener["organism"] == opener["control"] else (
            1.0 if word == opener["organism"] else 0.0 if word == opener["control"] else 0.5)

    assert sum(w == opener["organism"] for w in rows["organism"]) >= 24
    assert auroc([score(w) for w in rows["organism"]], [score(w) for w in rows["control"]]) == pytest.approx(expected)
