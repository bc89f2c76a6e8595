"""Lightning callbacks: activation snapshots, a live persona monitor with early stop, and training-data filtering.

The names here are ``lightning.pytorch`` callbacks; :mod:`difflib_models.callbacks.pl` has the same classes for the
``pytorch_lightning`` namespace (the two packages hold distinct ``Callback`` classes, do not mix them). Lightning is
imported when a class is first looked up, never when ``difflib_models`` is imported.

* :class:`ActivationSnapshot` (``activation_snapshot.py``)
* :class:`PersonaMonitor` (``persona_monitor.py``)
* :class:`DataFilterCallback` (``data_filter.py``) with its map-style :class:`FilterableDataset`
"""

from __future__ import annotations

from difflib_models._lazy import lazy_exports

_CLASSES: dict[str, str] = {
    "ActivationSnapshot": "difflib_models.callbacks.activation_snapshot",
    "PersonaMonitor": "difflib_models.callbacks.persona_monitor",
    "DataFilterCallback": "difflib_models.callbacks.data_filter",
    "FilterableDataset": "difflib_models.callbacks.data_filter",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _CLASSES, globals())
