"""Write docs/cli.md from the CLI's own definitions (run: .venv/bin/python scripts/cli_reference.py).

tests/cli/test_grammar.py renders it in memory and fails when docs/cli.md differs: re-run this script after
changing an option."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from difflib_models.cli.app import app

ROOT = Path(__file__).resolve().parent.parent


def _walk(cmd: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    out = [(path, cmd)]
    if hasattr(cmd, "commands"):
        for name in sorted(cmd.commands):
            out.extend(_walk(cmd.commands[name], [*path, name]))
    return out


def _param_row(p: Any) -> str:
    if getattr(p, "param_type_name", "") == "argument":
        names = f"`{(p.name or '').upper()}` (argument)"
    else:
        names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
    help_text = (getattr(p, "help", None) or "").replace("|", "\\|").replace("\n", " ")
    default = p.default.value if isinstance(p.default, Enum) else p.default
    desc = getattr(p, "type_descriptor", None)
    choices = desc.choices if desc is not None and desc.is_choice else None
    if choices:
        help_text += (" " if help_text else "") + "One of: " + ", ".join(
            f"`{c.value if isinstance(c, Enum) else c}`" for c in choices) + "."
    shown = "" if default is None or default is False or default in ((), []) or callable(default) else f"`{default}`"
    return f"| {names} | {help_text} | {shown} |"


def render() -> str:
    """docs/cli.md's text, from the command definitions (hidden deprecated spellings left out)."""
    root = typer.main.get_command(app)
    lines = [
        "# CLI reference",
        "",
        "Generated from the command definitions by `scripts/cli_reference.py`; `difflib-models COMMAND --help` shows",
        "the same. Exit codes everywhere: 0 success / gate pass, 1 gate failed (configurable), 2 usage or configuration",
        "error, 3 runtime error.",
        "",
        "Outputs: every command writes inside its `--out` (and to output paths you name explicitly, such as `gate",
        "--json/--md/--junit` or `--tracking-uri`; without `--out`, `persona validate` writes VECTORS.validation.json",
        "and `report` re-renders next to report.json); inputs are never written. An output that is an input file, or",
        "an `--out` inside an input directory (a model or adapter), is refused before anything loads (exit 2).",
        "",
    ]
    for path, cmd in _walk(root, []):
        if not path or hasattr(cmd, "commands"):
            continue
        lines += [f"## `difflib-models {' '.join(path)}`", "", (cmd.help or "").strip(), ""]
        params = [p for p in cmd.params if p.name != "help" and not getattr(p, "hidden", False)]
        if params:
            lines += ["| option | meaning | default |", "|---|---|---|"]
            lines += [_param_row(p) for p in params]
            lines.append("")
    lines += [
        "## Conventions",
        "",
        "`--model` names one model; `--base` / `--candidate` (and `--control`) a comparison; `--prompts` a text set;",
        "`--mlflow-uri` / `--mlflow-experiment` MLflow; `--layers` takes '3', '0,2', '2-4', 'mid', 'all', '-1'",
        "everywhere (over a store's layers in `crosscoder`); a short flag means the same option in every command;",
        "`--json` prints one JSON document on stdout and nothing else (logs and progress bars go to stderr; bars only",
        "on a terminal). Shell completion: `difflib-models --install-completion`.",
        "",
        "Old spellings accepted for one release, with a warning on stderr (hidden from `--help`):",
        "",
    ]
    for path, cmd in _walk(root, []):
        hidden = [o for p in getattr(cmd, "params", []) if getattr(p, "hidden", False) for o in p.opts]
        if path and hidden:
            lines.append(f"- `{' '.join(path)}`: " + ", ".join(f"`{o}`" for o in hidden))
    lines.append("- `gate`: `--json PATH` (now `--json-out PATH`; `--json` alone prints the report)")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = ROOT / "docs" / "cli.md"
    out.write_text(render(), encoding="utf-8")
    sys.stderr.write(f"wrote {out}\n")


if __name__ == "__main__":
    main()
