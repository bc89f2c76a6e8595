"""The callbacks as ``lightning.pytorch`` classes (``import lightning.pytorch as L``).

Importing this module imports Lightning. :mod:`difflib_models.callbacks` re-exports these names lazily; the
``pytorch_lightning`` namespace has the same classes in :mod:`difflib_models.callbacks.pytorch_lightning`.
"""

from __future__ import annotations

from lightning.pytorch import Callback

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
