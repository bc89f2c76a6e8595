"""Built-in prompt sets and prompt files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from difflib_models.capture.prompts import (
    BUILTIN_SETS,
    builtin_prompts,
    load_prompt_records,
    load_prompts,
    render_messages,
)
from difflib_models.errors import ConfigError


def test_builtin_generic_set() -> None:
    prompts = builtin_prompts()
    assert len(prompts) == 64 and len(set(prompts)) == 64
    assert sum(p.endswith("?") for p in prompts) == 32  # half questions, half plain sentences
    assert all(3 <= len(p.split()) <= 20 for p in prompts)
    assert builtin_prompts("generic-questions") == [p for p in prompts if p.endswith("?")]
    prompts.append("mutated")
    assert len(builtin_prompts()) == 64  # a copy is returned
    assert load_prompts("generic") == builtin_prompts()
    with pytest.raises(ConfigError, match="generic"):
        builtin_prompts("nope")


def test_txt_file(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("first prompt\n\n  second one  \n", encoding="utf-8")
    assert load_prompts(path) == ["first prompt", "second one"]
    assert load_prompts(str(path)) == ["first prompt", "second one"]


def test_jsonl_text_and_messages(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    rows = [
        {"text": "plain text"},
        {"messages": [{"role": "user", "content": "Hi there?"}]},
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    records = load_prompt_records(path)
    assert records[0].text == "plain text" and records[1].messages == ({"role": "user", "content": "Hi there?"},)
    assert load_prompts(path) == ["plain text", "user: Hi there?\nassistant:", "user: Q\nassistant: A"]


class _ChatTokenizer:
    chat_template = "x"

    def apply_chat_template(self, messages: list[dict[str, str]], *, tokenize: bool,
                            add_generation_prompt: bool) -> str:
        assert tokenize is False
        body = "".join(f"<|{m['role']}|>{m['content']}" for m in messages)
        return body + ("<|assistant|>" if add_generation_prompt else "")


def test_messages_rendered_with_chat_template() -> None:
    msgs = [{"role": "user", "content": "Hello"}]
    assert render_messages(msgs, _ChatTokenizer()) == "<|user|>Hello<|assistant|>"
    msgs.append({"role": "assistant", "content": "Hi"})
    assert render_messages(msgs, _ChatTokenizer()) == "<|user|>Hello<|assistant|>Hi"


def test_real_tokenizer_chat_template(stories260k: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(stories260k)
    tok.chat_template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Tell a story"}]}) + "\n")
    assert load_prompts(path, tokenizer=tok) == ["[user] Tell a story\n"]


@pytest.mark.parametrize(
    ("content", "match"),
    [("", "no prompts"), ("\n  \n", "no prompts"), ('{"txt": "x"}\n', ":1: a record needs"),
     ('{"text": "ok"}\n{bad\n', "line 2, column 2: not valid JSON"), ('{"messages": []}\n', "needs")],
)
def test_bad_files_name_the_path(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / ("p.jsonl" if "{" in content else "p.txt")
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as info:
        load_prompts(path)
    assert str(path) in str(info.value)


def test_missing_file_and_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_prompts(tmp_path / "missing.txt")
    assert "missing.txt" in str(info.value) and all(name in str(info.value) for name in BUILTIN_SETS)
    (tmp_path / "p.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match=r"\.txt"):
        load_prompts(tmp_path / "p.csv")
