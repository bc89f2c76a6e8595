"""difflib_models: see what fine-tuning changed inside a model, and stop a bad model before release.

Importing this package is cheap: heavy dependencies (torch, transformers, Lightning, MLflow) load lazily
when a public name that needs them is first used. The names are listed in ``__all__`` and imported under
``if TYPE_CHECKING:`` so IDEs and type checkers see their real signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports
from difflib_models._version import __version__ as __version__
from difflib_models.errors import ConfigError as ConfigError
from difflib_models.errors import DifflibError as DifflibError

if TYPE_CHECKING:
    from difflib_models.callbacks.lightning import (
        ActivationSnapshot as ActivationSnapshot,
    )
    from difflib_models.callbacks.lightning import (
        DataFilterCallback as DataFilterCallback,
    )
    from difflib_models.callbacks.lightning import (
        PersonaMonitor as PersonaMonitor,
    )
    from difflib_models.capture.capture import (
        ActivationCapture as ActivationCapture,
    )
    from difflib_models.capture.capture import (
        capture_batch as capture_batch,
    )
    from difflib_models.capture.pipeline import (
        snapshot as snapshot,
    )
    from difflib_models.crosscoder.config import (
        CrosscoderConfig as CrosscoderConfig,
    )
    from difflib_models.crosscoder.lightning_module import (
        train_crosscoder as train_crosscoder,
    )
    from difflib_models.crosscoder.model import (
        Crosscoder as Crosscoder,
    )
    from difflib_models.diffing.adl import (
        activation_difference_lens as activation_difference_lens,
    )
    from difflib_models.diffing.finetune import (
        LoraFinetuneConfig as LoraFinetuneConfig,
    )
    from difflib_models.diffing.finetune import (
        lora_finetune as lora_finetune,
    )
    from difflib_models.diffing.harvest import (
        harvest_paired as harvest_paired,
    )
    from difflib_models.diffing.pair import (
        ModelPair as ModelPair,
    )
    from difflib_models.diffing.pipeline import (
        DiffConfig as DiffConfig,
    )
    from difflib_models.diffing.pipeline import (
        run_diff as run_diff,
    )
    from difflib_models.diffing.weights import (
        weight_deltas as weight_deltas,
    )
    from difflib_models.gate.policy import (
        load_policy as load_policy,
    )
    from difflib_models.gate.runner import (
        GateConfig as GateConfig,
    )
    from difflib_models.gate.runner import (
        run_gate as run_gate,
    )
    from difflib_models.models.hookpoints import (
        HookPointMap as HookPointMap,
    )
    from difflib_models.models.hookpoints import (
        resolve_blocks as resolve_blocks,
    )
    from difflib_models.models.identity import (
        ModelIdentity as ModelIdentity,
    )
    from difflib_models.models.loading import (
        LoadedModel as LoadedModel,
    )
    from difflib_models.models.loading import (
        from_pretrained_objects as from_pretrained_objects,
    )
    from difflib_models.models.loading import (
        load_model as load_model,
    )
    from difflib_models.persona.extraction import (
        PersonaExtractor as PersonaExtractor,
    )
    from difflib_models.persona.extraction import (
        PersonaVectorSet as PersonaVectorSet,
    )
    from difflib_models.persona.filtering import (
        FilterConfig as FilterConfig,
    )
    from difflib_models.persona.filtering import (
        filter_samples as filter_samples,
    )
    from difflib_models.persona.shift import (
        compute_shift as compute_shift,
    )
    from difflib_models.persona.steering import (
        SteeringHook as SteeringHook,
    )
    from difflib_models.persona.steering import (
        steer as steer,
    )
    from difflib_models.persona.traits import (
        load_trait as load_trait,
    )
    from difflib_models.persona.validation import (
        validate_vectors as validate_vectors,
    )
    from difflib_models.report.builder import (
        load_report as load_report,
    )
    from difflib_models.report.builder import (
        new_report as new_report,
    )
    from difflib_models.report.builder import (
        write_report as write_report,
    )
    from difflib_models.report.schema import (
        validate_report as validate_report,
    )
    from difflib_models.store.reader import (
        ActivationStore as ActivationStore,
    )
    from difflib_models.store.writer import (
        ActivationStoreWriter as ActivationStoreWriter,
    )

# public name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    "load_model": "difflib_models.models.loading",
    "LoadedModel": "difflib_models.models.loading",
    "from_pretrained_objects": "difflib_models.models.loading",
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
    "PersonaVectorSet": "difflib_models.persona.extraction",
    "validate_vectors": "difflib_models.persona.validation",
    "compute_shift": "difflib_models.persona.shift",
    "steer": "difflib_models.persona.steering",
    "SteeringHook": "difflib_models.persona.steering",
    "FilterConfig": "difflib_models.persona.filtering",
    "filter_samples": "difflib_models.persona.filtering",
    "ActivationSnapshot": "difflib_models.callbacks.lightning",
    "PersonaMonitor": "difflib_models.callbacks.lightning",
    "DataFilterCallback": "difflib_models.callbacks.lightning",
}

__all__ = [
    "__version__",
    "ConfigError",
    "DifflibError",
    "load_model",
    "LoadedModel",
    "from_pretrained_objects",
    "ModelIdentity",
    "resolve_blocks",
    "HookPointMap",
    "ActivationCapture",
    "capture_batch",
    "ActivationStore",
    "ActivationStoreWriter",
    "snapshot",
    "CrosscoderConfig",
    "Crosscoder",
    "train_crosscoder",
    "ModelPair",
    "harvest_paired",
    "activation_difference_lens",
    "weight_deltas",
    "lora_finetune",
    "LoraFinetuneConfig",
    "DiffConfig",
    "run_diff",
    "run_gate",
    "GateConfig",
    "load_policy",
    "new_report",
    "write_report",
    "load_report",
    "validate_report",
    "load_trait",
    "PersonaExtractor",
    "PersonaVectorSet",
    "validate_vectors",
    "compute_shift",
    "steer",
    "SteeringHook",
    "FilterConfig",
    "filter_samples",
    "ActivationSnapshot",
    "PersonaMonitor",
    "DataFilterCallback",
]

__getattr__, __dir__ = lazy_exports('difflib_models', _LAZY, globals(), __all__)
