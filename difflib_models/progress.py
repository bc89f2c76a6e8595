"""Progress bars for long work (tqdm on stderr); off when DIFFLIB_MODELS_NO_PROGRESS=1 or not a terminal in CI."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("DIFFLIB_MODELS_NO_PROGRESS", "") not in ("1", "true", "yes")


def progress(iterable: Iterable[T], *, desc: str = "", total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar (stderr) unless progress bars are disabled."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
