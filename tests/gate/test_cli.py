"""Exit codes of `difflib-models gate` and `difflib-models report --from`, run in-process through main()."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from difflib_models.cli.app import main
from tests.gate.conftest import PERSONA_POLICY


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0)


@pytest.fixture()
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(PERSONA_POLICY))
    return path


def _gate(base, cand, out, policy, vec, *extra) -> list[str]:
    return ["gate", "--base", str(base), "--candidate", str(cand), "--out", str(out), "--policy", str(policy),
            "--vectors", str(vec), *extra]


def test_exit_0_on_identical_models(planted, stories260k, policy_file, tmp_path, capsys) -> None:
    md = tmp_path / "summary.md"
    code = _run(_gate(stories260k, stories260k, tmp_path / "o", policy_file, planted["vec"], "--md", str(md)))
    assert code == 0
    assert "verdict: PASS" in capsys.readouterr().out
    assert md.read_text().startswith("## ✅") and (tmp_path / "o" / "report.html").is_file()


def test_exit_1_on_planted_trait(planted, stories260k, policy_file, tmp_path) -> None:
    junit = tmp_path / "junit.xml"
    code = _run(_gate(stories260k, planted["cand"], tmp_path / "o", policy_file, planted["vec"], "--junit",
                      str(junit)))
    assert code == 1 and "<failure" in junit.read_text()
    # re-render without recomputing
    (tmp_path / "o" / "report.html").unlink()
    assert _run(["report", "--from", str(tmp_path / "o"), "--formats", "html"]) == 0
    assert "persona.shift_z" in (tmp_path / "o" / "report.html").read_text()


def test_exit_2_on_malformed_policy(planted, stories260k, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"checks": [{**PERSONA_POLICY["checks"][0], "comparator": "=<"}]}))
    assert _run(_gate(stories260k, stories260k, tmp_path / "o", bad, planted["vec"])) == 2
    assert "comparator" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing computed
    assert _run(["gate", "--base", str(stories260k)]) == 2  # missing --candidate
    assert _run(_gate(stories260k, stories260k, tmp_path / "o", bad, planted["vec"], "--fail-exit-code", "3")) == 2


def test_exit_3_on_unloadable_candidate(planted, stories260k, policy_file, tmp_path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (stories260k / name).exists():
            shutil.copy(stories260k / name, broken / name)
    (broken / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    assert _run(_gate(stories260k, broken, tmp_path / "o", policy_file, planted["vec"])) == 3
    assert "error" in capsys.readouterr().err


def test_report_from_missing_dir_is_usage_error(tmp_path) -> None:
    assert _run(["report", "--from", str(tmp_path / "nope")]) == 2
