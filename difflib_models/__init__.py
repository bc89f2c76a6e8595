"""difflib_models: see what fine-tuning changed inside a model, and stop a bad model before release.

Importing this package is cheap: heavy dependencies (torch, transformers, Lightning, MLflow) load lazily
when a public name that needs them is first used.
"""

from __future__ import annotations

from difflib_models._lazy import lazy_exports
from difflib_models._version import __version__ as __version__
from difflib_models.errors import ConfigError as ConfigError
from difflib_models.errors import DifflibError as DifflibError

# public name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    "load_model": "difflib_models.models.loading",
    "LoadedModel": "difflib_models.models.loading",
    "ModelIdentity": "difflib_models.models.identity",
    "resolve_blocks": "difflib_models.models.hookpoints",
    "HookPointMap": "difflib_models.models.hookpoints",
    "ActivationCapture": "difflib_models.capture.capture",
    "capture_batch": "difflib_models.capture.capture",
    "ActivationStore": "difflib_models.store.reader",
    "ActivationStoreWriter": "difflib_models.store.writer",
    "snapshot": "difflib_models.capture.pipeline",
    "CrosscoderConfig": "difflib_models.crosscoder.config",
    "Crosscoder": "difflib_models.crosscoder.model",
    "train_crosscoder": "difflib_models.crosscoder.lightning_module",
    "ModelPair": "difflib_models.diffing.pair",
    "harvest_paired": "difflib_models.diffing.harvest",
    "activation_difference_lens": "difflib_models.diffing.adl",
    "weight_deltas": "difflib_models.diffing.weights",
    "lora_finetune": "difflib_models.diffing.finetune",
    "LoraFinetuneConfig": "difflib_models.diffing.finetune",
    "DiffConfig": "difflib_models.diffing.pipeline",
    "run_diff": "difflib_models.diffing.pipeline",
    "run_gate": "difflib_models.gate.runner",
    "GateConfig": "difflib_models.gate.runner",
    "load_policy": "difflib_models.gate.policy",
    "new_report": "difflib_models.report.builder",
    "write_report": "difflib_models.report.builder",
    "load_report": "difflib_models.report.builder",
    "validate_report": "difflib_models.report.schema",
    "load_trait": "difflib_models.persona.traits",
    "PersonaExtractor": "difflib_models.persona.extraction",
    "PersonaVectorSet": "difflib_models.persona.vectors",
    "validate_vectors": "difflib_models.persona.validation",
    "compute_shift": "difflib_models.persona.shift",
    "steer": "difflib_models.persona.steering",
    "SteeringHook": "difflib_models.persona.steering",
    "FilterConfig": "difflib_models.persona.filtering",
    "filter_samples": "difflib_models.persona.filtering",
    "ActivationSnapshot": "difflib_models.callbacks",
    "PersonaMonitor": "difflib_models.callbacks",
    "DataFilterCallback": "difflib_models.callbacks",
}

__getattr__, __dir__, __all__ = lazy_exports('difflib_models', _LAZY, globals(), ("__version__", "ConfigError", "DifflibError"))
