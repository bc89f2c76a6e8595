"""Typed steering dose-response curves: what ``full`` validation measures per steered layer.

- :class:`DoseResponseCurve`: for each steering coefficient ``alpha`` (units: the median residual norm at the
  layer), the mean P(matching answer), the coherence proxy and whether the point is coherent; the trend over the
  coherent points (``monotone``, ``effect``, Spearman rho), the readout settings and, at the selected layer, the
  norm-matched random-direction control (:class:`RandomDirectionControl`) and whether the curve beats it.
- :func:`read_steering_curves`: the curves of a ``.validation.json`` report (``ValidationResult.to_dict()``), read
  back with the same version rule as the vector-file summary
  (:meth:`~difflib_models.persona.contracts.records.ValidationSummary.from_json`): a record without
  ``schema_version`` or with a newer one is refused with a ConfigError naming the file and the fix.

JSON only at the file edge: ``to_json()`` gives the objects the reports have always held (the coherence values
under ``ab_mass`` for the letter readout, ``loglik_per_token`` for the text readout).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from difflib_models.errors import ConfigError, bad_value
from difflib_models.persona.contracts.records import SteeringSummary, check_schema_version

__all__ = ["ALPHA_UNIT", "COHERENCE_KEYS", "DoseResponseCurve", "RandomDirectionControl", "read_steering_curves"]

ALPHA_UNIT = "median residual norm at the layer (real non-BOS tokens of the readout contexts)"
#: the JSON key of the coherence proxy per readout
COHERENCE_KEYS = {"letter": "ab_mass", "text": "loglik_per_token"}


def _floats(xs: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in xs)


def _bool(x: Any) -> bool:
    if not isinstance(x, bool):
        raise TypeError(f"expected true/false, got {x!r}")
    return x


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass(frozen=True)
class RandomDirectionControl:
    """The dose-response along ``n_dirs`` norm-matched random directions (covariance-realistic, same layer, alphas,
    positions and readout). ``effects``: each direction's P(matching) change over ``span`` (the real curve's first
    and last coherent alpha; each curve's own coherent effect when ``span`` is None)."""

    n_dirs: int
    seed: int
    shrinkage: float
    kind: str
    span: tuple[float, float] | None
    effects: tuple[float, ...]
    own_effects: tuple[float, ...]
    monotone: tuple[bool, ...]
    p_matching: tuple[tuple[float, ...], ...]
    mean_abs_effect: float
    max_abs_effect: float

    def to_json(self) -> dict[str, Any]:
        return {"n_dirs": self.n_dirs, "seed": self.seed, "shrinkage": self.shrinkage, "kind": self.kind,
                "span": list(self.span) if self.span is not None else None, "effects": list(self.effects),
                "own_effects": list(self.own_effects), "monotone": list(self.monotone),
                "p_matching": [list(p) for p in self.p_matching], "mean_abs_effect": self.mean_abs_effect,
                "max_abs_effect": self.max_abs_effect}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RandomDirectionControl:
        span = data.get("span")
        return cls(n_dirs=int(data["n_dirs"]), seed=int(data["seed"]), shrinkage=float(data["shrinkage"]),
                   kind=str(data["kind"]), span=None if span is None else (float(span[0]), float(span[1])),
                   effects=_floats(data["effects"]), own_effects=_floats(data["own_effects"]),
                   monotone=tuple(_bool(m) for m in data["monotone"]),
                   p_matching=tuple(_floats(p) for p in data["p_matching"]),
                   mean_abs_effect=float(data["mean_abs_effect"]), max_abs_effect=float(data["max_abs_effect"]))


@dataclass(frozen=True)
class DoseResponseCurve:
    """One steering dose-response curve (see the module docstring).

    ``coherence`` is the A/B mass (``readout="letter"``) or the mean per-token answer log-likelihood
    (``readout="text"``); incoherent points (``coherent[i]`` False) are left out of ``monotone``, ``spearman``
    and ``effect`` (last minus first coherent P(matching)). ``positions``, ``split``, ``mean_score_diff`` and
    ``length_normalize`` (text readout) are set by a measured curve, None for a bare summary of given numbers."""

    readout: str
    alphas: tuple[float, ...]
    p_matching: tuple[float, ...]
    coherence: tuple[float, ...]
    coherent: tuple[bool, ...]
    reference_norm: float
    n_items: int
    monotone: bool
    spearman: float | None
    effect: float
    alpha_unit: str = ALPHA_UNIT
    positions: str | None = None
    split: str | None = None
    mean_score_diff: tuple[float, ...] | None = None
    length_normalize: bool | None = None
    control: RandomDirectionControl | None = None
    beats_control: bool | None = None
    """Whether ``effect`` exceeds the control ratio times the control's largest |effect|; None without a control."""

    def __post_init__(self) -> None:
        if self.readout not in COHERENCE_KEYS:
            raise ConfigError(bad_value("dose_response.readout", self.readout, tuple(COHERENCE_KEYS)))
        n = len(self.alphas)
        sizes = {"p_matching": len(self.p_matching), "coherence": len(self.coherence),
                 "coherent": len(self.coherent)}
        if self.mean_score_diff is not None:
            sizes["mean_score_diff"] = len(self.mean_score_diff)
        if any(size != n for size in sizes.values()):
            raise ConfigError(bad_value("dose_response", sizes, f"one value per alpha ({n})"))

    @property
    def coherence_key(self) -> str:
        """``ab_mass`` (letter readout) or ``loglik_per_token`` (text readout)."""
        return COHERENCE_KEYS[self.readout]

    @property
    def coherent_alphas(self) -> tuple[float, ...]:
        return tuple(a for a, ok in zip(self.alphas, self.coherent, strict=True) if ok)

    def with_control(self, control: RandomDirectionControl, *, beats_control: bool) -> DoseResponseCurve:
        return replace(self, control=control, beats_control=bool(beats_control))

    def summary(self, layer: int) -> SteeringSummary:
        """The vector-file summary row of this curve at ``layer``."""
        return SteeringSummary(
            layer=layer, readout=self.readout, monotone=self.monotone, effect=float(self.effect),
            alphas=self.alphas, p_matching=self.p_matching, coherent=self.coherent, beats_control=self.beats_control,
            control_max_abs_effect=None if self.control is None else float(self.control.max_abs_effect))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"readout": self.readout, "alphas": list(self.alphas),
                               "p_matching": list(self.p_matching), self.coherence_key: list(self.coherence),
                               "coherent": list(self.coherent), "reference_norm": self.reference_norm,
                               "n_items": self.n_items, "monotone": self.monotone, "spearman": self.spearman,
                               "effect": self.effect, "alpha_unit": self.alpha_unit}
        if self.positions is not None:
            out["positions"] = self.positions
        if self.split is not None:
            out["split"] = self.split
        if self.mean_score_diff is not None:
            out["mean_score_diff"] = list(self.mean_score_diff)
        if self.length_normalize is not None:
            out["length_normalize"] = self.length_normalize
        if self.control is not None:
            out["control"] = self.control.to_json()
        if self.beats_control is not None:
            out["beats_control"] = self.beats_control
        return out

    @classmethod
    def from_json(cls, data: Any) -> DoseResponseCurve:
        """A curve from its JSON object (TypeError / KeyError / ValueError on a malformed one; see
        :func:`read_steering_curves` for the versioned, file-level reader)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a dose-response object, got {type(data).__name__}")
        readout = str(data["readout"])
        if readout not in COHERENCE_KEYS:
            raise ValueError(f"unknown readout {readout!r}")
        diff = data.get("mean_score_diff")
        control = data.get("control")
        return cls(
            readout=readout, alphas=_floats(data["alphas"]), p_matching=_floats(data["p_matching"]),
            coherence=_floats(data[COHERENCE_KEYS[readout]]), coherent=tuple(_bool(c) for c in data["coherent"]),
            reference_norm=float(data["reference_norm"]), n_items=int(data["n_items"]),
            monotone=_bool(data["monotone"]), spearman=_opt_float(data.get("spearman")),
            effect=float(data["effect"]), alpha_unit=str(data.get("alpha_unit", ALPHA_UNIT)),
            positions=None if data.get("positions") is None else str(data["positions"]),
            split=None if data.get("split") is None else str(data["split"]),
            mean_score_diff=None if diff is None else _floats(diff),
            length_normalize=None if data.get("length_normalize") is None else _bool(data["length_normalize"]),
            control=None if control is None else RandomDirectionControl.from_json(control),
            beats_control=None if data.get("beats_control") is None else _bool(data["beats_control"]),
        )


def read_steering_curves(report: Any, *, source: str) -> dict[int, DoseResponseCurve]:
    """The steering curves ``{layer: curve}`` of a validation report (``.validation.json``, written by
    ``ValidationResult.to_dict()``). The report's ``schema_version`` follows the vector-file rule: missing (an
    untyped, older report) or newer than this library's is a ConfigError naming ``source``; so is a malformed
    curve."""
    if not isinstance(report, Mapping):
        raise ConfigError(bad_value("validation report", type(report).__name__, "a JSON object", source))
    check_schema_version(report.get("schema_version"), source=source, what="validation report")
    curves = report.get("steering") or {}
    try:
        return {int(layer): DoseResponseCurve.from_json(curve) for layer, curve in dict(curves).items()}
    except ConfigError as exc:
        raise ConfigError(f"{source}: invalid steering curve: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConfigError(bad_value("steering", f"{type(exc).__name__}: {exc}", "dose-response curves per layer",
                                    f"{source}: re-run the validation with this library")) from None
