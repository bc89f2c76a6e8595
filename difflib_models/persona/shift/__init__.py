"""The shift of a model's probe activations along a persona vector (``core``): residual reads at the probe
positions, covariance-realistic null directions, and the one shift core: ``ShiftBaseline`` (built once from the
base model's probe activations) measures a candidate into a ``ShiftResult``; ``compute_shift`` is the same
arithmetic in one call."""

from __future__ import annotations

from difflib_models.persona.shift.core import (
    PROBE_BATCH_SIZE,
    ShiftBaseline,
    ShiftResult,
    compute_shift,
    covariance_null_directions,
    probe_activations,
    probe_encoded,
    read_residuals,
    usable_gap,
)

__all__ = [
    "PROBE_BATCH_SIZE",
    "ShiftBaseline",
    "ShiftResult",
    "compute_shift",
    "covariance_null_directions",
    "probe_activations",
    "probe_encoded",
    "read_residuals",
    "usable_gap",
]
