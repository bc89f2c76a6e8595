"""The shift of a model's probe activations along a persona vector (``core``): residual reads at the probe
positions, covariance-realistic null directions and ``compute_shift`` -> ``ShiftResult``."""

from __future__ import annotations

from difflib_models.persona.shift.core import (
    ShiftResult,
    compute_shift,
    covariance_null_directions,
    probe_activations,
    probe_encoded,
    read_residuals,
    usable_gap,
)

__all__ = [
    "ShiftResult",
    "compute_shift",
    "covariance_null_directions",
    "probe_activations",
    "probe_encoded",
    "read_residuals",
    "usable_gap",
]
