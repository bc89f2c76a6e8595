from __future__ import annotations

import importlib.util
import json

import pytest

from difflib_models.diffing.sources import load_texts
from difflib_models.errors import ConfigError
from tests.diffing._helpers import make_word_tokenizer

TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"


class FakeDataset:
    """Duck-typed stand-in for datasets.Dataset (column_names + row iteration)."""

    column_names = ["story", "id"]

    def __init__(self, rows):
        self.rows = rows

    def __iter__(self):
        return iter(self.rows)


def test_txt_and_jsonl_and_lists(tmp_path) -> None:
    txt = tmp_path / "t.txt"
    txt.write_text("first line\n\n second \n")
    assert load_texts(txt) == ["first line", " second "]
    jl = tmp_path / "t.jsonl"
    tok = make_word_tokenizer()
    tok.chat_template = TEMPLATE
    rows = [{"text": "plain row"},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert load_texts(jl, tokenizer=tok) == ["plain row", "<user>hi</user><assistant>yo</assistant>"]
    assert load_texts(["a", "b", "c"], limit=2) == ["a", "b"]
    ds = FakeDataset([{"story": "s1", "id": 1}, {"story": "s2", "id": 2}, {"story": "s3", "id": 3}])
    assert load_texts(ds, text_field="story", limit=2) == ["s1", "s2"]


def test_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_texts(tmp_path / "missing.txt")
    empty = tmp_path / "e.txt"
    empty.write_text("\n\n")
    with pytest.raises(ConfigError, match="non-empty"):
        load_texts(empty)
    chat = [{"messages": [{"role": "user", "content": "hi"}]}]
    with pytest.raises(ConfigError, match="chat_template"):
        load_texts(chat, tokenizer=make_word_tokenizer())
    with pytest.raises(ConfigError, match="text_field"):
        load_texts(FakeDataset([{"story": "x"}]))
    bad = tmp_path / "b.jsonl"
    bad.write_text("{not json}\n")
    with pytest.raises(ConfigError, match=r"b.jsonl.*line 1, column 2: not valid JSON"):
        load_texts(bad)


@pytest.mark.skipif(importlib.util.find_spec("difflib_models.capture.prompts") is None,
                    reason="capture/prompts.py not present")
def test_builtin_generic_set() -> None:
    from difflib_models.capture.prompts import builtin_prompts

    texts = load_texts("generic")
    assert texts == [t for t in builtin_prompts("generic") if t.strip()] and len(texts) >= 16
    assert load_texts(None, limit=3) == texts[:3]


def test_split_and_select_stories() -> None:
    from difflib_models.diffing.sources import select_by_keyword, split_stories

    text = "A fish swam.\n\nThe fish was happy.\nA dog ran.\n\nIt ran fast.\nFishing boats sailed.\n"
    stories = split_stories(text)
    assert stories == ["A fish swam.\n\nThe fish was happy.", "A dog ran.\n\nIt ran fast.", "Fishing boats sailed."]
    assert select_by_keyword(stories, "fish", min_hits=2) == [stories[0]]
    assert select_by_keyword(stories, ["fish"]) == [stories[0], stories[2]]
    assert select_by_keyword(stories, "fish", exclude=True) == [stories[1]]
    with pytest.raises(ConfigError, match="keywords"):
        select_by_keyword(stories, "")


def test_real_sample_splits_into_about_1100_stories(tinystories_text) -> None:
    from difflib_models.diffing.sources import split_stories

    stories = split_stories(tinystories_text.read_text(encoding="utf-8"))
    assert 1050 <= len(stories) <= 1150
    assert all(s.strip() for s in stories)
