"""CLI start-up: help never imports the heavy libraries (torch, transformers, Lightning, MLflow), and the
transformers verbosity the CLI sets while it runs holds whether or not transformers was imported before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "lightning", "pytorch_lightning", "mlflow", "matplotlib")

RUN = """
import sys
from difflib_models.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY", heavy, "CODE", code, file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["gate", "--help"], ["report", "--help"], ["persona", "filter", "--help"],
                                  ["diff", "--help"], ["crosscoder", "train", "--help"], ["demo", "--help"],
                                  ["snapshot", "--help"], ["--version"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", RUN.format(heavy=HEAVY), *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert "HEAVY [] CODE 0" in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout.strip(), "help printed nothing"
    if argv == ["--help"]:
        for command in ("gate", "report", "diff", "crosscoder", "persona", "snapshot", "demo"):
            assert command in proc.stdout


VERBOSITY = """
import logging, os, sys
from difflib_models.cli.app import _cli_warning_filters
{pre}
undo = _cli_warning_filters()
from transformers.utils import logging as hf_logging
during = hf_logging.get_verbosity()
undo()
print(during, hf_logging.get_verbosity(), os.environ.get("TRANSFORMERS_VERBOSITY"))
"""


@pytest.mark.parametrize("pre", ["", "import transformers.utils.logging"], ids=["imported-later", "imported-before"])
def test_transformers_is_quiet_while_the_cli_runs_and_restored_after(pre: str) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_VERBOSITY"}
    out = subprocess.run([sys.executable, "-c", VERBOSITY.format(pre=pre)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True, env=env).stdout.split()
    assert out == ["40", "30", "None"], out  # ERROR while running; WARNING (the default) and no variable after
