"""Typed records of a report's ``monitor`` section (a training-time PersonaMonitor time series), for its readers.

- :class:`MonitorSeries`: one trait's series: its layer, the steps, the main metric's values and every recorded
  metric's values (``metrics``), aligned with the steps (None where a value was missing or not finite).
- :class:`MonitorSection`: the series and the monitor's own outcome (status, first warn / fail step per trait, the
  step training stopped at, its thresholds).

:func:`difflib_models.report.builder.monitor_section` builds the section's JSON from a monitor file (the JSON
edge); the decision and plot helpers (:func:`difflib_models.report.thresholds.monitor_decision`,
:func:`difflib_models.report.plots.shift_series`) take these records, read with :meth:`MonitorSection.from_dict`.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from difflib_models.errors import ConfigError, bad_value

__all__ = ["MonitorSection", "MonitorSeries"]

Threshold = float | int | bool | None
"""A monitor threshold value (warn_z, fail_frac, fail_consecutive, calibrated, ...)."""


def _value(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _values(xs: Any) -> tuple[float | None, ...]:
    return tuple(_value(x) for x in xs) if isinstance(xs, list | tuple) else ()


def _steps(xs: Any, trait: str) -> tuple[int, ...]:
    if not isinstance(xs, list | tuple):
        return ()
    try:
        return tuple(int(x) for x in xs)
    except (TypeError, ValueError):
        raise ConfigError(bad_value(f"monitor series {trait!r} steps", xs, "a list of integer steps")) from None


def _step_map(data: Any) -> types.MappingProxyType[str, int | None] | None:
    if not isinstance(data, Mapping):
        return None
    return types.MappingProxyType({str(k): None if v is None else int(v) for k, v in data.items()
                                   if v is None or (isinstance(v, int | float) and not isinstance(v, bool))})


def _scalars(data: Mapping[str, Any]) -> types.MappingProxyType[str, Threshold]:
    return types.MappingProxyType({str(k): v for k, v in data.items()
                                   if v is None or isinstance(v, int | float | bool)})


@dataclass(frozen=True)
class MonitorSeries:
    """One trait's monitor series: ``values`` of the main ``metric`` and ``metrics`` (every recorded metric by
    name), aligned with ``steps``."""

    trait: str
    steps: tuple[int, ...]
    values: tuple[float | None, ...] = ()
    layer: int | None = None
    metric: str = "shift_z"
    metrics: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", types.MappingProxyType(dict(self.metrics)))

    def values_of(self, metric: str) -> tuple[float | None, ...]:
        """The values of ``metric`` (``metrics[metric]``, else ``values`` when it is the main metric, else none)."""
        if metric in self.metrics:
            return self.metrics[metric]
        return self.values if self.metric == metric else ()

    @property
    def label(self) -> str:
        return f"{self.trait} L{self.layer}" if self.layer is not None else self.trait

    @classmethod
    def from_dict(cls, data: Any) -> MonitorSeries:
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("monitor series", type(data).__name__, "a JSON object"))
        trait = str(data.get("trait"))
        layer = data.get("layer")
        metrics = data.get("metrics")
        return cls(trait=trait, steps=_steps(data.get("steps"), trait), values=_values(data.get("values")),
                   layer=int(layer) if isinstance(layer, int) and not isinstance(layer, bool) else None,
                   metric=str(data.get("metric", "shift_z")),
                   metrics={str(k): _values(v) for k, v in metrics.items() if isinstance(v, list)}
                   if isinstance(metrics, Mapping) else {})


@dataclass(frozen=True)
class MonitorSection:
    """A report's monitor section: the series, the monitor's worst ``status`` (ok, warn, fail; None when not
    recorded), the first warn / fail step per trait, the step ``stop_on_fail`` ended training at, and the
    monitor's ``thresholds`` (``trait_thresholds``: a trait's own lines where they differ per trait, e.g. one
    monitor of several traits with a gate policy's lines; :meth:`thresholds_of`)."""

    series: tuple[MonitorSeries, ...]
    status: str | None = None
    first_warn_step: Mapping[str, int | None] | None = None
    first_fail_step: Mapping[str, int | None] | None = None
    stopped_at_step: int | None = None
    thresholds: Mapping[str, Threshold] | None = None
    trait_thresholds: Mapping[str, Mapping[str, Threshold]] | None = None

    def __post_init__(self) -> None:
        if not all(isinstance(s, MonitorSeries) for s in self.series):
            raise ConfigError(bad_value("monitor.series", [type(s).__name__ for s in self.series],
                                        "MonitorSeries records"))

    def first_step(self, severity: str) -> Mapping[str, int | None] | None:
        """``first_warn_step`` or ``first_fail_step``."""
        return self.first_fail_step if severity == "fail" else self.first_warn_step

    def threshold(self, key: str) -> Threshold:
        return None if self.thresholds is None else self.thresholds.get(key)

    def thresholds_of(self, trait: str | None) -> Mapping[str, Threshold] | None:
        """The thresholds that decided ``trait``'s status: its own entry of ``trait_thresholds`` over the shared
        ``thresholds`` (the shared ones when the trait has none or ``trait`` is None)."""
        own = (self.trait_thresholds or {}).get(trait) if trait is not None else None
        if own is None:
            return self.thresholds
        return types.MappingProxyType({**(self.thresholds or {}), **own})

    @classmethod
    def from_dict(cls, data: Any) -> MonitorSection:
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("monitor", type(data).__name__, "a JSON object"))
        th = data.get("thresholds")
        stopped = data.get("stopped_at_step")
        status = data.get("status")
        return cls(series=tuple(MonitorSeries.from_dict(s) for s in data.get("series") or []
                                if isinstance(s, Mapping)),
                   status=None if status is None else str(status),
                   first_warn_step=_step_map(data.get("first_warn_step")),
                   first_fail_step=_step_map(data.get("first_fail_step")),
                   stopped_at_step=int(stopped) if isinstance(stopped, int) and not isinstance(stopped, bool)
                   else None,
                   thresholds=_scalars(th) if isinstance(th, Mapping) else None,
                   trait_thresholds=types.MappingProxyType({str(t): _scalars(v) for t, v in th["traits"].items()
                                                            if isinstance(v, Mapping)})
                   if isinstance(th, Mapping) and isinstance(th.get("traits"), Mapping) else None)

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> MonitorSection | None:
        """The monitor section of a report document (None when it has none)."""
        data = report.get("monitor")
        return None if not data else cls.from_dict(data)
