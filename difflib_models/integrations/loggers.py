"""Files, tags and notes to whatever Lightning loggers a Trainer has: one entry point for the callbacks.

Artifacts go to every logger that can store files, each through its own API:

- MLflow (``MLFlowLogger`` of either Lightning namespace): ``MlflowClient.log_artifact`` with the logger's run id
  (:mod:`difflib_models.integrations.mlflow`);
- Weights & Biases (``WandbLogger``, when ``wandb`` is installed): a ``wandb.Artifact`` of type ``difflib`` logged to
  the logger's run;
- TensorBoard (``TensorBoardLogger``) and any other logger with a ``log_dir``: a copy under
  ``<log_dir>/<artifact_path>/``.

Tags and the markdown run note are MLflow-only (the other loggers have no equivalent); for them these calls do
nothing. Loggers are recognised with ``isinstance`` against the classes of the Lightning namespaces already
imported (this module imports neither namespace itself).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from difflib_models.integrations import mlflow as mlf

log = logging.getLogger(__name__)

_NAMESPACES = ("lightning.pytorch", "pytorch_lightning")


def _logger_classes(name: str) -> tuple[type, ...]:
    """``name`` (e.g. ``"MLFlowLogger"``) from the loggers of each Lightning namespace already imported."""
    out = []
    for ns in _NAMESPACES:
        if ns in sys.modules:
            cls = getattr(importlib.import_module(f"{ns}.loggers"), name, None)
            if isinstance(cls, type):
                out.append(cls)
    return tuple(out)


def is_mlflow(logger: Any) -> bool:
    return isinstance(logger, _logger_classes("MLFlowLogger"))


def is_wandb(logger: Any) -> bool:
    return isinstance(logger, _logger_classes("WandbLogger"))


def log_dir_of(logger: Any) -> Path | None:
    """The local directory of a TensorBoard-like logger (``log_dir``), else None."""
    value = getattr(logger, "log_dir", None)
    return Path(value) if isinstance(value, str | os.PathLike) and str(value) else None


def can_store_files(logger: Any) -> bool:
    if is_mlflow(logger):
        return True
    if is_wandb(logger):
        return importlib.util.find_spec("wandb") is not None
    return log_dir_of(logger) is not None


def artifact_loggers(trainer: Any) -> list[Any]:
    """The trainer's loggers that can store files (MLflow, W&B with wandb installed, any logger with a log_dir)."""
    return [lg for lg in getattr(trainer, "loggers", None) or [] if can_store_files(lg)]


def log_artifact(logger: Any, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Store one file (or a directory) with ``logger``, under ``artifact_path``."""
    path = Path(path)
    if not path.exists():
        log.warning("not storing %s with %s: it does not exist", path, type(logger).__name__)
        return
    if is_mlflow(logger):
        mlf.log_artifact(logger, path, artifact_path)
    elif is_wandb(logger):
        _wandb_artifact(logger, path, artifact_path)
    elif (root := log_dir_of(logger)) is not None:
        dest = root / artifact_path if artifact_path else root
        dest.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, dest / path.name, dirs_exist_ok=True)
        else:
            shutil.copy2(path, dest / path.name)
    else:
        log.warning("not storing %s: %s cannot store files", path, type(logger).__name__)


def _wandb_artifact(logger: Any, path: Path, artifact_path: str | None) -> None:
    import wandb

    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{artifact_path or 'difflib'}-{path.name}").strip("-")
    art = wandb.Artifact(name=name, type="difflib")
    if path.is_dir():
        art.add_dir(str(path), name=artifact_path)
    else:
        art.add_file(str(path), name=f"{artifact_path}/{path.name}" if artifact_path else path.name)
    logger.experiment.log_artifact(art)


def set_tags(logger: Any, tags: Mapping[str, Any]) -> None:
    """Run tags (MLflow only)."""
    if is_mlflow(logger):
        mlf.set_tags(logger, tags)


def append_run_note(logger: Any, section: str, markdown: str) -> None:
    """One section of the markdown run note (MLflow only)."""
    if is_mlflow(logger):
        mlf.append_run_note(logger, section, markdown)
