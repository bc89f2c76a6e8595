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
    assert tags["difflib.snapshots.steps"] == "0,2,4" and tags["difflib.command"] == "train"
    assert not [k for k in tags if k.startswith("difflib_models.")]  # one tag prefix: difflib.
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


_OPENER = r"""
import sys, time
from pathlib import Path

from difflib_models.integrations.mlflow import open_tracking_client
from difflib_models.integrations.mlflow_report import _client as report_client

uri, name, ready, go = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
ready.touch()  # imports done: wait for the other process, then both open the fresh database at once
deadline = time.time() + 300
while not go.exists():
    assert time.time() < deadline, "no go signal"
    time.sleep(0.005)
client = (report_client if name.endswith("0") else open_tracking_client)(uri)
exp = client.create_experiment(name)
print(client.create_run(exp).info.run_id)
"""


@pytest.mark.slow  # six processes import mlflow (~60 s on 2 cores)
def test_two_processes_open_a_fresh_sqlite_store(tmp_path: Path) -> None:
    """Two processes opening one fresh sqlite tracking database at the same moment both succeed (without the lock
    one of them failed with alembic's CommandError in 3 of 3 trials). Three databases, two processes each."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    go = tmp_path / "go"
    procs = []
    for trial in range(3):
        db = tmp_path / f"trial{trial}" / "mlflow.db"
        for side in range(2):
            name = f"t{trial}-p{side}"
            procs.append((db, subprocess.Popen(
                [sys.executable, "-c", _OPENER, f"sqlite:///{db}", name, str(tmp_path / f"{name}.ready"), str(go)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    deadline = time.time() + 300
    while not all((tmp_path / f"t{t}-p{s}.ready").exists() for t in range(3) for s in range(2)):
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs if p.poll() is not None]
        assert time.time() < deadline, "children did not start"
        time.sleep(0.05)
    go.touch()
    results = []
    for _db, p in procs:
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, out, err))
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
        assert len(out.strip()) == 32  # a run id
    from mlflow.tracking import MlflowClient

    for trial in range(3):
        db = tmp_path / f"trial{trial}" / "mlflow.db"
        names = {e.name for e in MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()}
        assert {f"t{trial}-p0", f"t{trial}-p1"} <= names
        assert (db.parent / "mlflow.db.lock").exists()


def test_one_experiment_command_tag_and_a_folder_per_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from difflib_models.integrations.mlflow import EXPERIMENT, log_artifact, mlflow_logger, read_tag, set_tags

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "f.txt").write_text("x")
    first = mlflow_logger(tmp_path / "inducing", tracking_uri=uri, command="demo")
    second = mlflow_logger(tmp_path / "neutral", tracking_uri=uri, command="crosscoder", tags={"difflib.extra": "1"})
    for lg in (first, second):
        log_artifact(lg, tmp_path / "f.txt", "out")
    client = MlflowClient(tracking_uri=uri)
    assert {e.name for e in client.search_experiments()} - {"Default"} == {EXPERIMENT} == {"difflib-models"}
    runs = [client.get_run(lg.run_id) for lg in (first, second)]
    assert [r.data.tags["difflib.command"] for r in runs] == ["demo", "crosscoder"]
    assert runs[1].data.tags["difflib.extra"] == "1"
    dirs = [Path(r.info.artifact_uri.removeprefix("file://")) for r in runs]
    assert dirs[0] != dirs[1]
    for d in dirs:  # beside the database, one folder per run; never inside the first run's output folder
        assert d.is_relative_to((tmp_path / "mlartifacts").resolve())
        assert not d.is_relative_to((tmp_path / "inducing").resolve())
        assert (d / "out" / "f.txt").read_text() == "x"
    set_tags(first, {"difflib_models.snapshots.steps": "0,2"})  # a run tagged before the one prefix
    set_tags(second, {"difflib.snapshots.steps": "0,4"})
    assert read_tag(client.get_run(first.run_id).data.tags, "snapshots.steps") == "0,2"
    assert read_tag(client.get_run(second.run_id).data.tags, "difflib.snapshots.steps") == "0,4"

