"""MLflow glue for the Lightning callbacks: artifacts, tags and a markdown run note on the Lightning run.

Metrics go through Lightning (``pl_module.log``) and reach ``MLFlowLogger`` like any other metric. This module adds
what Lightning does not carry: files (snapshot index, monitor series JSON + PNG), run tags and the run note
(``mlflow.note.content``, rendered as markdown on the run page). Every call goes through the logger's
``MlflowClient`` with its ``run_id``: the fluent ``mlflow.log_*`` API would open a different run.

Tracking URI: always explicit. :func:`mlflow_logger` defaults to an embedded sqlite database in the run directory
(``sqlite:///<run_dir>/mlflow.db``) with artifacts beside it, because since MLflow 3.13 the ``./mlruns`` file store
raises and Lightning's ``MLFlowLogger()`` without a URI fails. For air-gapped machines set
``MLFLOW_DISABLE_TELEMETRY=true``. ``mlflow`` and Lightning are imported lazily.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value

log = logging.getLogger(__name__)

NOTE_TAG = "mlflow.note.content"
_NAMESPACES = ("lightning.pytorch", "pytorch_lightning")


def default_tracking_uri(run_dir: str | os.PathLike[str]) -> str:
    """``sqlite:///<run_dir>/mlflow.db`` (absolute path; the directory is created)."""
    path = Path(run_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def mlflow_logger(
    run_dir: str | os.PathLike[str],
    *,
    experiment_name: str = "difflib_models",
    run_name: str | None = None,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
    namespace: str = "lightning.pytorch",
) -> Any:
    """A Lightning ``MLFlowLogger`` with an explicit tracking URI (default: embedded sqlite in ``run_dir``) and
    artifacts stored under ``<run_dir>/mlartifacts`` (never in the current directory)."""
    if namespace not in _NAMESPACES:
        raise ConfigError(bad_value("namespace", namespace, _NAMESPACES))
    import importlib

    loggers = importlib.import_module(f"{namespace}.loggers")
    uri = tracking_uri or default_tracking_uri(run_dir)
    artifact_dir = Path(run_dir).resolve() / "mlartifacts"
    return loggers.MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name,
        tracking_uri=uri,
        tags=dict(tags) if tags else None,
        artifact_location=artifact_dir.as_uri() if uri.startswith("sqlite") else None,
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
