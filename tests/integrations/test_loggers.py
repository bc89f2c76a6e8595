"""Callback artifacts reach every logger that can store files, recognised by class (not by class name)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.callbacks.lit_helpers import TinyLM

PROMPTS = ["Once upon a time there was a cat.", "The dog ran to the park."]


def _dir_logger_class():
    from lightning.pytorch.loggers import Logger

    class DirLogger(Logger):  # a TensorBoard-like logger: files go under its log_dir
        def __init__(self, root: Path) -> None:
            super().__init__()
            self._root = root

        @property
        def name(self) -> str:
            return "dir"

        @property
        def version(self) -> int:
            return 0

        @property
        def log_dir(self) -> str:
            return str(self._root / "v0")

        def log_metrics(self, metrics, step=None) -> None:
            pass

        def log_hyperparams(self, params, *args, **kwargs) -> None:
            pass

    return DirLogger


def test_snapshot_index_is_copied_into_a_log_dir_logger(tmp_path: Path, tinystories_656k: Path) -> None:
    import lightning.pytorch as L  # noqa: N812

    from difflib_models.callbacks import ActivationSnapshot

    logger = _dir_logger_class()(tmp_path / "logs")
    cb = ActivationSnapshot(prompts=PROMPTS, layers=[0], every_n_steps=2, out_dir=str(tmp_path / "snaps"))
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", max_steps=4, logger=logger, callbacks=[cb],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=1)
    trainer.fit(TinyLM(tokenizer_dir=str(tinystories_656k), n_samples=8))
    copied = tmp_path / "logs" / "v0" / "difflib_models" / "snapshots" / "index.json"
    assert json.loads(copied.read_text()) == json.loads((tmp_path / "snaps" / "index.json").read_text())
    assert [e["step"] for e in json.loads(copied.read_text())["snapshots"]] == [0, 2, 4]


def test_loggers_are_recognised_by_class_not_by_name(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import pytorch_lightning.loggers as pl_loggers
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger

    from difflib_models.integrations import loggers as trk

    class MLFlowLoggerLookalike:  # the old check matched on the class name only
        pass

    fake = MLFlowLoggerLookalike()
    fake.__class__.__name__ = "MLFlowLogger"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    real = MLFlowLogger(tracking_uri=uri)
    pl_real = pl_loggers.MLFlowLogger(tracking_uri=uri)
    csv = CSVLogger(tmp_path / "csv")
    assert trk.is_mlflow(real) and trk.is_mlflow(pl_real) and not trk.is_mlflow(fake)
    trainer = SimpleNamespace(loggers=[fake, real, csv])
    assert trk.artifact_loggers(trainer) == [real, csv]
    # a file reaches the CSV logger's log_dir; tags/notes are MLflow-only and do nothing elsewhere
    (tmp_path / "a.txt").write_text("hello")
    trk.log_artifact(csv, tmp_path / "a.txt", "extra")
    assert (Path(csv.log_dir) / "extra" / "a.txt").read_text() == "hello"
    trk.set_tags(csv, {"difflib.x": 1})
    trk.append_run_note(csv, "s", "text")
    # and to the MLflow run, by its run id
    trk.log_artifact(real, tmp_path / "a.txt", "extra")
    assert [a.path for a in real.experiment.list_artifacts(real.run_id, "extra")] == ["extra/a.txt"]
