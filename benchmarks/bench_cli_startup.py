"""How long the CLI takes to answer help: ``difflib-models --help`` and sub-command help, side by side with the
floor of any typer CLI (an interpreter that imports typer) and with an interpreter that imports torch.

    python -m benchmarks.bench_cli_startup [--repeats 5]

Every command runs in a fresh interpreter (the venv's own ``python``, this checkout first on ``sys.path``, from a
scratch directory), rounds interleaved so that machine load hits every command alike; the median wall time per
command and the ratios help / typer floor and torch import / ``--help`` are reported. Each help run also reports
which heavy modules it imported (none is the point: tests/cli/test_startup.py asserts that). Results:
``benchmarks/results/cli_startup.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info, write_results

logger = logging.getLogger("benchmarks.bench_cli_startup")

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "lightning", "mlflow", "matplotlib")
HELP_LINES: dict[str, list[str]] = {
    "--help": ["--help"], "--version": ["--version"], "gate --help": ["gate", "--help"],
    "diff --help": ["diff", "--help"], "persona filter --help": ["persona", "filter", "--help"],
    "crosscoder train --help": ["crosscoder", "train", "--help"],
}
CLI = ("import sys\nfrom difflib_models.cli.app import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
       "print('HEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n")
FLOORS: dict[str, str] = {"import typer (floor)": "import typer", "import torch": "import torch"}


def _run(code: str, argv: list[str], cwd: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv}: exit {proc.returncode}: {proc.stderr[-500:]}")
    heavy = next((line[6:] for line in proc.stderr.splitlines() if line.startswith("HEAVY=")), "")
    return wall, heavy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default="cli_startup")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    machine = machine_info()
    times: dict[str, list[float]] = {k: [] for k in [*HELP_LINES, *FLOORS]}
    heavy: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.repeats):
            for label, argv in HELP_LINES.items():
                wall, heavy[label] = _run(CLI.format(heavy=HEAVY), argv, scratch)
                times[label].append(wall)
            for label, code in FLOORS.items():
                times[label].append(_run(code, [], scratch)[0])
    median = {k: round(statistics.median(v), 3) for k, v in times.items()}
    floor, torch_s = median["import typer (floor)"], median["import torch"]
    for label in HELP_LINES:
        logger.info("%-26s %.3f s (%.2fx the typer floor), heavy modules: %s", label, median[label],
                    median[label] / floor, heavy[label] or "none")
    write_results(args.name, {
        "config": vars(args), "median_seconds": median, "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "heavy_modules_imported": heavy,
        "ratio_help_to_typer_floor": round(median["--help"] / floor, 2),
        "ratio_torch_import_to_help": round(torch_s / median["--help"], 2),
        "ratio_slowest_help_to_typer_floor": round(max(median[k] for k in HELP_LINES) / floor, 2),
    }, machine)


if __name__ == "__main__":
    main()
