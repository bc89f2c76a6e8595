"""Alias of :mod:`difflib_models.callbacks.pytorch_lightning` (the callbacks for ``import pytorch_lightning as pl``),
kept for existing imports and LightningCLI ``class_path`` values such as ``difflib_models.callbacks.pl.PersonaMonitor``.
"""

from __future__ import annotations

from difflib_models.callbacks.pytorch_lightning import (
    ActivationSnapshot,
    DataFilterCallback,
    FilterableDataset,
    PersonaMonitor,
)

__all__ = ["ActivationSnapshot", "DataFilterCallback", "FilterableDataset", "PersonaMonitor"]
