"""The callbacks for the ``pytorch_lightning`` namespace (``import pytorch_lightning as pl``).

Same logic and arguments as :mod:`difflib_models.callbacks` (which serves ``lightning.pytorch``); use the module
that matches how your Trainer is imported: the two namespaces hold distinct classes.
"""

from __future__ import annotations

import importlib
from typing import Any

from difflib_models.callbacks import _core

_CORES: dict[str, tuple[str, str]] = {
    "ActivationSnapshot": ("difflib_models.callbacks.activation_snapshot", "ActivationSnapshotCore"),
    "PersonaMonitor": ("difflib_models.callbacks.persona_monitor", "PersonaMonitorCore"),
    "DataFilterCallback": ("difflib_models.callbacks.data_filter", "DataFilterCore"),
}

__all__ = list(_CORES)


def __getattr__(name: str) -> Any:
    spec = _CORES.get(name)
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    core = getattr(importlib.import_module(spec[0]), spec[1])
    return _core.callback_class(core, "pytorch_lightning", __name__, name)


def __dir__() -> list[str]:
    return sorted(__all__)
