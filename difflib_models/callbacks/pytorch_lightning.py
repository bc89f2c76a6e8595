"""The callbacks as ``pytorch_lightning`` classes (``import pytorch_lightning as pl``).

Importing this module imports ``pytorch_lightning``. The ``lightning.pytorch`` classes (a distinct namespace: do
not mix them) are in :mod:`difflib_models.callbacks.lightning`; :mod:`difflib_models.callbacks.pl` is an alias of this module.
"""

from __future__ import annotations

from pytorch_lightning import Callback

from difflib_models.callbacks.activation_snapshot import ActivationSnapshotCore
from difflib_models.callbacks.data_filter import DataFilterCore, FilterableDataset
from difflib_models.callbacks.persona_monitor import PersonaMonitorCore

__all__ = ["ActivationSnapshot", "DataFilterCallback", "FilterableDataset", "PersonaMonitor"]


class ActivationSnapshot(ActivationSnapshotCore, Callback):
    __doc__ = ActivationSnapshotCore.__doc__


class PersonaMonitor(PersonaMonitorCore, Callback):
    __doc__ = PersonaMonitorCore.__doc__


class DataFilterCallback(DataFilterCore, Callback):
    __doc__ = DataFilterCore.__doc__
