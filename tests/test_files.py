"""difflib_models.files: every bad user file is one ConfigError line naming the file, the line/column and the fix."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import (
    check_torch_checkpoint,
    load_json,
    load_jsonl,
    load_yaml,
    parse_yaml,
    read_text,
)

# 343 bytes that expand to 9**9 = 387 million strings when every alias is followed
ALIAS_BOMB = "".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True)),
        f"id: &i [{','.join(['*h'] * 9)}]\n",
    ]
)


def _one_line(exc: pytest.ExceptionInfo[ConfigError], path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_non_utf8_names_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "prompts.txt"
    p.write_bytes(b"first line\nsecond caf" + b"\xe9 au lait\n")
    with pytest.raises(ConfigError) as exc:
        read_text(p, what="prompts")
    msg = _one_line(exc, p)
    # 'second caf' is 10 bytes: the bad byte is column 11 of line 2
    assert "line 2, column 11" in msg and "0xe9" in msg and "UTF-8" in msg and "iconv" in msg, msg


def test_utf8_bom_is_dropped_and_text_kept(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps({"k": "caf\u00e9"}).encode())
    assert load_json(p, what="x") == {"k": "caf\u00e9"}
    p.write_bytes(b"\xef\xbb\xbf{}\nab\xff\n")  # positions count from after the BOM
    with pytest.raises(ConfigError, match="line 2, column 3: byte 0xff"):
        load_json(p, what="x")


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_text(tmp_path / "nope.txt", what="prompts")
    with pytest.raises(ConfigError, match="is a directory"):
        load_json(tmp_path, what="--monitor")


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "summary.json"
    p.write_text('{"n": 100,\n  "n_flagged": }\n', encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_json(p, what="--data-filter")
    msg = _one_line(exc, p)
    assert msg.startswith("`--data-filter=") and "line 2, column 16: not valid JSON" in msg, msg


def test_deeply_nested_json_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "deep.json"
    p.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_json(p, what="--diff")


def test_jsonl_rows_lines_and_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "data.jsonl"
    # U+2028 inside a JSON string is valid JSON and must not split the row (str.splitlines would)
    p.write_text('{"a": 1}\r\n\n{"b": "x\u2028y"}\n', encoding="utf-8")
    rows = load_jsonl(p, what="data")
    assert [(r.line, r.value) for r in rows] == [(1, {"a": 1}), (3, {"b": "x\u2028y"})]
    assert rows[0].raw == '{"a": 1}'
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": 3,}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_jsonl(p, what="data")
    assert "line 3, column 9: not valid JSON" in _one_line(exc, p)


def test_parse_jsonl_names_the_source_and_line() -> None:
    from difflib_models.files import parse_jsonl

    assert [r.value for r in parse_jsonl('{"a": 1}\n\n[2]\n', what="items", path="pkg/x.jsonl")] == [{"a": 1}, [2]]
    with pytest.raises(ConfigError, match=r"pkg/x\.jsonl.*line 2, column 2: not valid JSON"):
        parse_jsonl('{"a": 1}\n{bad\n', what="items", path="pkg/x.jsonl")


def test_the_library_has_one_jsonl_reader() -> None:
    """Every JSONL file is parsed by difflib_models.files (load_jsonl / parse_jsonl): no module parses lines
    with json.loads itself, so every bad line is the same ConfigError naming the file and line."""
    import ast

    import difflib_models

    root = Path(difflib_models.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "files.py" and path.parent == root:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        comps = ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
        for loop in (n for n in ast.walk(tree) if isinstance(n, ast.For | comps)):
            gens = [loop] if isinstance(loop, ast.For) else loop.generators
            targets = {t.id for g in gens for t in ast.walk(g.target) if isinstance(t, ast.Name)}
            body = loop.body if isinstance(loop, ast.For) else [loop]
            for node in (n for b in body for n in ast.walk(b)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "loads"
                        and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in targets):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text("name: p\nchecks:\n  - id: a\n    metric: b: c\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_yaml(p, what="--policy")
    assert "line 4, column 14: not valid YAML (mapping values are not allowed here)" in _one_line(exc, p)


def test_yaml_python_tags_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text("id: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1, column 5: not valid YAML .*could not determine a constructor"):
        load_yaml(p, what="trait")


def test_alias_bomb_is_rejected_without_expanding(tmp_path: Path) -> None:
    assert len(ALIAS_BOMB) < 350
    p = tmp_path / "bomb.yaml"
    p.write_text(ALIAS_BOMB, encoding="utf-8")
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as exc:
            load_yaml(p, what="trait")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "alias bomb" in _one_line(exc, p)
    assert peak < 20e6, peak  # unbounded expansion took 359 MB


def test_aliases_within_the_cap_still_load(shared_data: Path) -> None:
    # the EM evaluation files share judge prompts through anchors/aliases
    path = shared_data / "emergent-misalignment" / "evaluation" / "first_plot_questions.yaml"
    data = load_yaml(path, what="questions")
    prompts = [e["judge_prompts"] for e in data if "judge_prompts" in e]
    assert len(prompts) > 1 and all(p is prompts[0] for p in prompts)  # one shared object, not copies
    assert parse_yaml("a: &x [1, 2]\nb: *x\n", what="t", path="t.yaml") == {"a": [1, 2], "b": [1, 2]}


def test_alias_cap_counts_expanded_nodes() -> None:
    doc = "a: &x [1, 2, 3]\n" + "".join(f"k{i}: *x\n" for i in range(10))  # 10 aliases x 4 nodes
    assert len(parse_yaml(doc, what="t", path="t.yaml", max_alias_nodes=40)) == 11
    with pytest.raises(ConfigError, match="more than 39 nodes"):
        parse_yaml(doc, what="t", path="t.yaml", max_alias_nodes=39)


def test_recursive_alias_is_rejected() -> None:
    with pytest.raises(ConfigError, match="line 1, column 8: .*recursive alias"):
        parse_yaml("a: &a [*a]\n", what="trait", path="t.yaml")


def test_bad_value_of_a_huge_value_is_short_and_cheap() -> None:
    value: list = ["lol"] * 9
    for _ in range(8):
        value = [value] * 9  # what the alias bomb constructs: 387 million leaves by reference
    tracemalloc.start()
    try:
        msg = bad_value("id", value, "a string")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert msg.startswith("`id=[[[[") and len(msg) < 260 and peak < 5e6, (len(msg), peak)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.arange(1000.0)}, "global_step": 3}, p)
    assert check_torch_checkpoint(p, what="resume checkpoint", fix="delete it") == p
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError) as exc:
        check_torch_checkpoint(p, what="resume checkpoint", fix="delete it")
    assert "truncated or corrupt; delete it" in _one_line(exc, p)
