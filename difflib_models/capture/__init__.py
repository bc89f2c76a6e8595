"""Activation capture: hook decoder blocks, select token positions, and prompt sets."""

from difflib_models.capture.capture import ActivationCapture, CaptureBatch, capture_batch, iter_capture
from difflib_models.capture.positions import Positions, parse_positions, select_mask
from difflib_models.capture.prompts import builtin_prompts, load_prompts

__all__ = [
    "ActivationCapture",
    "CaptureBatch",
    "Positions",
    "builtin_prompts",
    "capture_batch",
    "iter_capture",
    "load_prompts",
    "parse_positions",
    "select_mask",
]
