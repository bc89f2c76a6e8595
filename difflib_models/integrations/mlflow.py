"""MLflow glue for the Lightning callbacks: artifacts, tags and a markdown run note on the Lightning run.

Metrics go through Lightning (``pl_module.log``) and reach ``MLFlowLogger`` like any other metric. This module adds
what Lightning does not carry: files (snapshot index, monitor series JSON + PNG), run tags and the run note
(``mlflow.note.content``, rendered as markdown on the run page). Every call goes through the logger's
``MlflowClient`` with its ``run_id``: the fluent ``mlflow.log_*`` API would open a different run.

Tracking URI: always explicit. :func:`mlflow_logger` defaults to an embedded sqlite database in the run directory
(``sqlite:///<run_dir>/mlflow.db``) with artifacts beside it, because since MLflow 3.13 the ``./mlruns`` file store
raises and Lightning's ``MLFlowLogger()`` without a URI fails. A fresh sqlite database is created once under a
file lock (:func:`ensure_tracking_store`), so concurrent processes can share it. For air-gapped machines set
``MLFLOW_DISABLE_TELEMETRY=true``. ``mlflow`` and Lightning are imported lazily.

Naming: every run of the library goes to ONE experiment, ``difflib-models`` (:data:`EXPERIMENT`), with the command
that made it in the run tag ``difflib.command`` (``train``, ``crosscoder``, ``demo``, ``gate``); every tag the library
sets starts with ``difflib.`` (:data:`TAG_PREFIX`). Artifacts of a sqlite store live beside the database, in
``<db dir>/mlartifacts/<experiment id>/<run id>/artifacts``: one folder per run, never inside another run's
output folder.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value

log = logging.getLogger(__name__)

NOTE_TAG = "mlflow.note.content"
EXPERIMENT = "difflib-models"
TAG_PREFIX = "difflib."
COMMAND_TAG = TAG_PREFIX + "command"
LEGACY_TAG_PREFIX = "difflib_models."  # tags written before the one prefix; read by :func:`read_tag`
_NAMESPACES = ("lightning.pytorch", "pytorch_lightning")


def default_tracking_uri(run_dir: str | os.PathLike[str]) -> str:
    """``sqlite:///<run_dir>/mlflow.db`` (absolute path; the directory is created)."""
    path = Path(run_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def sqlite_db_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (``None`` for other stores and in-memory sqlite)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def artifact_root(tracking_uri: str) -> str | None:
    """Where a new experiment of a sqlite store keeps its artifacts: ``<db dir>/mlartifacts`` (a file URI); None for
    other stores (the server decides). MLflow puts each run in its own ``<experiment id>/<run id>`` folder below."""
    db = sqlite_db_path(tracking_uri)
    return (db.resolve().parent / "mlartifacts").as_uri() if db is not None else None


def get_or_create_experiment(client: Any, tracking_uri: str, name: str = EXPERIMENT) -> str:
    """The id of experiment ``name``, created (artifacts under :func:`artifact_root`) when missing; a concurrent
    creator is tolerated."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_root(tracking_uri)))
    except Exception:  # noqa: BLE001 - another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def read_tag(tags: Mapping[str, str], key: str) -> str | None:
    """Tag ``difflib.<key>`` of a run, or its older spelling ``difflib_models.<key>``."""
    key = key.removeprefix(TAG_PREFIX)
    return tags.get(TAG_PREFIX + key, tags.get(LEGACY_TAG_PREFIX + key))


_READY: set[str] = set()
_READY_LOCK = threading.Lock()


def ensure_tracking_store(tracking_uri: str, *, attempts: int = 3) -> None:
    """Create the tables of a fresh sqlite tracking database exactly once, whatever the number of processes.

    MLflow creates (and migrates) a new sqlite database on the first client call of each process; two processes
    doing it at once make one of them fail with an alembic ``CommandError``. Here the first open runs under an
    exclusive ``flock`` on ``<db>.lock`` beside the database (the tracking and registry tables are both created
    inside it), and a failure is retried, for writers outside this library that do not take the lock."""
    db = sqlite_db_path(tracking_uri)
    if db is None or tracking_uri in _READY:
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with _READY_LOCK, _file_lock(db.with_name(db.name + ".lock")):
        from mlflow.tracking import MlflowClient

        for attempt in range(1, attempts + 1):
            try:
                client = MlflowClient(tracking_uri=tracking_uri)
                client.search_experiments(max_results=1)
                client.search_registered_models(max_results=1)
                break
            except Exception as exc:  # noqa: BLE001 - alembic/sqlalchemy errors of a concurrent creator
                if attempt == attempts:
                    raise
                log.info("MLflow store %s not ready (%s: %s); retrying", db, type(exc).__name__, exc)
                time.sleep(0.5 * attempt)
        _READY.add(tracking_uri)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``fcntl.flock`` on ``path`` (created); a no-op where fcntl does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the retry in ensure_tracking_store remains
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def open_tracking_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` on ``tracking_uri``; a fresh sqlite database is created once (see
    :func:`ensure_tracking_store`), so concurrent processes both succeed."""
    ensure_tracking_store(tracking_uri)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def mlflow_logger(
    run_dir: str | os.PathLike[str],
    *,
    command: str = "train",
    experiment_name: str = EXPERIMENT,
    run_name: str | None = None,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
    namespace: str = "lightning.pytorch",
) -> Any:
    """A Lightning ``MLFlowLogger`` with an explicit tracking URI (default: embedded sqlite in ``run_dir``), in the
    one experiment ``difflib-models`` with the run tag ``difflib.command = command``. On a sqlite store a new
    experiment keeps its artifacts beside the database (:func:`artifact_root`; never in the current directory), one
    folder per run."""
    if namespace not in _NAMESPACES:
        raise ConfigError(bad_value("namespace", namespace, _NAMESPACES))
    loggers = importlib.import_module(f"{namespace}.loggers")
    uri = tracking_uri or default_tracking_uri(run_dir)
    ensure_tracking_store(uri)
    return loggers.MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name,
        tracking_uri=uri,
        tags={COMMAND_TAG: command, **(dict(tags) if tags else {})},
        artifact_location=artifact_root(uri),
    )


def _client_and_run(logger: Any) -> tuple[Any, str]:
    client = logger.experiment  # MlflowClient (creates the run on first access, rank 0 only)
    run_id = logger.run_id
    if not run_id:
        raise ConfigError(bad_value("logger", type(logger).__name__, hint="the MLFlowLogger has no active run"))
    return client, run_id


def log_artifact(logger: Any, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Upload one file (or a directory) to the logger's run."""
    client, run_id = _client_and_run(logger)
    path = Path(path)
    if path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path)
    elif path.exists():
        client.log_artifact(run_id, str(path), artifact_path)
    else:
        log.warning("not uploading %s to MLflow: it does not exist", path)


def set_tags(logger: Any, tags: Mapping[str, Any]) -> None:
    """Set run tags (values stringified)."""
    client, run_id = _client_and_run(logger)
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def append_run_note(logger: Any, section: str, markdown: str) -> str:
    """Add or replace one named section of the run note (``mlflow.note.content``); other sections (written by other
    callbacks or by the user) are kept. Returns the new note."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", section):
        raise ConfigError(bad_value("section", section, "letters, digits, '_', '.', '-'"))
    client, run_id = _client_and_run(logger)
    current = client.get_run(run_id).data.tags.get(NOTE_TAG, "")
    start, end = f"<!-- difflib_models:{section} -->", f"<!-- /difflib_models:{section} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(current):
        note = pattern.sub(lambda _m: block, current)
    else:
        note = (current.rstrip() + "\n\n" + block).lstrip() if current else block
    client.set_tag(run_id, NOTE_TAG, note)
    return note
