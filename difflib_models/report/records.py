"""Typed records of a gate's outcome, as the gate hands them to the report layer.

- :class:`CheckResult` (with its :class:`CheckDetails`): one evaluated policy check (id, metric, value, threshold,
  comparator, severity, status, source, description, details: the message and the evidence numbers).
- :class:`GateVerdict`: the overall verdict, its one-line reason and the evaluated checks, in policy order.
- :class:`PersonaRow` and :class:`PersonaSection`: the gate's persona measurement per trait (shift, shift_z,
  shift_frac, null percentile, control, signal) and the section around them.

The records are frozen. They become JSON only at the report-file edge: ``to_dict()`` gives exactly the objects
report.json has always held (``report.schema.json`` unchanged), ``from_dict()`` / :meth:`GateVerdict.from_report` /
:meth:`PersonaSection.from_report` read them back from a report document (``report --from``). Renderers and
threshold helpers take these records, never the raw check or persona dicts.

This module sits in the report layer (below ``gate``) so that both the producer (gate) and the consumers (the
renderers) import it.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from difflib_models.errors import ConfigError, bad_value
from difflib_models.finite import finite_or_none
from difflib_models.report.schema import CHECK_STATUSES, COMPARATORS, SOURCES, VERDICTS

__all__ = ["CheckDetails", "CheckResult", "Evidence", "GateVerdict", "PersonaRow", "PersonaSection", "VectorCacheInfo"]

Evidence = Union[str, int, float, bool, None, tuple["Evidence", ...], "types.MappingProxyType[str, Evidence]"]
"""An evidence value of a check: a JSON scalar, or a frozen list / mapping of them."""


def _freeze(value: Any) -> Evidence:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return types.MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _thaw(value: Evidence) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def _opt_number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(bad_value(what, value, "a number or null"))
    return value  # kept as written (an int threshold stays an int in the JSON)


def _choice(value: Any, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ConfigError(bad_value(what, value, tuple(allowed)))
    return str(value)


# ---------------------------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class CheckDetails:
    """Why a check has its status: a message (for anything but a plain pass), whether the signal was too weak for
    a verdict (``inconclusive``), and the evidence numbers the metric was read with (``evidence``, in the order the
    engine recorded them: trait, layer, null percentile, n, CI, ...)."""

    message: str | None = None
    inconclusive: bool = False
    evidence: tuple[tuple[str, Evidence], ...] = ()

    @classmethod
    def of(cls, evidence: Mapping[str, Any] | None = None, *, message: str | None = None,
           inconclusive: bool = False) -> CheckDetails:
        return cls(message=message, inconclusive=inconclusive,
                   evidence=tuple((str(k), _freeze(v)) for k, v in (evidence or {}).items()))

    def get(self, key: str, default: Evidence = None) -> Evidence:
        """The evidence value ``key`` (``default`` when not recorded)."""
        return next((v for k, v in self.evidence if k == key), default)

    def to_dict(self) -> dict[str, Any]:
        out = {k: _thaw(v) for k, v in self.evidence}
        if self.message is not None:
            out["message"] = self.message
        if self.inconclusive:
            out["inconclusive"] = True
        return out

    @classmethod
    def from_dict(cls, data: Any) -> CheckDetails:
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("check.details", type(data).__name__, "a JSON object"))
        rest = dict(data)
        message = rest.pop("message", None)
        inconclusive = rest.get("inconclusive") is True
        if inconclusive:
            rest.pop("inconclusive")
        return cls.of(rest, message=None if message is None else str(message), inconclusive=inconclusive)


@dataclass(frozen=True)
class CheckResult:
    """One evaluated policy check (a row of report.json's ``checks``)."""

    id: str
    metric: str
    value: float | None
    """The metric's value; None when it could not be evaluated (status error or skipped)."""
    threshold: float | None
    comparator: str
    """The condition to PASS: ``value <comparator> threshold``."""
    severity: str
    """What a violation means: ``warn`` or ``fail``."""
    status: str
    source: str
    description: str = ""
    details: CheckDetails = field(default_factory=CheckDetails)

    def __post_init__(self) -> None:
        _choice(self.status, CHECK_STATUSES, f"check {self.id!r} status")
        _choice(self.comparator, COMPARATORS, f"check {self.id!r} comparator")
        if not isinstance(self.details, CheckDetails):
            raise ConfigError(bad_value(f"check {self.id!r} details", type(self.details).__name__, "CheckDetails"))

    @property
    def message(self) -> str | None:
        return self.details.message

    @property
    def inconclusive(self) -> bool:
        return self.details.inconclusive

    @property
    def metric_name(self) -> str:
        """The last component of the metric path (``shift_z`` for ``persona.shift_z``)."""
        return self.metric.split(".")[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "metric": self.metric, "value": self.value, "threshold": self.threshold,
                "comparator": self.comparator, "severity": self.severity, "status": self.status,
                "source": self.source, "description": self.description, "details": self.details.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> CheckResult:
        """Read a check row of report.json (ConfigError naming what is wrong)."""
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("check", type(data).__name__, "a JSON object"))
        try:
            cid = str(data["id"])
            return cls(id=cid, metric=str(data["metric"]), value=_opt_number(data.get("value"), f"check {cid!r} value"),
                       threshold=_opt_number(data.get("threshold"), f"check {cid!r} threshold"),
                       comparator=str(data["comparator"]), severity=str(data.get("severity", "fail")),
                       status=str(data["status"]), source=_choice(data["source"], SOURCES, f"check {cid!r} source"),
                       description=str(data.get("description") or ""),
                       details=CheckDetails.from_dict(data.get("details") or {}))
        except KeyError as exc:
            raise ConfigError(bad_value("check", sorted(data), f"a check row with {exc.args[0]!r}")) from None


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision: ``verdict`` (pass, warn, fail, error, inconclusive; ``none`` when nothing was
    evaluated), a one-line ``reason`` and the evaluated ``checks``."""

    verdict: str
    reason: str
    checks: tuple[CheckResult, ...] = ()

    def __post_init__(self) -> None:
        _choice(self.verdict, VERDICTS, "verdict")
        if not all(isinstance(c, CheckResult) for c in self.checks):
            raise ConfigError(bad_value("checks", [type(c).__name__ for c in self.checks], "CheckResult records"))

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    def counts(self) -> dict[str, int]:
        """``{status: number of checks}`` for every status in :data:`CHECK_STATUSES`."""
        return {s: sum(1 for c in self.checks if c.status == s) for s in CHECK_STATUSES}

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def to_dict(self) -> dict[str, Any]:
        """The report.json keys this record fills: ``checks``, ``verdict``, ``verdict_reason``."""
        return {"checks": [c.to_dict() for c in self.checks], "verdict": self.verdict, "verdict_reason": self.reason}

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> GateVerdict:
        """The verdict record of a report document (``verdict: none`` and no checks for a report without a gate)."""
        rows = report.get("checks") or []
        if not isinstance(rows, list):
            raise ConfigError(bad_value("checks", type(rows).__name__, "a list of check rows"))
        return cls(verdict=str(report.get("verdict") or "none"), reason=str(report.get("verdict_reason") or ""),
                   checks=tuple(CheckResult.from_dict(c) for c in rows))


# ---------------------------------------------------------------------------------------------- persona
def _floats(xs: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in xs or ())


@dataclass(frozen=True)
class ResponseSignals:
    """Response-token shifts of one trait (the gate's optional ``persona.response_*`` metrics): the candidate on its
    own greedy answers minus the base on its own (``response_shift``, in base per-prompt SDs ``response_z``, in null
    SDs ``response_null_z``), and the base reading the candidate's answers minus its own (``response_text_*``).

    Headroom (:mod:`difflib_models.persona.shift.headroom`; None when the trait has no paired responses): where the
    base's own answers (``response_base_position``) and the candidate's (``response_candidate_position``, read by the
    base) sit on the trait scale (0 = neutral answers, 1 = trait-showing answers), and the room the base leaves
    toward the undesirable pole (``response_headroom``); a pass with too little headroom is no evidence.
    ``response_position_shift`` is the candidate's position minus the base's: how far its answers moved along the
    trait scale, in units of the distance from the neutral to the trait-showing answers (read by one model, so the
    fine-tune's own drift cannot enter). With a control: ``response_control_position`` (the control's answers, read
    by the base) and ``response_position_excess`` (candidate position minus control position)."""

    response_shift: float | None
    response_z: float | None
    response_null_z: float | None
    response_text_shift: float | None
    response_text_z: float | None
    response_base_position: float | None = None
    response_candidate_position: float | None = None
    response_headroom: float | None = None
    response_position_shift: float | None = None
    response_control_position: float | None = None
    response_position_excess: float | None = None

    FIELDS = ("response_shift", "response_z", "response_null_z", "response_text_shift", "response_text_z",
              "response_base_position", "response_candidate_position", "response_headroom",
              "response_position_shift", "response_control_position", "response_position_excess")
    CONTROL_FIELDS = ("response_control_position", "response_position_excess")
    """The fields a ``--control`` run adds (None without a control)."""

    def to_dict(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ResponseSignals | None:
        """The record from a persona row's keys; None when the row has none of them."""
        if not any(k in data for k in cls.FIELDS):
            return None
        return cls(**{k: finite_or_none(data.get(k)) for k in cls.FIELDS})


@dataclass(frozen=True)
class PersonaRow:
    """The gate's persona measurement of one trait at one layer (a row of report.json's ``persona.traits``).

    ``signal_ok`` says whether the vector carries the trait at ``layer`` (held-out AUROC, pos-neg gap, base
    spread); when False, ``signal_note`` says why and the row is no evidence for a verdict."""

    trait: str
    layer: int
    polarity: str
    shift: float
    shift_z: float | None
    shift_frac: float | None
    null_percentile: float | None
    drift_cos: float | None = None
    drift_norm: float | None = None
    n_probe_prompts: int | None = None
    vector_mode: str | None = None
    vector_file: str | None = None
    vector_source: str | None = None
    vector_validation_level: str | None = None
    null_shifts: tuple[float, ...] = ()
    base_projections: tuple[float, ...] = ()
    candidate_projections: tuple[float, ...] = ()
    control_shift: float | None = None
    control_shift_z: float | None = None
    excess_z: float | None = None
    has_control: bool = False
    """Whether a control model was measured (its keys are written even when their values are null)."""
    vector_auroc: float | None = None
    signal_ok: bool | None = None
    """None only in a hand-written or pre-signal report (the gate always says; the engine treats None as an error)."""
    signal_note: str | None = None
    response: ResponseSignals | None = None
    """Response-token shifts, only when a ``persona.response_*`` check names the trait."""

    _CORE = ("drift_cos", "drift_norm", "n_probe_prompts", "vector_mode", "vector_file", "vector_source",
             "vector_validation_level")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trait": self.trait, "layer": self.layer, "polarity": self.polarity, "shift": self.shift,
            "shift_z": self.shift_z, "shift_frac": self.shift_frac, "null_percentile": self.null_percentile,
            **{k: getattr(self, k) for k in self._CORE},
            "null_shifts": list(self.null_shifts), "base_projections": list(self.base_projections),
            "candidate_projections": list(self.candidate_projections),
        }
        if self.has_control:
            out["control_shift"] = self.control_shift
            out["control_shift_z"] = self.control_shift_z
            if self.excess_z is not None:
                out["excess_z"] = self.excess_z
        if self.response is not None:
            out.update(self.response.to_dict())
        if self.vector_auroc is not None:
            out["vector_auroc"] = self.vector_auroc
        if self.signal_ok is not None:
            out["signal_ok"] = self.signal_ok
        if self.signal_note is not None:
            out["signal_note"] = self.signal_note
        return out

    @classmethod
    def from_dict(cls, data: Any) -> PersonaRow:
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("persona row", type(data).__name__, "a JSON object"))
        try:
            layer = data["layer"]
            return cls(
                trait=str(data["trait"]), layer=int(layer), polarity=str(data.get("polarity", "undesirable")),
                shift=float(data["shift"]), shift_z=finite_or_none(data.get("shift_z")),
                shift_frac=finite_or_none(data.get("shift_frac")),
                null_percentile=finite_or_none(data.get("null_percentile")),
                drift_cos=finite_or_none(data.get("drift_cos")), drift_norm=finite_or_none(data.get("drift_norm")),
                n_probe_prompts=None if data.get("n_probe_prompts") is None else int(data["n_probe_prompts"]),
                **{k: None if data.get(k) is None else str(data[k])
                   for k in ("vector_mode", "vector_file", "vector_source", "vector_validation_level")},
                null_shifts=_floats(data.get("null_shifts")), base_projections=_floats(data.get("base_projections")),
                candidate_projections=_floats(data.get("candidate_projections")),
                control_shift=finite_or_none(data.get("control_shift")),
                control_shift_z=finite_or_none(data.get("control_shift_z")),
                excess_z=finite_or_none(data.get("excess_z")),
                has_control="control_shift" in data or "control_shift_z" in data,
                vector_auroc=finite_or_none(data.get("vector_auroc")), signal_ok=data["signal_ok"] if isinstance(data.get("signal_ok"), bool) else None,
                signal_note=None if data.get("signal_note") is None else str(data["signal_note"]),
                response=ResponseSignals.from_dict(data),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(bad_value("persona row", f"{type(exc).__name__}: {exc}",
                                        "a row with trait, layer and a numeric shift")) from None

    def value(self, metric: str) -> float | None:
        """A numeric field by name (``shift_z``, ``shift_frac``, ``response_z``, ...); None when absent or not
        numeric."""
        if metric in ResponseSignals.FIELDS:
            return None if self.response is None else finite_or_none(getattr(self.response, metric))
        v = getattr(self, metric, None)
        return finite_or_none(v)


@dataclass(frozen=True)
class VectorCacheInfo:
    """Whether the gate's per-base vector cache was used, where it lives and which traits it served."""

    enabled: bool
    dir: str
    hits: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "dir": self.dir, "hits": list(self.hits)}


@dataclass(frozen=True)
class PersonaSection:
    """The gate's ``persona`` report section: where the vectors came from, the null kind and one row per trait."""

    traits: tuple[PersonaRow, ...]
    vector_source: str = "files"
    null_kind: str = ""
    vector_cache: VectorCacheInfo | None = None

    def __post_init__(self) -> None:
        if not all(isinstance(r, PersonaRow) for r in self.traits):
            raise ConfigError(bad_value("persona.traits", [type(r).__name__ for r in self.traits], "PersonaRow records"))

    def row(self, trait: str) -> PersonaRow | None:
        return next((r for r in self.traits if r.trait == trait), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vector_source": self.vector_source, "null_kind": self.null_kind,
                               "traits": [r.to_dict() for r in self.traits]}
        if self.vector_cache is not None:
            out["vector_cache"] = self.vector_cache.to_dict()
        return out

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> PersonaSection | None:
        """The persona section of a report document (None when it has none)."""
        data = report.get("persona")
        if not isinstance(data, Mapping):
            return None
        cache = data.get("vector_cache")
        return cls(traits=tuple(PersonaRow.from_dict(r) for r in data.get("traits") or [] if isinstance(r, Mapping)),
                   vector_source=str(data.get("vector_source", "files")), null_kind=str(data.get("null_kind", "")),
                   vector_cache=VectorCacheInfo(bool(cache.get("enabled")), str(cache.get("dir", "")),
                                                tuple(str(h) for h in cache.get("hits") or ()))
                   if isinstance(cache, Mapping) else None)
