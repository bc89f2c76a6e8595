"""One CLI grammar: short flags mean one option everywhere, comparing commands take --base/--candidate, every
command has --json, old spellings are hidden, help shows no type placeholders, docs/cli.md is current."""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import typer

from difflib_models.cli.app import _legacy_argv, app, main
from difflib_models.cli.options import resolve_persona_mode, store_layers
from difflib_models.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
COMPARING = {("diff",), ("gate",)}
OLD_SPELLINGS = {"--finetuned", "--texts", "--tracking-uri", "--mlflow", "--batch-size"}


def _leaves(cmd: Any = None, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    cmd = cmd if cmd is not None else typer.main.get_command(app)
    if hasattr(cmd, "commands"):
        return [leaf for name, sub in sorted(cmd.commands.items()) for leaf in _leaves(sub, (*path, name))]
    return [(path, cmd)]


def _options(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if getattr(p, "param_type_name", "") == "option"]


def test_tree_walk_sees_every_command() -> None:
    names = {" ".join(path) for path, _ in _leaves()}
    assert names >= {"snapshot", "inspect", "diff", "crosscoder train", "crosscoder analyze", "persona extract",
                     "persona validate", "persona filter", "persona steer", "report", "gate", "demo"}


def test_short_flags_are_unique_across_the_cli() -> None:
    meaning: dict[str, set[str]] = defaultdict(set)
    root = typer.main.get_command(app)
    for _path, cmd in [((), root), *_leaves()]:
        for p in _options(cmd):
            longs = [o for o in [*p.opts, *p.secondary_opts] if o.startswith("--")]
            for short in (o for o in p.opts if not o.startswith("--")):
                meaning[short].add(longs[0])
    clashes = {s: sorted(longs) for s, longs in meaning.items() if len(longs) > 1}
    assert not clashes, clashes
    assert meaning["-o"] == {"--out"} and meaning["-m"] == {"--model"} and meaning["-p"] == {"--prompts"}


def test_comparing_commands_take_base_and_candidate() -> None:
    for path, cmd in _leaves():
        opts = {o for p in _options(cmd) if not p.hidden for o in p.opts}
        if path in COMPARING:
            assert {"--base", "--candidate"} <= opts, path
        assert not opts & OLD_SPELLINGS - {"--mlflow", "--batch-size"}, (path, opts & OLD_SPELLINGS)
        assert "--texts" not in opts and "--tracking-uri" not in opts and "--finetuned" not in opts
        if any(o.startswith("--mlflow") for o in opts) and path != ("gate",):
            assert "--mlflow-uri" in opts and "--mlflow" not in opts, path


def test_every_command_has_a_json_flag() -> None:
    for path, cmd in _leaves():
        flags = [p for p in _options(cmd) if "--json" in p.opts]
        assert len(flags) == 1 and flags[0].is_flag and not flags[0].hidden, path


def test_help_has_no_type_placeholders(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal width
    for argv in (["--help"], ["persona", "steer", "--help"], ["diff", "--help"], ["crosscoder", "train", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code in (0, None)
        out = capsys.readouterr().out
        assert "<bool>" not in out and "<str>" not in out and "<path>" not in out and "--help" in out
    with pytest.raises(SystemExit):
        main(["crosscoder", "train", "--help"])
    out = capsys.readouterr().out
    assert "[batchtopk|topk|l1]" in out and "--mlflow-uri" in out and "--install-completion" not in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--install-completion" in capsys.readouterr().out  # shell completion is on


def test_old_spellings_are_hidden_and_warn(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:  # --finetuned and --candidate disagree: a usage error naming both
        main(["diff", "--candidate", "a", "--finetuned", "b", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--finetuned is deprecated" in err and "--candidate" in err
    assert _legacy_argv(["gate", "--json", "r.json", "--md", "x"]) == ["gate", "--json-out", "r.json", "--md", "x"]
    assert _legacy_argv(["gate", "--json", "--md", "x"]) == ["gate", "--json", "--md", "x"]
    assert _legacy_argv(["diff", "--json", "x"]) == ["diff", "--json", "x"]


def test_store_layers_grammar() -> None:
    stored = [2, 4, 6, 7]
    assert store_layers(None, stored) is None and store_layers("all", stored) is None
    assert store_layers("mid", stored) == [6]
    assert store_layers("-1", stored) == [7] and store_layers("2,-2", stored) == [2, 6]
    assert store_layers("6-7", stored) == [6, 7]
    for bad in ("3", "2-4", "x", "-5"):
        with pytest.raises(ConfigError):
            store_layers(bad, stored)


def test_auto_mode_takes_the_best_validated_mode_the_trait_supports() -> None:
    from difflib_models.persona.traits import load_trait

    for trait in ("sycophancy", "evil", "hallucination"):  # built-in traits have paired responses
        assert resolve_persona_mode("auto", load_trait(trait)) == "paired"
    assert resolve_persona_mode("ab", load_trait("evil")) == "ab"


def test_docs_cli_md_is_current() -> None:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert module.render() == current, "docs/cli.md is stale: run python scripts/cli_reference.py"
