"""Progress of the demo's fine-tunes: a log line every few optimizer steps with the elapsed time, so a user on a
slow machine sees the run advance ("fine-tune inducing: step 20/40, 31 s"). Imported only with Lightning."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning.pytorch as L

log = logging.getLogger("difflib_models.demo")


class StepProgress(L.Callback):
    """Logs ``fine-tune NAME: step i/N, T s`` every ``every`` optimizer steps and at the last one."""

    def __init__(self, name: str, total_steps: int, every: int | None = None) -> None:
        self.name = name
        self.total = int(total_steps)
        self.every = max(1, int(every) if every else self.total // 10 or 1)
        self._t0 = time.perf_counter()
        self._last = -1
        self.lines: list[str] = []

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = int(trainer.global_step)
        if step == self._last or not (step % self.every == 0 or step >= self.total):
            return
        self._last = step
        line = f"fine-tune {self.name}: step {step}/{self.total}, {time.perf_counter() - self._t0:.0f} s"
        self.lines.append(line)
        log.info(line)
