"""Typed records that cross package boundaries for persona vectors: the versioned validation summary a vector
file stores (per-layer rows, nulls, steering), the steering dose-response curves of full validation, and the
features validation reads (the bottom room of persona)."""

from difflib_models.persona.contracts.dose_response import (
    DoseResponseCurve,
    RandomDirectionControl,
    read_steering_curves,
)
from difflib_models.persona.contracts.records import (
    NULL_QUANTILES,
    VALIDATION_LEVELS,
    VALIDATION_SCHEMA_VERSION,
    LayerValidation,
    NullSummary,
    SteeringSummary,
    TraitFeatures,
    TuningCandidate,
    ValidationSummary,
    check_schema_version,
)

__all__ = [
    "DoseResponseCurve",
    "LayerValidation",
    "NULL_QUANTILES",
    "NullSummary",
    "RandomDirectionControl",
    "SteeringSummary",
    "TraitFeatures",
    "TuningCandidate",
    "VALIDATION_LEVELS",
    "VALIDATION_SCHEMA_VERSION",
    "ValidationSummary",
    "check_schema_version",
    "read_steering_curves",
]
