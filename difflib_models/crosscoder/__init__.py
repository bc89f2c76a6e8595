"""Crosscoders for model diffing: config, sparse model, Lightning training, analysis, Latent Scaling, splicing.

Public objects load lazily (``lightning`` is imported only by ``datamodule`` / ``lightning_module``):

- :class:`CrosscoderConfig` (``config``), :class:`Crosscoder` (``model``; sparse decoder for TopK/BatchTopK)
- :class:`PairedActivationSource`, :class:`TensorSource`, :class:`StoreSource` (``sources``)
- :class:`CrosscoderDataModule` (``datamodule``), :class:`CrosscoderLightningModule`, :func:`train_crosscoder`
  (``lightning_module``)
- :func:`analyze_crosscoder`, :func:`evaluate`, :class:`ClassThresholds` (``analysis``), :func:`latent_scaling`,
  :func:`splice_metrics`, :func:`max_activating_examples`, :func:`make_synthetic_pairs`
- :func:`export_dictionary_learning`, :func:`import_dictionary_learning` (``interop``: dictionary_learning folders)
"""

from __future__ import annotations

from difflib_models._lazy import lazy_exports

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
    "export_dictionary_learning": "interop",
    "import_dictionary_learning": "interop",
}

__getattr__, __dir__, __all__ = lazy_exports('difflib_models.crosscoder', _LAZY, globals())
