"""Resumable stages: each finished stage leaves a JSON marker with its result, so a re-run skips it.

``StageCache(root).run(name, inputs, fn)`` returns ``fn()``'s JSON-able result and writes it to
``root/stages/<name>.json`` with a fingerprint of ``inputs``. The next run with the same fingerprint returns the
saved result without calling ``fn`` (when ``valid()``, the check that the stage's own files still exist, holds); a
changed input or a damaged marker re-runs the stage. Markers are written atomically after the stage's own files,
so a crash mid-stage re-runs that stage only. Used by the ``diff`` pipeline and the demo.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflib_models.io import atomic_write_json

__all__ = ["StageCache", "fingerprint"]

log = logging.getLogger(__name__)


def fingerprint(obj: Any) -> str:
    """16 hex characters of sha256 over the canonical JSON of ``obj`` (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _all_files(files: Callable[[Any], Iterable[str | Path]], outputs: Any) -> bool:
    try:
        return all(Path(p).is_file() for p in files(outputs))
    except (KeyError, TypeError, AttributeError):  # a marker of another shape: run the stage again
        return False


@dataclass
class StageCache:
    """Runs named stages under ``root/stages``; records per stage the wall and CPU seconds of this run (0 when
    reused), the seconds the stage took when it ran, and whether it was reused."""

    root: Path
    timings: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    """Process CPU seconds (all threads) per stage: steadier than wall time on a shared machine."""
    reused: dict[str, bool] = field(default_factory=dict)
    ran_seconds: dict[str, float | None] = field(default_factory=dict)
    """Wall seconds of the run that produced each result (read from the marker when reused)."""
    started: float = field(default_factory=time.perf_counter)
    """When the cache was made: each stage's end line gives the elapsed time too."""

    def marker(self, name: str) -> Path:
        return Path(self.root) / "stages" / f"{name}.json"

    def run(self, name: str, inputs: Any, fn: Callable[[], Any], *,
            valid: Callable[[], bool] | None = None,
            files: Callable[[Any], Iterable[str | Path]] | None = None) -> Any:
        """``valid``: a check that the stage's own files are still there; ``files``: the paths a saved result
        names (called with the result): the result is reused only while every one of them is a file."""
        key = fingerprint(inputs)
        path = self.marker(name)
        if path.is_file() and (valid is None or valid()):
            try:
                done = json.loads(path.read_text())
            except (OSError, ValueError):
                done = {}
            if (isinstance(done, dict) and done.get("fingerprint") == key and "outputs" in done
                    and (files is None or _all_files(files, done["outputs"]))):
                log.info("stage %s: reusing finished result", name)
                self._record(name, 0.0, 0.0, True, done.get("seconds"))
                return done["outputs"]
        t0, c0 = time.perf_counter(), time.process_time()
        log.info("stage %s: started (%.0f s elapsed)", name, t0 - self.started)
        outputs = fn()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        log.info("stage %s: done in %.1f s (%.0f s elapsed)", name, elapsed, time.perf_counter() - self.started)
        atomic_write_json(path, {"stage": name, "fingerprint": key, "seconds": elapsed, "cpu_seconds": cpu,
                                 "outputs": outputs})
        self._record(name, elapsed, cpu, False, elapsed)
        return outputs

    def _record(self, name: str, wall: float, cpu: float, reused: bool, ran: Any) -> None:
        self.timings[name] = wall
        self.cpu[name] = cpu
        self.reused[name] = reused
        self.ran_seconds[name] = round(float(ran), 3) if isinstance(ran, int | float) else None

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{stage: {"seconds": seconds the stage took when it ran, "reused": bool}}``."""
        return {name: {"seconds": self.ran_seconds.get(name), "reused": self.reused[name]} for name in self.reused}
