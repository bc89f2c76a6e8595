"""MLflow through Lightning: metrics via MLFlowLogger, artifacts/tags/run note from the callbacks; embedded sqlite
and a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.callbacks.lit_helpers import TinyLM

PROMPTS = ["Once upon a time there was a cat.", "The dog ran to the park."]


def _fit(tmp_path: Path, tinystories_656k: Path, tracking_uri: str | None):
    import lightning.pytorch as L

    from difflib_models.callbacks import ActivationSnapshot
    from difflib_models.integrations.mlflow import mlflow_logger

    logger = mlflow_logger(tmp_path / "run", tracking_uri=tracking_uri, run_name="tiny")
    cb = ActivationSnapshot(prompts=PROMPTS, layers=[0], every_n_steps=2, out_dir=str(tmp_path / "snaps"))
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", max_steps=4, logger=logger, callbacks=[cb],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=1)
    trainer.fit(TinyLM(tokenizer_dir=str(tinystories_656k), n_samples=8))
    return logger


def _check_run(logger, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=logger._tracking_uri)
    run = client.get_run(logger.run_id)
    history = client.get_metric_history(logger.run_id, "train_loss")
    assert [m.step for m in history] == [0, 1, 2, 3]  # one value per optimizer step, through Lightning
    tags = run.data.tags
    assert tags["difflib_models.snapshots.steps"] == "0,2,4"
    assert "Activation snapshots" in tags["mlflow.note.content"] and "0, 2, 4" in tags["mlflow.note.content"]
    arts = [a.path for a in client.list_artifacts(logger.run_id, "difflib_models/snapshots")]
    assert arts == ["difflib_models/snapshots/index.json"]
    local = client.download_artifacts(logger.run_id, "difflib_models/snapshots/index.json", str(tmp_path / "dl"))
    assert json.loads(Path(local).read_text()) == json.loads((tmp_path / "snaps" / "index.json").read_text())


def test_sqlite_default_store(tmp_path: Path, tinystories_656k: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    logger = _fit(tmp_path, tinystories_656k, None)
    assert logger._tracking_uri == f"sqlite:///{(tmp_path / 'run').resolve()}/mlflow.db"
    assert (tmp_path / "run" / "mlflow.db").is_file()
    _check_run(logger, tmp_path)
    assert not (tmp_path / "mlruns").exists()  # nothing written to the working directory's file store


def test_run_note_sections_are_replaced_not_duplicated(tmp_path: Path) -> None:
    from difflib_models.integrations.mlflow import append_run_note, mlflow_logger, set_tags

    logger = mlflow_logger(tmp_path)
    set_tags(logger, {"a": 1})
    append_run_note(logger, "one", "first")
    append_run_note(logger, "two", "second")
    note = append_run_note(logger, "one", "first again")
    assert note.count("difflib_models:one -->") == 2 and "first again" in note and "second" in note
    assert "first\n" not in note
    assert logger.experiment.get_run(logger.run_id).data.tags["a"] == "1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_mlflow_server(tmp_path: Path, tinystories_656k: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "server_artifacts")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, "mlflow server exited"
            assert time.time() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        logger = _fit(tmp_path, tinystories_656k, uri)
        _check_run(logger, tmp_path)
        assert any((tmp_path / "server_artifacts").rglob("index.json"))  # uploaded through the server
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
