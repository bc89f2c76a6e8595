"""Activation steering (``hook``): add ``alpha * v`` to the residual stream after a decoder block."""

from __future__ import annotations

from difflib_models.persona.steering.hook import (
    POSITIONS,
    SteeringHook,
    median_residual_norm,
    steer,
    steering_delta,
)

__all__ = ["POSITIONS", "SteeringHook", "median_residual_norm", "steer", "steering_delta"]
