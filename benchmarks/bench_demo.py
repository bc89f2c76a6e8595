"""Wall time of ``difflib-models demo --quick``: a first run in a fresh directory, then a re-run that reuses the
finished stages and the cached model conversion.

    python -m benchmarks.bench_demo [--rows N] [--steps N] [--profile quick|full]

Each run is a separate ``python -m difflib_models demo`` process (imports included, as a user sees it); its wall
time, its CPU time (user + system of the child, all threads) and the per-stage timings from the demo's
``summary.json`` are recorded. On a machine shared with other jobs wall time overstates the cost; CPU time / the
number of cores is the lower bound an idle machine of that size could reach, so both are reported, with the load
average. ``--rows``/``--steps`` shrink the profile (recorded in the result). Results: ``benchmarks/results/demo.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import load_average, machine_info, write_results

logger = logging.getLogger("benchmarks.bench_demo")

LIMIT_S = 300.0
"""The quick profile's goal: within 5 minutes on a 2-core CPU."""


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_once(out: Path, uri: str, profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if overrides:  # the CLI has no override options: go through the library in a child process
        code = (
            "import json,sys; from difflib_models.demo.config import DemoConfig; "
            "from difflib_models.demo.runner import run_demo; "
            f"r = run_demo(DemoConfig(out={str(out)!r}, profile={profile!r}, tracking_uri={uri!r}, "
            f"overrides={overrides!r})); sys.exit(0 if r.as_expected else 1)"
        )
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [
            sys.executable,
            "-m",
            "difflib_models",
            "demo",
            "--out",
            str(out),
            "--mlflow-uri",
            uri,
            "--quick" if profile == "quick" else "--full",
        ]
    env = dict(
        os.environ, DIFFLIB_MODELS_NO_PROGRESS="1", HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true"
    )
    load0 = load_average()
    cpu0, t0 = _child_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return {
        "returncode": proc.returncode,
        "wall_s": wall,
        "cpu_s": cpu,
        "load_average_before": load0,
        "load_average_after": load_average(),
        "stage_timings_s": summary.get("timings_s"),
        "reused": summary.get("reused"),
        "verdicts": {n: r["gate"]["verdict"] for n, r in (summary.get("runs") or {}).items()},
        "stderr_tail": proc.stderr[-1500:] if proc.returncode not in (0, 1) else "",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument("--rows", type=int, default=None, help="override train_rows (smaller, faster)")
    parser.add_argument("--steps", type=int, default=None, help="override steps")
    parser.add_argument("--cores", type=int, default=2, help="cores of the target machine for the projection")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in (("train_rows", args.rows), ("steps", args.steps)) if v is not None}
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        out = Path(tmp) / "demo"
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        first = run_once(out, uri, args.profile, overrides)
        logger.info(
            "first run: %.1f s wall, %.1f s CPU, rc %s", first["wall_s"], first["cpu_s"], first["returncode"]
        )
        rerun = run_once(out, uri, args.profile, overrides)
        logger.info(
            "re-run: %.1f s wall, %.1f s CPU, rc %s", rerun["wall_s"], rerun["cpu_s"], rerun["returncode"]
        )
    cores = min(args.cores, os.cpu_count() or args.cores)
    projected = first["cpu_s"] / cores
    payload = {
        "description": __doc__.strip().splitlines()[0],
        "profile": args.profile,
        "overrides": overrides,
        "first_run": first,
        "rerun": rerun,
        "first_run_s": first["wall_s"],
        "rerun_s": rerun["wall_s"],
        "speedup": first["wall_s"] / rerun["wall_s"] if rerun["wall_s"] > 0 else None,
        "first_run_cpu_s": first["cpu_s"],
        "projected_idle_wall_s": {
            "lower_bound_cpu_over_cores": projected,
            "upper_bound_cpu_s": first["cpu_s"],
            "cores": cores,
        },
        "within_5_minutes_projected": projected <= LIMIT_S,
        "ratio_rerun_over_first": rerun["wall_s"] / first["wall_s"] if first["wall_s"] > 0 else None,
        "notes": "projected_idle_wall_s: on an idle machine with `cores` cores the first run takes between "
        "cpu_s / cores (perfect use of every core) and cpu_s (one core busy); wall_s on a shared machine "
        "includes waiting for a core.",
    }
    path = write_results("demo", payload, machine)
    print(
        f"demo first run {first['wall_s']:.1f} s (CPU {first['cpu_s']:.1f} s), re-run {rerun['wall_s']:.1f} s, "
        f"verdicts {first['verdicts']}"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
