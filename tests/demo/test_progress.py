"""The demo shows it is moving: a log line per stage start/end with elapsed seconds, and fine-tune step lines."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from difflib_models.demo.progress import StepProgress
from difflib_models.stages import StageCache


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_fine_tune_step_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = DataLoader(TensorDataset(torch.randn(14, 4)), batch_size=2)  # 7 batches, max_steps 7
    progress = StepProgress("inducing", total_steps=7, every=3)
    trainer = L.Trainer(max_steps=7, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[progress], default_root_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="difflib_models.demo"):
        trainer.fit(_Tiny(), data)
    steps = [int(re.match(r"fine-tune inducing: step (\d+)/7, \d+ s$", line).group(1)) for line in progress.lines]
    assert steps == [3, 6, 7]  # every 3 optimizer steps and the last one
    assert [r.getMessage() for r in caplog.records if r.name == "difflib_models.demo"] == progress.lines


def test_stage_lines_with_elapsed_time(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runner = StageCache(tmp_path)
    with caplog.at_level(logging.INFO, logger="difflib_models.stages"):
        assert runner.run("vectors", {"a": 1}, lambda: {"x": 1}) == {"x": 1}
        assert runner.run("vectors", {"a": 1}, lambda: {"x": 2}) == {"x": 1}  # reused, not re-run
    lines = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(r"stage vectors: started \(\d+ s elapsed\)", lines[0])
    assert re.fullmatch(r"stage vectors: done in \d+\.\d s \(\d+ s elapsed\)", lines[1])
    assert lines[2] == "stage vectors: reusing finished result" and len(lines) == 3
