"""Single entry point of the benchmark suite: ``python -m benchmarks``.

Runs every ``benchmarks/bench_*.py`` script present, each in its own subprocess (``python -m benchmarks.<name>``)
with a timeout, then merges the JSON files they wrote under ``benchmarks/results/`` into
``benchmarks/results/summary.json``: per script its exit status and wall time, per result file the headline
figures (every numeric field whose name starts with ``ratio`` or ``goal``, plus a few named ones such as the demo's
first-run and re-run times), and whether the file was written by this invocation (``fresh``) or is left over from
an earlier one (``stale``, with its timestamp). Nothing is asserted: the numbers are reported as measured.

    python -m benchmarks                      # everything, default arguments of each script
    python -m benchmarks --quick              # small arguments for the scripts this runner knows
    python -m benchmarks --only demo,scaling  # a subset (names without the bench_ prefix)
    python -m benchmarks --only validity      # the long ones (OPT_IN) run only when named
    python -m benchmarks --merge-only         # just rebuild summary.json from the existing results
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, machine_info

log = logging.getLogger("benchmarks")

HERE = Path(__file__).resolve().parent
SUMMARY = "summary.json"

QUICK_ARGS: dict[str, list[str]] = {
    "capture": ["--models", "tinystories-656k", "--repeats", "3"],
    "callbacks": ["--skip-smol", "--repeats", "1"],
    "demo": ["--rows", "8", "--steps", "2"],
    "monitor_seeds": ["--seeds", "1", "--name", "monitor_seeds_quick"],
    "scaling": ["--model", "tinystories-656k", "--sizes", "16,32,64,128"],
    "imported_traits": ["--files", "narcissism", "--limit", "80", "--name", "imported_traits_quick"],
    "headroom": ["--seeds", "0", "--name", "bench_headroom_quick"],
    "behaviour_open": ["--seeds", "0", "--calibrate-seeds", "0", "--name", "bench_behaviour_open_quick"],
}
"""Smaller arguments per script for ``--quick`` (scripts not listed run with their defaults)."""

OPT_IN: dict[str, str] = {
    "validity": "hours on 2 cores (18 LoRA fine-tunes of SmolLM2 and their gate runs)",
    "monitor_seeds": "two SmolLM2 fine-tunes per seed",
    "imported_traits": "~30 min on 2 cores (four persona files x three modes on SmolLM2)",
    "validity_signals": "scores the validity suite's saved adapters (run it after validity)",
    "headroom": "six SmolLM2 LoRA fine-tunes (~5 min on 2 cores)",
    "behaviour_open": "47 SmolLM2 LoRA fine-tunes and their A/B scoring (~45 min on 2 cores)",
    "behaviour_polarity": "scores bench_behaviour_open's saved adapters (run it after behaviour_open)",
    "gate_heldout": "10 SmolLM2 LoRA fine-tunes and 10 default-policy gates (~25 min on 2 cores)",
}
"""Scripts that run only when named in ``--only`` (why they are long)."""

NAMED_FIELDS = (
    "first_run_s",
    "rerun_s",
    "speedup",
    "wall_s",
    "gate_wall_s",
    "render_s",
    "time_per_token_s",
    "peak_rss_mb_per_1k_tokens",
    "within_5_minutes_projected",
)
"""Non-ratio fields that are headline figures of some benchmark."""


def discover() -> list[str]:
    """Names (without ``bench_``) of the benchmark scripts present, sorted."""
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def run_script(name: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m benchmarks.bench_<name> ARGS`` from the repository root; never raises on failure."""
    cmd = [sys.executable, "-m", f"benchmarks.bench_{name}", *args]
    env = dict(
        os.environ,
        DIFFLIB_MODELS_NO_PROGRESS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        TOKENIZERS_PARALLELISM="false",
    )
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        rc, out, err, timed_out = proc.returncode, proc.stdout, proc.stderr, False
    except subprocess.TimeoutExpired as exc:
        rc, timed_out = None, True
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    wall = time.perf_counter() - t0
    status = "timeout" if timed_out else ("ok" if rc == 0 else "error")
    log.info("bench_%s: %s in %.1f s", name, status, wall)
    return {
        "command": " ".join(cmd[1:]),
        "status": status,
        "returncode": rc,
        "wall_s": round(wall, 3),
        "timeout_s": timeout,
        "stdout_tail": out[-1500:],
        "stderr_tail": err[-1500:] if rc else "",
    }


def _numbers(obj: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted path, leaf key, value) of every number or bool in a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{prefix}[{i}]")
    elif isinstance(obj, int | float) and not (isinstance(obj, float) and obj != obj):
        yield prefix, prefix.rsplit(".", 1)[-1], obj


def headline(doc: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one result file (ratios, goals and the named fields), by dotted path."""
    out: dict[str, Any] = {}
    for path, key, value in _numbers({k: v for k, v in doc.items() if k != "machine"}):
        if key.startswith(("ratio", "goal")) or key in NAMED_FIELDS:
            out[path] = value
    return out


def merge(started: float | None = None) -> dict[str, Any]:
    """Read every ``results/*.json`` (except the summary) into the summary's ``results`` section."""
    results: dict[str, Any] = {}
    for path in sorted(RESULTS_DIR.glob("*.json")):
        if path.name == SUMMARY:
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            results[path.stem] = {"file": path.name, "error": f"unreadable: {exc}"}
            continue
        fresh = started is not None and path.stat().st_mtime >= started
        results[path.stem] = {
            "file": path.name,
            "benchmark": doc.get("benchmark"),
            "timestamp_utc": doc.get("timestamp_utc"),
            "state": "fresh" if fresh else "stale",
            "load_average_1_5_15": (doc.get("machine") or {}).get("load_average_1_5_15"),
            "headline": headline(doc),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None, help="comma list of script names (without bench_)")
    parser.add_argument("--skip", default="", help="comma list of script names to skip")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per script (default 1800)")
    parser.add_argument(
        "--quick", action="store_true", help="small arguments for the scripts listed in QUICK_ARGS"
    )
    parser.add_argument("--merge-only", action="store_true", help="run nothing; rebuild summary.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    names = discover()
    if args.only:
        wanted = [n.strip().removeprefix("bench_") for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; present: {names}")
        names = [n for n in names if n in wanted]
    else:
        for name in sorted(set(names) & set(OPT_IN)):
            log.info("skipping %s (%s); run it with --only %s", name, OPT_IN[name], name)
        names = [n for n in names if n not in OPT_IN]
    skip = {n.strip().removeprefix("bench_") for n in args.skip.split(",") if n.strip()}
    names = [n for n in names if n not in skip]

    started = time.time()
    machine = machine_info()
    runs: dict[str, Any] = {}
    if not args.merge_only:
        for name in names:
            runs[name] = run_script(name, QUICK_ARGS.get(name, []) if args.quick else [], args.timeout)
    results = merge(None if args.merge_only else started)
    summary = {
        "benchmark": "summary",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "quick": bool(args.quick),
        "runs": runs,
        "headline": {
            f"{stem}.{k}": v for stem, res in results.items() for k, v in res.get("headline", {}).items()
        },
        "results": results,
        "notes": "headline = every numeric field named ratio*/goal* plus named timing fields; 'stale' results "
        "were not rewritten by this invocation (their script failed, timed out, was skipped, or writes "
        "under another name). Timings on a shared machine carry its load average.",
    }
    from difflib_models.io import atomic_write_json

    path = atomic_write_json(RESULTS_DIR / SUMMARY, summary)
    for name, run in runs.items():
        print(f"bench_{name:12s} {run['status']:8s} {run['wall_s']:8.1f} s")
    for stem, res in summary["results"].items():
        figures = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(res.get("headline", {}).items())[:6]
        )
        print(f"  {stem:18s} [{res.get('state', '?')}] {figures}")
    print(f"summary: {path}")
    return 0 if all(r["status"] == "ok" for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
