"""Typed data contracts of persona validation: the features it reads and the summary a vector file carries.

- :class:`TraitFeatures`: the activations validation needs, ``{layer: [n, d]}`` for the extraction and the
  evaluation split, pos and neg. Any source may build it (an extractor, the gate's probe pass, a test); validation
  never needs a fitted extractor.
- :class:`ValidationSummary` (with :class:`LayerValidation` rows, :class:`NullSummary` per null and
  :class:`SteeringSummary` per steered layer): the frozen, versioned record stored under ``validation`` in a vector
  file's JSON sidecar. It is converted to and from JSON only at the file edge (:meth:`ValidationSummary.to_json`,
  :meth:`ValidationSummary.from_json`). A record without ``schema_version`` (written before this contract) or with
  a newer one is refused with a ConfigError naming the file and the fix (re-extract / upgrade); nothing is guessed.

A non-finite statistic (a NaN Cohen's d of a constant projection) is stored as JSON ``null`` and read back as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from difflib_models.errors import ConfigError, bad_value

if TYPE_CHECKING:
    import torch

VALIDATION_SCHEMA_VERSION = 1
"""Version of the ``validation`` record in a vector sidecar (:class:`ValidationSummary`)."""
VALIDATION_LEVELS: tuple[str, ...] = ("quick", "full")
"""``quick``: held-out AUROC, nulls, split-half; ``full``: plus the steering dose-response. A file without a
validation record has level ``"none"`` (:attr:`PersonaVectorSet.validation_level`)."""
NULL_QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)
"""Quantiles of each null's AUROC draws kept in the summary."""

__all__ = ["NULL_QUANTILES", "VALIDATION_LEVELS", "VALIDATION_SCHEMA_VERSION", "LayerValidation", "NullSummary",
           "SteeringSummary", "TraitFeatures", "TuningCandidate", "ValidationSummary", "check_schema_version"]


# ---------------------------------------------------------------------- features
@dataclass(frozen=True)
class TraitFeatures:
    """Activations of one trait's contrast samples in one model: ``{layer: [n, d]}`` per split and class.

    ``extraction_*`` are the samples the direction was fitted on (permutation null, random-direction covariance,
    split-half); ``evaluation_*`` the held-out samples every statistic is measured on."""

    extraction_pos: Mapping[int, torch.Tensor]
    extraction_neg: Mapping[int, torch.Tensor]
    evaluation_pos: Mapping[int, torch.Tensor]
    evaluation_neg: Mapping[int, torch.Tensor]

    def __post_init__(self) -> None:
        parts = {"extraction_pos": self.extraction_pos, "extraction_neg": self.extraction_neg,
                 "evaluation_pos": self.evaluation_pos, "evaluation_neg": self.evaluation_neg}
        layers = set(self.extraction_pos)
        for name, part in parts.items():
            if not part or set(part) != layers:
                raise ConfigError(bad_value(f"features.{name}", sorted(part), sorted(layers) or "some layers",
                                            "Every split and class needs the same layers."))
            if any(t.dim() != 2 or t.shape[0] < 1 for t in part.values()):
                raise ConfigError(bad_value(f"features.{name}", {k: tuple(t.shape) for k, t in part.items()},
                                            "[n, d] tensors with n >= 1"))

    @property
    def layers(self) -> list[int]:
        return sorted(self.extraction_pos)


# ---------------------------------------------------------------------- summary records
@dataclass(frozen=True)
class LayerValidation:
    """Held-out statistics of one layer's direction (evaluation split)."""

    layer: int
    auroc: float
    auroc_ci: tuple[float, float]
    """Bootstrap 95% CI of the AUROC."""
    cohens_d: float
    alignment: float
    """cos(direction, held-out mean(pos) - mean(neg))."""
    gap: float | None = None
    """The vector's pos-neg gap at this layer (shift_frac's g), as recorded with the vectors."""
    base_std: float | None = None
    """sigma_0: std of the base model's probe projections at this layer, as recorded with the vectors."""
    split_half_cos: float | None = None
    norm: float | None = None
    """Norm of the raw direction."""


@dataclass(frozen=True)
class NullSummary:
    """One null's comparison with the observed statistics (each the max over layers when ``max_over_layers``).

    ``passes`` is the separation test that counts: observed AUROC > its q95, or, where the null's AUROC q95 is at
    the ceiling (``saturated``), observed alignment > the alignment q95."""

    name: str
    n: int
    max_over_layers: bool
    observed: float
    quantiles: tuple[tuple[float, float], ...]
    """``((q, value), ...)`` of the null's AUROC draws at :data:`NULL_QUANTILES`."""
    q95: float
    p_value: float
    d_observed: float
    d_q95: float
    d_p_value: float
    align_observed: float
    align_q95: float
    align_p_value: float
    saturated: bool
    test: str
    passes: bool

    @property
    def beats_null_95(self) -> bool:
        return self.observed > self.q95

    @property
    def d_beats_null_95(self) -> bool:
        return self.d_observed > self.d_q95

    @property
    def align_beats_null_95(self) -> bool:
        return self.align_observed > self.align_q95

    def quantile(self, q: float) -> float | None:
        return dict(self.quantiles).get(q)


@dataclass(frozen=True)
class SteeringSummary:
    """The steering dose-response at one layer (``full`` validation only)."""

    layer: int
    readout: str
    monotone: bool
    effect: float
    alphas: tuple[float, ...]
    p_matching: tuple[float, ...]
    coherent: tuple[bool, ...]
    beats_control: bool | None = None
    """None when no random-direction control ran at this layer."""
    control_max_abs_effect: float | None = None


@dataclass(frozen=True)
class TuningCandidate:
    """One (mode, layer, aggregator) scored on a trait's TUNING split (imported traits: they are chosen there)."""

    mode: str
    layer: int
    auroc: float
    aggregator: str = "mean_diff"


@dataclass(frozen=True)
class ValidationSummary:
    """What a vector file records about its validation (see the module docstring)."""

    level: str
    mode: str
    model_name: str | None
    model_weight_hash: str | None
    selected_layer: int
    best_auroc_layer: int
    selection_reason: str
    verdict: str
    n_eval_pos: int
    n_eval_neg: int
    layers: tuple[LayerValidation, ...]
    nulls: tuple[NullSummary, ...]
    steering: tuple[SteeringSummary, ...] = ()
    warnings: tuple[str, ...] = ()
    split: str = "evaluation"
    separation_rule: str = ""
    schema_version: int = VALIDATION_SCHEMA_VERSION
    selection_split: str = "evaluation"
    """Where the layer (and mode) was chosen: ``"evaluation"`` (max over layers; the nulls take it too) or
    ``"tuning"`` (imported traits; ``tuning`` lists the candidates, the nulls are at the one chosen layer)."""
    tuning: tuple[TuningCandidate, ...] = ()

    def __post_init__(self) -> None:
        if self.level not in VALIDATION_LEVELS:
            raise ConfigError(bad_value("validation.level", self.level, VALIDATION_LEVELS))
        held = [row.layer for row in self.layers]
        if len(set(held)) != len(held) or not held:
            raise ConfigError(bad_value("validation.layers", held, "one row per validated layer, at least one"))
        for name, layer in (("selected_layer", self.selected_layer), ("best_auroc_layer", self.best_auroc_layer)):
            if layer not in held:
                raise ConfigError(bad_value(f"validation.{name}", layer, held))

    # ------------------------------------------------------------------ access
    def layer(self, layer: int) -> LayerValidation | None:
        """The row of ``layer``, or None when that layer was not validated."""
        return next((row for row in self.layers if row.layer == layer), None)

    def auroc_at(self, layer: int) -> float | None:
        """Held-out AUROC at ``layer`` (None when the layer was not validated or the value is not finite); never
        another layer's value."""
        row = self.layer(layer)
        return row.auroc if row is not None and math.isfinite(row.auroc) else None

    @property
    def auroc_by_layer(self) -> dict[int, float]:
        return {row.layer: row.auroc for row in self.layers}

    @property
    def selected(self) -> LayerValidation:
        row = self.layer(self.selected_layer)
        assert row is not None  # checked in __post_init__
        return row

    def null(self, name: str) -> NullSummary | None:
        return next((n for n in self.nulls if n.name == name), None)

    def steering_at(self, layer: int) -> SteeringSummary | None:
        return next((s for s in self.steering if s.layer == layer), None)

    # ------------------------------------------------------------------ JSON (the file edge)
    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version, "level": self.level, "mode": self.mode, "split": self.split,
            "model": {"name": self.model_name, "weight_hash": self.model_weight_hash},
            "selected_layer": self.selected_layer, "best_auroc_layer": self.best_auroc_layer,
            "selection_reason": self.selection_reason, "verdict": self.verdict,
            "n_eval_pos": self.n_eval_pos, "n_eval_neg": self.n_eval_neg,
            "layers": [{"layer": r.layer, "auroc": _num(r.auroc), "auroc_ci": [_num(x) for x in r.auroc_ci],
                        "cohens_d": _num(r.cohens_d), "alignment": _num(r.alignment), "gap": _num(r.gap),
                        "base_std": _num(r.base_std), "split_half_cos": _num(r.split_half_cos),
                        "norm": _num(r.norm)} for r in self.layers],
            "nulls": [{"name": n.name, "n": n.n, "max_over_layers": n.max_over_layers, "observed": _num(n.observed),
                       "quantiles": [[q, _num(v)] for q, v in n.quantiles], "q95": _num(n.q95),
                       "p_value": _num(n.p_value), "d_observed": _num(n.d_observed), "d_q95": _num(n.d_q95),
                       "d_p_value": _num(n.d_p_value), "align_observed": _num(n.align_observed),
                       "align_q95": _num(n.align_q95), "align_p_value": _num(n.align_p_value),
                       "saturated": n.saturated, "test": n.test, "passes": n.passes} for n in self.nulls],
            "steering": [{"layer": s.layer, "readout": s.readout, "monotone": s.monotone, "effect": _num(s.effect),
                          "alphas": list(s.alphas), "p_matching": [_num(p) for p in s.p_matching],
                          "coherent": list(s.coherent), "beats_control": s.beats_control,
                          "control_max_abs_effect": _num(s.control_max_abs_effect)} for s in self.steering],
            "warnings": list(self.warnings), "separation_rule": self.separation_rule,
            "selection_split": self.selection_split,
            "tuning": [{"mode": c.mode, "layer": c.layer, "auroc": _num(c.auroc), "aggregator": c.aggregator}
                       for c in self.tuning],
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str) -> ValidationSummary:
        """Read the record of the file ``source``; ConfigError (naming ``source``) for an unversioned, newer or
        malformed record."""
        hint = "re-extract the vectors with this library (difflib-models persona extract)"
        if not isinstance(data, Mapping):
            raise ConfigError(bad_value("validation", type(data).__name__, "a validation record (JSON object)",
                                        f"{source}: {hint}"))
        version = check_schema_version(data.get("schema_version"), source=source)
        try:
            model = data.get("model") or {}
            return cls(
                schema_version=version, level=str(data["level"]), mode=str(data["mode"]),
                split=str(data.get("split", "evaluation")),
                model_name=_opt_str(model.get("name")), model_weight_hash=_opt_str(model.get("weight_hash")),
                selected_layer=_int(data["selected_layer"]), best_auroc_layer=_int(data["best_auroc_layer"]),
                selection_reason=str(data["selection_reason"]), verdict=str(data["verdict"]),
                n_eval_pos=_int(data["n_eval_pos"]), n_eval_neg=_int(data["n_eval_neg"]),
                layers=tuple(LayerValidation(
                    layer=_int(r["layer"]), auroc=_float(r["auroc"]),
                    auroc_ci=(_float(r["auroc_ci"][0]), _float(r["auroc_ci"][1])),
                    cohens_d=_float(r["cohens_d"]), alignment=_float(r["alignment"]), gap=_opt_float(r.get("gap")),
                    base_std=_opt_float(r.get("base_std")), split_half_cos=_opt_float(r.get("split_half_cos")),
                    norm=_opt_float(r.get("norm")),
                ) for r in data["layers"]),
                nulls=tuple(NullSummary(
                    name=str(n["name"]), n=_int(n["n"]), max_over_layers=_bool(n["max_over_layers"]),
                    observed=_float(n["observed"]), quantiles=tuple((float(q), _float(v)) for q, v in n["quantiles"]),
                    q95=_float(n["q95"]), p_value=_float(n["p_value"]), d_observed=_float(n["d_observed"]),
                    d_q95=_float(n["d_q95"]), d_p_value=_float(n["d_p_value"]),
                    align_observed=_float(n["align_observed"]), align_q95=_float(n["align_q95"]),
                    align_p_value=_float(n["align_p_value"]), saturated=_bool(n["saturated"]), test=str(n["test"]),
                    passes=_bool(n["passes"]),
                ) for n in data["nulls"]),
                steering=tuple(SteeringSummary(
                    layer=_int(s["layer"]), readout=str(s["readout"]), monotone=_bool(s["monotone"]),
                    effect=_float(s["effect"]), alphas=tuple(float(a) for a in s["alphas"]),
                    p_matching=tuple(_float(p) for p in s["p_matching"]),
                    coherent=tuple(_bool(c) for c in s["coherent"]),
                    beats_control=None if s.get("beats_control") is None else _bool(s["beats_control"]),
                    control_max_abs_effect=_opt_float(s.get("control_max_abs_effect")),
                ) for s in data.get("steering") or ()),
                warnings=tuple(str(w) for w in data.get("warnings") or ()),
                separation_rule=str(data.get("separation_rule", "")),
                selection_split=str(data.get("selection_split", "evaluation")),
                tuning=tuple(TuningCandidate(mode=str(c["mode"]), layer=_int(c["layer"]), auroc=_float(c["auroc"]),
                                             aggregator=str(c.get("aggregator", "mean_diff")))
                             for c in data.get("tuning") or ()),
            )
        except ConfigError as exc:
            raise ConfigError(f"{source}: invalid validation record: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ConfigError(bad_value("validation", f"{type(exc).__name__}: {exc}",
                                        f"a schema_version {version} validation record", f"{source}: {hint}")) from None


def check_schema_version(version: Any, *, source: str, what: str = "validation summary") -> int:
    """``version`` when this library reads it; a ConfigError naming ``source`` when it is missing (a record written
    before the typed, versioned format), not an int, or newer than :data:`VALIDATION_SCHEMA_VERSION`. The one
    version rule for vector-file summaries and validation reports (steering curves)."""
    hint = "re-extract the vectors with this library (difflib-models persona extract)"
    if version is None:
        raise ConfigError(bad_value(
            "validation.schema_version", None, [VALIDATION_SCHEMA_VERSION],
            f"{source} carries a {what} written before the typed, versioned format (untyped dict); {hint}"))
    if isinstance(version, bool) or not isinstance(version, int) or version > VALIDATION_SCHEMA_VERSION:
        raise ConfigError(bad_value("validation.schema_version", version, [VALIDATION_SCHEMA_VERSION],
                                    f"{source} was written by a newer difflib_models; upgrade it to read it"))
    return version


def _num(x: float | None) -> float | None:
    """JSON-safe number: NaN / inf -> null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _float(x: Any) -> float:
    """A JSON number (null -> NaN); bools and strings are refused."""
    if x is None:
        return float("nan")
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise TypeError(f"expected a number, got {x!r}")
    return float(x)


def _opt_float(x: Any) -> float | None:
    return None if x is None else _float(x)


def _int(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"expected an integer, got {x!r}")
    return x


def _bool(x: Any) -> bool:
    if not isinstance(x, bool):
        raise TypeError(f"expected true/false, got {x!r}")
    return x


def _opt_str(x: Any) -> str | None:
    return None if x is None else str(x)
