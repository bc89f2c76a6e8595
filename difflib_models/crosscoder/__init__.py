"""Crosscoders for model diffing: config, sparse model, Lightning training, analysis, Latent Scaling, splicing.

Public objects load lazily (``lightning`` is imported only by ``datamodule`` / ``lightning_module``):

- :class:`CrosscoderConfig` (``config``), :class:`Crosscoder` (``model``; sparse decoder for TopK/BatchTopK)
- :class:`PairedActivationSource`, :class:`TensorSource`, :class:`StoreSource` (``sources``)
- :class:`CrosscoderDataModule` (``datamodule``), :class:`CrosscoderLightningModule`, :func:`train_crosscoder`
  (``lightning_module``)
- :func:`analyze_crosscoder`, :func:`evaluate`, :class:`ClassThresholds` (``analysis``), :func:`latent_scaling`,
  :func:`splice_metrics`, :func:`max_activating_examples`, :func:`make_synthetic_pairs`
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "CrosscoderConfig": "config",
    "Crosscoder": "model",
    "PairedActivationSource": "sources",
    "TensorSource": "sources",
    "StoreSource": "sources",
    "estimate_norm_scales": "sources",
    "CrosscoderDataModule": "datamodule",
    "CrosscoderLightningModule": "lightning_module",
    "train_crosscoder": "lightning_module",
    "analyze_crosscoder": "analysis",
    "evaluate": "analysis",
    "ClassThresholds": "analysis",
    "relative_decoder_norm": "analysis",
    "decoder_cosine": "analysis",
    "classify_latents": "analysis",
    "latent_scaling": "latent_scaling",
    "splice_metrics": "splice",
    "max_activating_examples": "examples",
    "report_section": "report",
    "make_synthetic_pairs": "synthetic",
    "SyntheticPairs": "synthetic",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'difflib_models.crosscoder' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"difflib_models.crosscoder.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
