"""The one "a finite number, else None" conversion for report fields and check values."""

from __future__ import annotations

import math
import numbers
from typing import Any


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (numpy scalars included); None for None, a bool, a
    non-number, NaN or an infinity."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    x = float(value)
    return x if math.isfinite(x) else None
