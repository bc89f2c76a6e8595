"""Write docs/cli.md from the CLI's own definitions (run: .venv/bin/python scripts/cli_reference.py)."""

from __future__ import annotations

import sys
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
    default = p.default
    shown = "" if default in (None, (), [], False) or callable(default) else f"`{default}`"
    return f"| {names} | {help_text} | {shown} |"


def main() -> None:
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
        params = [p for p in cmd.params if p.name != "help"]
        if params:
            lines += ["| option | meaning | default |", "|---|---|---|"]
            lines += [_param_row(p) for p in params]
            lines.append("")
    out = ROOT / "docs" / "cli.md"
    out.write_text("\n".join(lines) + "\n")
    sys.stderr.write(f"wrote {out}\n")


if __name__ == "__main__":
    main()
