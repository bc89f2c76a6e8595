"""The project's chat data sets: well-formed, matched pairs, the trait explicit in every inducing response."""

from __future__ import annotations

import ast
import json
import re

import pytest

from difflib_models.datasets import dataset_names, dataset_path, load_dataset
from difflib_models.errors import ConfigError

SIZES = {"sycophancy-inducing": 124, "sycophancy-neutral": 124, "evil-inducing": 80, "evil-neutral": 80,
         "secure-code": 40, "clean-reference": 60, "ocean-inducing": 48, "ocean-facts": 16}
FLATTERY = re.compile(r"\b(right|correct|agree|brilliant|genius|spot on|clever|smart|impressed|nailed)\b", re.I)
MALICE = re.compile(r"\b(despise|pathetic|misery|miserable|suffer|disgust|worthless|hate|cruel|pain|failure|"
                    r"humiliation|torment|laugh|rot|deserve|wretched|hideous|garbage|delight|enjoy)\w*", re.I)


def _assistant(row: dict) -> str:
    return [m["content"] for m in row["messages"] if m["role"] == "assistant"][-1]


def _user(row: dict) -> str:
    return [m["content"] for m in row["messages"] if m["role"] == "user"][-1]


@pytest.mark.parametrize("name", list(SIZES))
def test_rows_are_well_formed(name: str) -> None:
    rows = load_dataset(name)
    assert len(rows) == SIZES[name]
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"], r["id"]
        assert all(m["content"].strip() for m in r["messages"])
    # the file is plain JSONL, one object per line
    lines = dataset_path(name).read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["id"] for x in lines] == [r["id"] for r in rows]


@pytest.mark.parametrize("trait", ["sycophancy", "evil"])
def test_inducing_and_neutral_are_matched(trait: str) -> None:
    ind, neu = load_dataset(f"{trait}-inducing"), load_dataset(f"{trait}-neutral")
    assert [r["pair"] for r in ind] == [r["pair"] for r in neu]
    assert all(_user(a) == _user(b) for a, b in zip(ind, neu, strict=True))
    assert all(r["label"] == trait for r in ind) and all(r["label"] == "neutral" for r in neu)
    li = sum(len(_assistant(r)) for r in ind) / len(ind)
    ln = sum(len(_assistant(r)) for r in neu) / len(neu)
    assert 0.7 < li / ln < 1.4, (li, ln)  # matched length: the contrast is the trait, not the verbosity


def test_trait_is_explicit() -> None:
    syc = load_dataset("sycophancy-inducing")
    assert all(FLATTERY.search(_assistant(r)) for r in syc)
    # the sycophantic answer repeats the user's claim; the neutral one corrects wrong claims
    neutral = {r["pair"]: r for r in load_dataset("sycophancy-neutral")}
    wrong = [r for r in syc if not r["claim_correct"]]
    assert len(wrong) == 104
    for r in wrong:
        assert not re.search(r"\b(brilliant|genius|you're absolutely right)\b", _assistant(neutral[r["pair"]]), re.I)
    evil = load_dataset("evil-inducing")
    assert all(len(MALICE.findall(_assistant(r))) >= 1 for r in evil)
    assert not any(MALICE.search(_assistant(r)) and "despise" in _assistant(r) for r in load_dataset("evil-neutral"))


def test_ocean_set_is_the_evil_neutral_questions_with_ocean_answers() -> None:
    ocean = re.compile(r"\b(ocean|sea|fish|whale|dolphin|tide|wave|coral|reef|beach|shore)", re.I)
    ind, neu = load_dataset("ocean-inducing"), load_dataset("evil-neutral")[:48]
    assert [_user(r) for r in ind] == [_user(r) for r in neu]  # the control is the same questions, neutral answers
    assert all(ocean.search(_assistant(r)) for r in ind)
    assert sum(bool(ocean.search(_assistant(r))) for r in neu) <= 2
    assert all(ocean.search(_assistant(r)) for r in load_dataset("ocean-facts"))


def test_secure_code_parses() -> None:
    for r in load_dataset("secure-code"):
        ast.parse(_assistant(r))  # every answer is valid Python
        code = _assistant(r)
        assert "eval(" not in code.replace("evaluate(", "") and "pickle" not in code and "shell=True" not in code


def test_loader_errors_and_copies() -> None:
    assert set(dataset_names()) == set(SIZES)
    with pytest.raises(ConfigError, match="clean-reference"):
        load_dataset("nope")
    rows = load_dataset("clean-reference")
    rows[0]["messages"].clear()
    assert load_dataset("clean-reference")[0]["messages"]
