"""Alias of :mod:`difflib_models.callbacks.pytorch_lightning` (the callbacks for ``import pytorch_lightning as pl``):
the same classes under a short name, e.g. the LightningCLI ``class_path`` ``difflib_models.callbacks.pl.PersonaMonitor``.
"""

from __future__ import annotations

from difflib_models.callbacks.pytorch_lightning import (
    ActivationSnapshot,
    DataFilterCallback,
    FilterableDataset,
    PersonaMonitor,
)

__all__ = ["ActivationSnapshot", "DataFilterCallback", "FilterableDataset", "PersonaMonitor"]
