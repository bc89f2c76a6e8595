"""Typed records of the gate's crosscoder persona alignment (report.json ``crosscoder.persona_alignment``).

- :class:`AlignmentRow`: one trait at its layer: the fine-tune-only latents (relative decoder norm above
  ``ft_only_threshold``) and the cosine of each one's fine-tuned decoder vector with the trait direction, or the
  ``error`` that makes the crosscoder no evidence (non-finite weights, other models, a layer it does not cover).
- :class:`CrosscoderAlignment`: the rows by trait.

Frozen; ``to_dict()`` writes exactly what report.json has always held, ``from_dict()`` reads it back. The gate
engine keeps reading the report document (fail-closed on hand-written rows).
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from difflib_models.errors import ConfigError, bad_value

__all__ = ["AlignmentRow", "CrosscoderAlignment"]


@dataclass(frozen=True)
class AlignmentRow:
    """A trait's crosscoder alignment at ``layer``: with ``error`` set the row is no evidence and holds nothing
    else; otherwise ``ft_only_latents`` (indices) and their ``ft_only_cos`` (signed cosines, same order)."""

    layer: int
    ft_only_threshold: float | None = None
    ft_only_latents: tuple[int, ...] = ()
    ft_only_cos: tuple[float, ...] = ()
    error: str | None = None

    def __post_init__(self) -> None:
        if len(self.ft_only_latents) != len(self.ft_only_cos):
            raise ConfigError(bad_value("ft_only_cos", len(self.ft_only_cos),
                                        f"one cosine per fine-tune-only latent ({len(self.ft_only_latents)})"))

    @classmethod
    def failed(cls, layer: int, error: str) -> AlignmentRow:
        return cls(layer=layer, error=error)

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"layer": self.layer, "error": self.error}
        return {"layer": self.layer, "ft_only_threshold": self.ft_only_threshold,
                "ft_only_latents": list(self.ft_only_latents), "ft_only_cos": list(self.ft_only_cos)}

    @classmethod
    def from_dict(cls, data: Any, trait: str = "") -> AlignmentRow:
        what = f"crosscoder persona alignment {trait!r}"
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value(what, type(data).__name__, "a JSON object"))
        try:
            error = data.get("error")
            return cls(layer=int(data["layer"]), error=None if error is None else str(error),
                       ft_only_threshold=None if data.get("ft_only_threshold") is None
                       else float(data["ft_only_threshold"]),
                       ft_only_latents=tuple(int(i) for i in data.get("ft_only_latents") or ()),
                       ft_only_cos=tuple(float(c) for c in data.get("ft_only_cos") or ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(bad_value(what, f"{type(exc).__name__}: {exc}",
                                        "a row with layer and ft_only_latents / ft_only_cos, or an error")) from None


@dataclass(frozen=True)
class CrosscoderAlignment:
    """The crosscoder alignment rows by trait (report.json ``crosscoder.persona_alignment``)."""

    rows: Mapping[str, AlignmentRow]

    def __post_init__(self) -> None:
        if not all(isinstance(r, AlignmentRow) for r in self.rows.values()):
            raise ConfigError(bad_value("persona_alignment", [type(r).__name__ for r in self.rows.values()],
                                        "AlignmentRow records"))
        object.__setattr__(self, "rows", types.MappingProxyType(dict(self.rows)))

    def row(self, trait: str) -> AlignmentRow | None:
        return self.rows.get(trait)

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {t: r.to_dict() for t, r in self.rows.items()}

    @classmethod
    def from_dict(cls, data: Any) -> CrosscoderAlignment:
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("crosscoder.persona_alignment", type(data).__name__, "a JSON object"))
        return cls({str(t): AlignmentRow.from_dict(r, str(t)) for t, r in data.items()})

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> CrosscoderAlignment | None:
        """The alignment of a report document (None when it has none)."""
        cc = report.get("crosscoder")
        data = cc.get("persona_alignment") if isinstance(cc, Mapping) else None
        return None if data is None else cls.from_dict(data)
