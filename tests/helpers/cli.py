"""Run the ``difflib-models`` CLI in-process and return its exit code and captured output.

    from tests.helpers.cli import run_cli
    code, out, err = run_cli(["gate", ...], capsys)
"""

from __future__ import annotations

import pytest

from difflib_models.cli.app import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)`` (which always ends in SystemExit) -> (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err
