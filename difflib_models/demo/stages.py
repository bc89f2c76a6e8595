"""Resumable stages: each finished stage leaves a JSON marker with its outputs, so a re-run skips it.

A stage's marker is keyed by a fingerprint of its inputs; a changed input (profile, seed, step count) re-runs the
stage. Markers are written atomically after the stage's own files, so a crash mid-stage re-runs that stage only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflib_models.io import atomic_write_json

log = logging.getLogger(__name__)


def fingerprint(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class StageRunner:
    """Runs named stages under ``root/stages``; records timings and whether each was reused."""

    root: Path
    timings: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    """Process CPU seconds (all threads) per stage: steadier than wall time on a shared machine."""
    reused: dict[str, bool] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    """When the runner was made: each stage's end line gives the demo's elapsed time too."""

    def marker(self, name: str) -> Path:
        return self.root / "stages" / f"{name}.json"

    def run(self, name: str, inputs: Any, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        key = fingerprint(inputs)
        path = self.marker(name)
        if path.is_file():
            try:
                done = json.loads(path.read_text())
            except (OSError, ValueError):
                done = {}
            if done.get("fingerprint") == key:
                log.info("stage %s: reusing finished result", name)
                self.timings[name] = 0.0
                self.cpu[name] = 0.0
                self.reused[name] = True
                return dict(done["outputs"])
        t0, c0 = time.perf_counter(), time.process_time()
        log.info("stage %s: started (%.0f s elapsed)", name, t0 - self.started)
        outputs = fn()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        log.info("stage %s: done in %.1f s (%.0f s elapsed)", name, elapsed, time.perf_counter() - self.started)
        atomic_write_json(path, {"stage": name, "fingerprint": key, "seconds": elapsed, "cpu_seconds": cpu,
                                 "outputs": outputs})
        self.timings[name] = elapsed
        self.cpu[name] = cpu
        self.reused[name] = False
        return outputs
