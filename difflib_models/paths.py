"""Where things live on disk: the user cache, and the shared folder of real models/data used by tests."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """User cache for converted models and other derived artefacts.

    ``$DIFFLIB_MODELS_CACHE`` wins; otherwise ``$XDG_CACHE_HOME/difflib_models`` or ``~/.cache/difflib_models``.
    """
    env = os.environ.get("DIFFLIB_MODELS_CACHE")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "difflib_models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_dir() -> Path:
    """The shared folder with real models and data (``$DIFFLIB_MODELS_SHARED``, default ``../shared``)."""
    env = os.environ.get("DIFFLIB_MODELS_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared"
