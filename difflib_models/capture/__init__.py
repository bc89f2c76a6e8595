"""Activation capture: hook decoder blocks, select token positions, and prompt sets."""

from difflib_models.capture.capture import ActivationCapture, CaptureBatch, capture_batch, iter_capture
from difflib_models.capture.positions import Positions, parse_positions, select_mask

__all__ = [
    "ActivationCapture",
    "CaptureBatch",
    "Positions",
    "capture_batch",
    "iter_capture",
    "parse_positions",
    "select_mask",
]
