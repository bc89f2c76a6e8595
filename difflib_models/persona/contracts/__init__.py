"""Typed records that cross package boundaries for persona vectors: the versioned validation summary a vector
file stores (per-layer rows, nulls, steering) and the features validation reads (the bottom room of persona)."""

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
)

__all__ = [
    "LayerValidation",
    "NULL_QUANTILES",
    "NullSummary",
    "SteeringSummary",
    "TraitFeatures",
    "TuningCandidate",
    "VALIDATION_LEVELS",
    "VALIDATION_SCHEMA_VERSION",
    "ValidationSummary",
]
