"""Typed records of the data filter's output: one scored row (:class:`FilterRow`, a line of ``scores.jsonl``) and
the run's summary (:class:`FilterSummary`, ``summary.json``; the gate copies it into its report's ``data_filter``
section).

The records are frozen. ``to_dict()`` gives exactly the objects the files have always held; ``from_dict()`` reads
them back leniently: a summary is often hand-written (``{"n": 200, "n_flagged": 3}``), so every key is optional, a
key of the wrong type is kept verbatim (not typed) and unknown keys are kept too, all in the order they were
written. Whether the numbers are usable evidence is the gate engine's decision (fail-closed: a summary without
``n`` is a check error, exit 3, not a config error).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from difflib_models.errors import ConfigError, bad_value

__all__ = ["FilterRow", "FilterSummary", "SUMMARY_KEYS"]

#: the keys of ``summary.json`` in the order :func:`~difflib_models.persona.filtering.scoring.write_outputs`
#: writes them (``source`` and ``outputs`` are added when the files are written)
SUMMARY_KEYS: tuple[str, ...] = (
    "trait", "layer", "layer_convention", "method", "mode", "n", "n_flagged", "n_kept", "mean_delta_p", "ci95",
    "std_delta_p", "mean_proj_train", "mean_proj_base", "threshold", "threshold_source", "percentile", "reference",
    "model", "vector_model_weight_hash", "seconds", "filter_validation", "readout", "config",
)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _opt_num(x: Any) -> bool:
    return x is None or _is_num(x)


@dataclass(frozen=True)
class FilterRow:
    """One scored sample (a line of ``scores.jsonl``): the sample's ``id`` and input ``line``, the trait and layer,
    ``proj_train`` (response projection), ``proj_base`` (the model's own baseline), ``delta_p`` (their difference),
    its ``percentile`` in the reference (or the data itself), whether it is ``flagged`` and the ``method``."""

    id: str
    line: int
    trait: str
    layer: int
    proj_train: float
    proj_base: float
    delta_p: float
    percentile: float
    flagged: bool
    method: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FilterRow:
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("scores row", type(data).__name__, "a JSON object"))
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data]
        if missing:
            raise ConfigError(bad_value("scores row", sorted(data), f"an object with {missing}"))
        return cls(id=str(data["id"]), line=int(data["line"]), trait=str(data["trait"]), layer=int(data["layer"]),
                   proj_train=float(data["proj_train"]), proj_base=float(data["proj_base"]),
                   delta_p=float(data["delta_p"]), percentile=float(data["percentile"]),
                   flagged=bool(data["flagged"]), method=str(data["method"]))


#: key -> whether a JSON value is the typed field's value (else it is kept verbatim in ``extra``)
_CHECKS: dict[str, Any] = {
    **{k: lambda x: x is None or isinstance(x, str) for k in (
        "trait", "layer_convention", "method", "mode", "threshold_source", "vector_model_weight_hash", "source")},
    **{k: lambda x: x is None or _is_int(x) for k in ("layer", "n", "n_flagged", "n_kept")},
    **{k: _opt_num for k in ("mean_delta_p", "std_delta_p", "mean_proj_train", "mean_proj_base", "threshold",
                             "percentile", "seconds")},
    "ci95": lambda x: x is None or (isinstance(x, list) and len(x) == 2 and all(_opt_num(v) for v in x)),
    "reference": lambda x: x is None or (isinstance(x, Mapping) and all(_is_num(v) for v in x.values())),
    "outputs": lambda x: x is None or (isinstance(x, Mapping) and all(isinstance(v, str) for v in x.values())),
}


@dataclass(frozen=True)
class FilterSummary:
    """A data-filter run's summary (``summary.json``): what was scored (``trait``, ``layer``, ``method``,
    ``mode``), the counts (``n``, ``n_flagged``, ``n_kept``), the data-set score (``mean_delta_p`` with its
    bootstrap ``ci95``, ``std_delta_p``, the mean projections), the selection (``threshold``, its source, the
    ``percentile``, the ``reference`` set's n / mean / percentile value) and the timing. Every field is None when
    the summary does not carry it (a hand-written one often holds only ``n`` and ``n_flagged``).

    ``extra`` holds what the record does not type, verbatim: the run's provenance (``model`` identity,
    ``filter_validation`` record, the ``readout`` read: its blocks and label, ``config``) and unknown or mistyped
    keys. ``keys`` is the written key order."""

    trait: str | None = None
    layer: int | None = None
    layer_convention: str | None = None
    method: str | None = None
    mode: str | None = None
    n: int | None = None
    n_flagged: int | None = None
    n_kept: int | None = None
    mean_delta_p: float | None = None
    ci95: tuple[float | None, float | None] | None = None
    std_delta_p: float | None = None
    mean_proj_train: float | None = None
    mean_proj_base: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    percentile: float | None = None
    reference: Mapping[str, float] | None = None
    vector_model_weight_hash: str | None = None
    seconds: float | None = None
    source: str | None = None
    outputs: Mapping[str, str] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", types.MappingProxyType(dict(self.extra)))
        for name in ("reference", "outputs"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, types.MappingProxyType(dict(value)))
        if self.ci95 is not None:
            object.__setattr__(self, "ci95", tuple(self.ci95))

    @property
    def flagged_share(self) -> float | None:
        """``n_flagged / n`` (None without both, or with ``n`` 0)."""
        if self.n is None or self.n_flagged is None or self.n <= 0:
            return None
        return self.n_flagged / self.n

    def with_outputs(self, source: str | None, outputs: Mapping[str, str]) -> FilterSummary:
        """The summary as written to disk: with the input ``source`` and the ``outputs`` paths."""
        keys = self.keys + tuple(k for k in ("source", "outputs") if k not in self.keys)
        return dataclasses.replace(self, source=source, outputs=outputs, keys=keys)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.keys:
            if key in self.extra:
                out[key] = self.extra[key]
                continue
            value = getattr(self, key)
            if key == "ci95" and value is not None:
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> FilterSummary:
        """Read a summary leniently (see the module docstring); only a non-object is refused."""
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("data-filter summary", type(data).__name__, "a JSON object"))
        typed: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            check = _CHECKS.get(key)
            if check is not None and check(value) and not _non_finite(value):
                typed[key] = value
            else:
                extra[str(key)] = value
        return cls(**typed, extra=extra, keys=tuple(str(k) for k in data))


def _non_finite(value: Any) -> bool:
    """Whether ``value`` is a non-finite float (kept verbatim for the engine to refuse)."""
    return isinstance(value, float) and not math.isfinite(value)
