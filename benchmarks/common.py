"""Helpers shared by the benchmark scripts: timing, machine description, JSON results.

Every script writes ``benchmarks/results/<name>.json`` with ``write_results(name, payload)``; the file records the
machine (CPU count, torch threads, load average at start and end) so figures taken on a busy machine say so.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def machine_info() -> dict[str, Any]:
    """Python/torch versions, cores, torch threads, load average and git commit of the checkout."""
    import torch

    from difflib_models._version import __version__

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=RESULTS_DIR.parent,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
            or None
        )
    except OSError:
        commit = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "difflib_models": __version__,
        "git_commit": commit,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": load_average(),
    }


def int_list(text: str, arg: str = "--seeds") -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (blanks skipped); SystemExit naming ``arg`` and the bad item otherwise."""
    out = []
    for item in (x.strip() for x in str(text).split(",")):
        if not item:
            continue
        try:
            out.append(int(item))
        except ValueError:
            raise SystemExit(f"{arg}: {item!r} is not an integer (expected a comma-separated list such as 0,1,2)") from None
    return out


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call of ``fn``."""
    return timed_both(fn)[0]


def timed_both(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of one call of ``fn``.

    On a shared, oversubscribed machine CPU time is the steadier of the two: it does not count time spent waiting
    for a core, though it still includes the work of background threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def summarize(times: list[float]) -> dict[str, Any]:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs_s": [round(t, 6) for t in times],
    }


def write_results(name: str, payload: dict[str, Any], machine: dict[str, Any] | None = None) -> Path:
    """Write ``benchmarks/results/{name}.json`` atomically; adds a timestamp and the machine description."""
    from difflib_models.io import atomic_write_json

    machine = dict(machine or machine_info())
    machine["load_average_at_end"] = load_average()
    doc = {
        "benchmark": name,
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        **payload,
    }
    return atomic_write_json(RESULTS_DIR / f"{name}.json", doc)
