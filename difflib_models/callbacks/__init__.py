"""Lightning callbacks: activation snapshots, a live persona monitor with early stop, and training-data filtering.

The names here are the ``lightning.pytorch`` classes of :mod:`difflib_models.callbacks.lightning`;
:mod:`difflib_models.callbacks.pytorch_lightning` (alias :mod:`difflib_models.callbacks.pl`) has the same classes
for the ``pytorch_lightning`` namespace (the two packages hold distinct ``Callback`` classes, do not mix them).
Lightning is imported when a class is first looked up, never when ``difflib_models`` is imported; IDEs and type
checkers see the classes through the ``TYPE_CHECKING`` imports.

* :class:`ActivationSnapshot` (``activation_snapshot.py``)
* :class:`PersonaMonitor` (``persona_monitor.py``)
* :class:`DataFilterCallback` (``data_filter.py``) with its map-style :class:`FilterableDataset`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports

if TYPE_CHECKING:
    from difflib_models.callbacks.data_filter import (
        FilterableDataset as FilterableDataset,
    )
    from difflib_models.callbacks.lightning import (
        ActivationSnapshot as ActivationSnapshot,
    )
    from difflib_models.callbacks.lightning import (
        DataFilterCallback as DataFilterCallback,
    )
    from difflib_models.callbacks.lightning import (
        PersonaMonitor as PersonaMonitor,
    )

_LAZY: dict[str, str] = {
    "ActivationSnapshot": "difflib_models.callbacks.lightning",
    "PersonaMonitor": "difflib_models.callbacks.lightning",
    "DataFilterCallback": "difflib_models.callbacks.lightning",
    "FilterableDataset": "difflib_models.callbacks.data_filter",
}

__all__ = [
    "ActivationSnapshot",
    "PersonaMonitor",
    "DataFilterCallback",
    "FilterableDataset",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
