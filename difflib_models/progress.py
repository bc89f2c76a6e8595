"""Progress bars for long work (tqdm on stderr), shown only on a terminal.

Bars are off when stderr is not a TTY (no carriage-return spam in CI or redirected logs) or when
``DIFFLIB_MODELS_NO_PROGRESS=1``; ``DIFFLIB_MODELS_PROGRESS=1`` forces them on. The same switch governs
transformers' and huggingface_hub's own bars (weight loading, downloads) through :func:`sync_third_party_bars`,
called whenever a model loads, and Lightning's bar in crosscoder training.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_TRUE = ("1", "true", "yes")


def progress_enabled() -> bool:
    if os.environ.get("DIFFLIB_MODELS_NO_PROGRESS", "").lower() in _TRUE:
        return False
    if os.environ.get("DIFFLIB_MODELS_PROGRESS", "").lower() in _TRUE:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def sync_third_party_bars() -> None:
    """Turn transformers' / huggingface_hub's progress bars on or off to match :func:`progress_enabled`."""
    enabled = progress_enabled()
    try:
        from transformers.utils import logging as hf_logging

        (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        (enable_progress_bars if enabled else disable_progress_bars)()
    except ImportError:  # pragma: no cover
        pass


def progress(iterable: Iterable[T], *, desc: str = "", total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar (stderr) when progress bars are enabled."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)
