"""Every bad file the CLI reads is one `error:` line naming the file (and line/column) with the fix, exit 2.

Issue 14 item 5: non-UTF-8 prompt, trait and policy files, invalid JSON/YAML inputs, wrong types in a policy, a
YAML alias bomb and a truncated `last.ckpt` used to end in 46-81 line tracebacks with exit 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from difflib_models.cli.app import main
from tests.test_files import ALIAS_BOMB

LATIN1 = "caf\u00e9".encode("latin-1")  # b"caf\xe9": valid latin-1, invalid UTF-8
DF_POLICY = ("name: df-only\nchecks:\n  - id: flagged\n    metric: data_filter.flagged_share\n"
             "    comparator: \"<\"\n    threshold: 0.5\n    severity: fail\n    source: policy\n")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    _, err = capsys.readouterr()
    return int(exc.value.code or 0), err


def _assert_one_line(code: int, err: str, path: Path, *parts: str) -> str:
    """Exit 2 and exactly one `error:` line (the last one) that names ``path`` and holds ``parts``."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err
    for part in (str(path), *parts):
        assert part in errors[0], (part, errors[0])
    return errors[0]


def test_non_utf8_prompt_file(tmp_path: Path, stories260k: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"Once upon a time\nThe " + LATIN1 + b" was open\n")
    code, err = _run(["snapshot", "--model", str(stories260k), "--prompts", str(prompts), "--out",
                      str(tmp_path / "store"), "--layers", "0"], capsys)
    _assert_one_line(code, err, prompts, "line 2, column 8", "0xe9 is not UTF-8", "re-save the file as UTF-8")


def test_invalid_jsonl_prompt_file(tmp_path: Path, stories260k: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "Once upon a time"}\n{"text": "The cat\n', encoding="utf-8")
    code, err = _run(["snapshot", "--model", str(stories260k), "--prompts", str(prompts), "--out",
                      str(tmp_path / "store"), "--layers", "0"], capsys)
    _assert_one_line(code, err, prompts, "line 2, column 10: not valid JSON", "fix the JSON on this line")


def test_non_utf8_trait_file(tmp_path: Path, stories260k: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trait = tmp_path / "trait.yaml"
    trait.write_bytes(b"id: my-trait\ndescription: " + LATIN1 + b"\n")
    code, err = _run(["persona", "extract", "--model", str(stories260k), "--trait", str(trait), "--out",
                      str(tmp_path / "v")], capsys)
    _assert_one_line(code, err, trait, "`trait=", "line 2, column 17", "not UTF-8")


def test_alias_bomb_trait_id(tmp_path: Path, stories260k: Path) -> None:
    """The real console entry point (`python -m difflib_models`): one line, exit 2, no expansion."""
    trait = tmp_path / "bomb.yaml"
    trait.write_text(ALIAS_BOMB, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-m", "difflib_models", "persona", "extract", "--model", str(stories260k),
                           "--trait", str(trait), "--out", str(tmp_path / "v")],
                          capture_output=True, text=True, env=env, timeout=300)
    line = _assert_one_line(proc.returncode, proc.stderr, trait, "alias bomb", "line 6, column 8")
    assert len(line) < 400, line


def test_non_utf8_policy(tmp_path: Path, stories260k: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(DF_POLICY.encode().replace(b"name: df-only", b"name: " + LATIN1))
    code, err = _run(["gate", "--candidate", str(stories260k), "--base", str(stories260k), "--policy", str(policy),
                      "--out", str(tmp_path / "out")], capsys)
    _assert_one_line(code, err, policy, "`--policy=", "line 1, column 10", "not UTF-8")


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("name: p\nchecks:\n  - id: a\n    metric: persona.shift_z\n    comparator: < \n    threshold: [1\n",
         ("line 7, column 1: not valid YAML", "fix the YAML there")),
        ("name: p\nchecks: 5\n", ("`checks=5` is invalid", "a list of check mappings")),
        (DF_POLICY.replace("    source: policy\n", "    source: policy\n    min_null_percentile: high\n"),
         ("min_null_percentile='high'", "a finite number 0 <= x <= 1")),
    ],
    ids=["invalid-yaml", "checks-not-a-list", "percentile-not-a-number"],
)
def test_bad_policy(tmp_path: Path, stories260k: Path, capsys: pytest.CaptureFixture[str], text: str,
                    parts: tuple[str, ...]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text, encoding="utf-8")
    code, err = _run(["gate", "--candidate", str(stories260k), "--base", str(stories260k), "--policy", str(policy),
                      "--out", str(tmp_path / "out")], capsys)
    _assert_one_line(code, err, policy, *parts)


@pytest.mark.parametrize("as_adapter_option", [False, True], ids=["model-dir", "--adapter"])
def test_invalid_adapter_config(tmp_path: Path, stories260k: Path, capsys: pytest.CaptureFixture[str],
                                as_adapter_option: bool) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = adapter / "adapter_config.json"
    config.write_text('{"base_model_name_or_path": "' + str(stories260k) + '",\n "r": 8,,\n}', encoding="utf-8")
    model = ["--model", str(stories260k), "--adapter", str(adapter)] if as_adapter_option else ["--model", str(adapter)]
    code, err = _run(["snapshot", *model, "--out", str(tmp_path / "store"), "--layers", "0"], capsys)
    _assert_one_line(code, err, config, "line 2, column 9: not valid JSON")


@pytest.mark.parametrize(
    ("option", "content", "parts"),
    [
        ("--data-filter", b'{"n": 100,\n "n_flagged": }', ("line 2, column 15: not valid JSON",)),
        ("--monitor", b'{"trait": "' + LATIN1 + b'"}', ("line 1, column 15", "not UTF-8")),
        ("--diff", b'{"format": "difflib_models.diff/1", "layers": [1, 2', ("line 1, column 52: not valid JSON",)),
    ],
    ids=["data-filter", "monitor", "diff"],
)
def test_bad_gate_json_inputs(tmp_path: Path, stories260k: Path, capsys: pytest.CaptureFixture[str], option: str,
                              content: bytes, parts: tuple[str, ...]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(DF_POLICY, encoding="utf-8")
    bad = tmp_path / "input.json"
    bad.write_bytes(content)
    argv = ["gate", "--candidate", str(stories260k), "--base", str(stories260k), "--policy", str(policy),
            "--out", str(tmp_path / "out"), option, str(bad)]
    if option != "--data-filter":
        good = tmp_path / "summary.json"
        good.write_text(json.dumps({"n": 100, "n_flagged": 3}), encoding="utf-8")
        argv += ["--data-filter", str(good)]
    code, err = _run(argv, capsys)
    _assert_one_line(code, err, bad, f"`{option}=", *parts)


def test_invalid_vectors_sidecar(tmp_path: Path, stories260k: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_file({"layer.0": torch.zeros(64)}, str(tmp_path / "v.safetensors"))
    sidecar = tmp_path / "v.json"
    sidecar.write_text('{"format": "difflib_models.persona_vectors"\n "trait": {}}', encoding="utf-8")
    code, err = _run(["persona", "validate", "--vectors", str(tmp_path / "v.safetensors"), "--model",
                      str(stories260k)], capsys)
    _assert_one_line(code, err, sidecar, "`--vectors=", "line 2, column 2: not valid JSON")


def test_invalid_report_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    report.write_text('{"schema_version": 1, "checks": [}', encoding="utf-8")
    code, err = _run(["report", "--from", str(tmp_path)], capsys)
    _assert_one_line(code, err, report, "`--from=", "line 1, column 34: not valid JSON")


def test_truncated_resume_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acts = tmp_path / "acts.safetensors"
    save_file({"acts": torch.randn(512, 2, 8, generator=torch.Generator().manual_seed(0))}, str(acts))
    argv = ["crosscoder", "train", "--acts", str(acts), "--out", str(tmp_path / "cc"), "--dict-size", "16", "--k", "2",
            "--steps", "4", "--batch-size", "64"]
    code, err = _run(argv, capsys)
    assert code == 0, err
    last = tmp_path / "cc" / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a crash mid-write of a non-atomic writer
    code, err = _run(argv, capsys)
    _assert_one_line(code, err, last, "truncated or corrupt", "--no-resume")
    code, err = _run([*argv, "--no-resume"], capsys)  # the fix the message gives works
    assert code == 0, err


def test_truncated_acts_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acts = tmp_path / "acts.safetensors"
    save_file({"acts": torch.zeros(64, 2, 8)}, str(acts))
    acts.write_bytes(acts.read_bytes()[:100])
    code, err = _run(["crosscoder", "train", "--acts", str(acts), "--out", str(tmp_path / "cc")], capsys)
    _assert_one_line(code, err, acts, "`--acts=", "a readable .safetensors file")


def test_invalid_model_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    model.mkdir()
    config = model / "config.json"
    config.write_text('{"model_type": "llama",\n "hidden_size": 64\n "num_hidden_layers": 5}', encoding="utf-8")
    code, err = _run(["snapshot", "--model", str(model), "--out", str(tmp_path / "store"), "--layers", "0"], capsys)
    _assert_one_line(code, err, config, "`model=", "line 3, column 2: not valid JSON")


def test_invalid_crosscoder_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acts = tmp_path / "acts.safetensors"
    save_file({"acts": torch.randn(256, 2, 8, generator=torch.Generator().manual_seed(0))}, str(acts))
    code, err = _run(["crosscoder", "train", "--acts", str(acts), "--out", str(tmp_path / "cc"), "--dict-size", "16",
                      "--k", "2", "--steps", "2", "--batch-size", "64"], capsys)
    assert code == 0, err
    config = tmp_path / "cc" / "crosscoder" / "crosscoder.json"
    config.write_text(config.read_text(encoding="utf-8")[:-20], encoding="utf-8")  # cut short
    code, err = _run(["crosscoder", "analyze", "--crosscoder", str(tmp_path / "cc"), "--acts", str(acts), "--out",
                      str(tmp_path / "analysis.json")], capsys)
    _assert_one_line(code, err, config, "`crosscoder=", "not valid JSON")
