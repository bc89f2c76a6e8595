"""Integrations with tracking tools (MLflow; artifacts also to W&B and TensorBoard loggers). Imported lazily: nothing
here loads mlflow or Lightning at import time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports

if TYPE_CHECKING:
    from difflib_models.integrations.loggers import (
        artifact_loggers as artifact_loggers,
    )
    from difflib_models.integrations.mlflow import (
        EXPERIMENT as EXPERIMENT,
    )
    from difflib_models.integrations.mlflow import (
        TAG_PREFIX as TAG_PREFIX,
    )
    from difflib_models.integrations.mlflow import (
        mlflow_logger as mlflow_logger,
    )
    from difflib_models.integrations.mlflow import (
        read_tag as read_tag,
    )
    from difflib_models.integrations.mlflow_report import (
        log_report as log_report,
    )
    from difflib_models.integrations.mlflow_report import (
        register_gate_result as register_gate_result,
    )

_LAZY: dict[str, str] = {
    "mlflow_logger": "mlflow",
    "EXPERIMENT": "mlflow",
    "TAG_PREFIX": "mlflow",
    "read_tag": "mlflow",
    "log_report": "mlflow_report",
    "register_gate_result": "mlflow_report",
    "artifact_loggers": "loggers",
}

__all__ = [
    "mlflow_logger",
    "EXPERIMENT",
    "TAG_PREFIX",
    "read_tag",
    "log_report",
    "register_gate_result",
    "artifact_loggers",
]

__getattr__, __dir__ = lazy_exports('difflib_models.integrations', _LAZY, globals(), __all__)
