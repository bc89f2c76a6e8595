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

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports

if TYPE_CHECKING:
    from difflib_models.crosscoder.analysis import (
        ClassThresholds as ClassThresholds,
    )
    from difflib_models.crosscoder.analysis import (
        analyze_crosscoder as analyze_crosscoder,
    )
    from difflib_models.crosscoder.analysis import (
        classify_latents as classify_latents,
    )
    from difflib_models.crosscoder.analysis import (
        decoder_cosine as decoder_cosine,
    )
    from difflib_models.crosscoder.analysis import (
        evaluate as evaluate,
    )
    from difflib_models.crosscoder.analysis import (
        relative_decoder_norm as relative_decoder_norm,
    )
    from difflib_models.crosscoder.config import (
        CrosscoderConfig as CrosscoderConfig,
    )
    from difflib_models.crosscoder.datamodule import (
        CrosscoderDataModule as CrosscoderDataModule,
    )
    from difflib_models.crosscoder.examples import (
        max_activating_examples as max_activating_examples,
    )
    from difflib_models.crosscoder.interop import (
        export_dictionary_learning as export_dictionary_learning,
    )
    from difflib_models.crosscoder.interop import (
        import_dictionary_learning as import_dictionary_learning,
    )
    from difflib_models.crosscoder.latent_scaling import (
        latent_scaling as latent_scaling,
    )
    from difflib_models.crosscoder.lightning_module import (
        CrosscoderLightningModule as CrosscoderLightningModule,
    )
    from difflib_models.crosscoder.lightning_module import (
        train_crosscoder as train_crosscoder,
    )
    from difflib_models.crosscoder.model import (
        Crosscoder as Crosscoder,
    )
    from difflib_models.crosscoder.report import (
        report_section as report_section,
    )
    from difflib_models.crosscoder.sources import (
        PairedActivationSource as PairedActivationSource,
    )
    from difflib_models.crosscoder.sources import (
        StoreSource as StoreSource,
    )
    from difflib_models.crosscoder.sources import (
        TensorSource as TensorSource,
    )
    from difflib_models.crosscoder.sources import (
        estimate_norm_scales as estimate_norm_scales,
    )
    from difflib_models.crosscoder.splice import (
        splice_metrics as splice_metrics,
    )
    from difflib_models.crosscoder.synthetic import (
        SyntheticPairs as SyntheticPairs,
    )
    from difflib_models.crosscoder.synthetic import (
        make_synthetic_pairs as make_synthetic_pairs,
    )

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

__all__ = [
    "CrosscoderConfig",
    "Crosscoder",
    "PairedActivationSource",
    "TensorSource",
    "StoreSource",
    "estimate_norm_scales",
    "CrosscoderDataModule",
    "CrosscoderLightningModule",
    "train_crosscoder",
    "analyze_crosscoder",
    "evaluate",
    "ClassThresholds",
    "relative_decoder_norm",
    "decoder_cosine",
    "classify_latents",
    "latent_scaling",
    "splice_metrics",
    "max_activating_examples",
    "report_section",
    "make_synthetic_pairs",
    "SyntheticPairs",
    "export_dictionary_learning",
    "import_dictionary_learning",
]

__getattr__, __dir__ = lazy_exports('difflib_models.crosscoder', _LAZY, globals(), __all__)
