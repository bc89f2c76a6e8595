"""Lightning callbacks: activation snapshots, a live persona monitor with early stop, and training-data filtering.

The names here are ``lightning.pytorch`` callbacks; :mod:`difflib_models.callbacks.pl` has the same classes for the
``pytorch_lightning`` namespace (the two packages hold distinct ``Callback`` classes, do not mix them). Lightning is
imported when a class is first looked up, never when ``difflib_models`` is imported.

* :class:`ActivationSnapshot` (``activation_snapshot.py``)
* :class:`PersonaMonitor` (``persona_monitor.py``)
* :class:`DataFilterCallback` (``data_filter.py``) with its map-style :class:`FilterableDataset`
"""

from __future__ import annotations

import importlib
from typing import Any

_CLASSES: dict[str, str] = {
    "ActivationSnapshot": "difflib_models.callbacks.activation_snapshot",
    "PersonaMonitor": "difflib_models.callbacks.persona_monitor",
    "DataFilterCallback": "difflib_models.callbacks.data_filter",
    "FilterableDataset": "difflib_models.callbacks.data_filter",
}

__all__ = list(_CLASSES)


def __getattr__(name: str) -> Any:
    module = _CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
