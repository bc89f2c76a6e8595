"""Typed records of a report's diff sections, for their readers (plots and the HTML page).

- :class:`DriftRow`: one layer's drift metrics (report.json ``drift.layers[i]``): the block index and the row's
  other values by name, in the order the diff wrote them (metrics such as ``kl_mean``, ``cka``, and counts such
  as ``n_tokens``).
- :class:`ClassCuts`: the crosscoder latent-class cut-offs on the relative decoder norm r (``crosscoder.thresholds``).

:func:`difflib_models.report.builder.merge_diff` copies a diff's JSON into the report (the JSON edge); the plot
helpers take these records, read with ``from_dict`` / :meth:`DriftRow.rows`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from difflib_models.errors import ConfigError, bad_value

__all__ = ["ClassCuts", "DriftRow", "DriftValue"]

DriftValue = float | int | str | None
"""A value of a drift row: a metric or count (number), an identifier (str) or missing (None)."""


@dataclass(frozen=True)
class DriftRow:
    """One layer's drift: ``layer`` (blocks.i) and ``values`` (name, value) in the diff's order."""

    layer: int
    values: tuple[tuple[str, DriftValue], ...] = ()

    def get(self, key: str) -> DriftValue:
        if key == "layer":
            return self.layer
        return next((v for k, v in self.values if k == key), None)

    def number(self, key: str) -> float | None:
        """``key`` as a finite float (None when absent, not numeric or not finite)."""
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return float(v) if math.isfinite(float(v)) else None

    def keys(self) -> Iterator[str]:
        """Every key of the row, ``layer`` first."""
        yield "layer"
        yield from (k for k, _ in self.values)

    def numeric_keys(self) -> Iterator[str]:
        yield from (k for k, v in self.values if isinstance(v, int | float) and not isinstance(v, bool))

    @classmethod
    def from_dict(cls, data: Any) -> DriftRow:
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("drift row", type(data).__name__, "a JSON object"))
        layer = data.get("layer")
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ConfigError(bad_value("drift row layer", layer, "an integer block index"))
        return cls(layer=layer, values=tuple((str(k), v if v is None or isinstance(v, int | float | str) else str(v))
                                             for k, v in data.items() if k != "layer"))

    @classmethod
    def rows(cls, data: Any) -> list[DriftRow]:
        """The rows of a ``drift.layers`` list that name an integer layer (others are skipped)."""
        return [cls.from_dict(r) for r in (data if isinstance(data, list | tuple) else [])
                if isinstance(r, Mapping) and isinstance(r.get("layer"), int) and not isinstance(r["layer"], bool)]


@dataclass(frozen=True)
class ClassCuts:
    """The latent-class cut-offs on r: base-only below ``base_only``, shared in [``shared_low``, ``shared_high``],
    fine-tune-only above ``ft_only`` (None: not recorded)."""

    base_only: float | None = None
    shared_low: float | None = None
    shared_high: float | None = None
    ft_only: float | None = None

    def items(self) -> Iterator[tuple[str, float]]:
        """(name, cut) of the recorded cut-offs, in plotting order."""
        for key in ("base_only", "shared_low", "shared_high", "ft_only"):
            v = getattr(self, key)
            if v is not None:
                yield key, v

    @classmethod
    def from_dict(cls, data: Any) -> ClassCuts | None:
        """The cut-offs of a ``crosscoder.thresholds`` object (None when it is not one; non-numbers left out)."""
        if not isinstance(data, Mapping):
            return None

        def num(key: str) -> float | None:
            v = data.get(key)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        return cls(**{k: num(k) for k in ("base_only", "shared_low", "shared_high", "ft_only")})
