"""Model diffing: paired harvesting, cheap baselines (ADL, drift, weight deltas), the `diff` pipeline and a small
LoRA fine-tune helper used by tests and demos.

Modules: ``sources`` (text sources), ``harvest`` (paired activation stores), ``adl`` (Activation Difference Lens),
``drift`` (per-layer drift and next-token KL), ``weights`` (weight-delta norms), ``finetune`` (LoRA helper),
``pipeline`` (harvest -> baselines -> crosscoder -> diff.json). Submodules import torch; this package does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports

if TYPE_CHECKING:
    from difflib_models.diffing.adl import (
        ADLResult as ADLResult,
    )
    from difflib_models.diffing.adl import (
        activation_difference_lens as activation_difference_lens,
    )
    from difflib_models.diffing.drift import (
        LayerDrift as LayerDrift,
    )
    from difflib_models.diffing.finetune import (
        FinetuneResult as FinetuneResult,
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
        WeightDelta as WeightDelta,
    )
    from difflib_models.diffing.weights import (
        weight_deltas as weight_deltas,
    )

_LAZY: dict[str, str] = {
    "ModelPair": "pair",
    "harvest_paired": "harvest",
    "activation_difference_lens": "adl",
    "ADLResult": "adl",
    "weight_deltas": "weights",
    "WeightDelta": "weights",
    "lora_finetune": "finetune",
    "LoraFinetuneConfig": "finetune",
    "FinetuneResult": "finetune",
    "DiffConfig": "pipeline",
    "run_diff": "pipeline",
    "LayerDrift": "drift",
}

__all__ = [
    "ModelPair",
    "harvest_paired",
    "activation_difference_lens",
    "ADLResult",
    "weight_deltas",
    "WeightDelta",
    "lora_finetune",
    "LoraFinetuneConfig",
    "FinetuneResult",
    "DiffConfig",
    "run_diff",
    "LayerDrift",
]

__getattr__, __dir__ = lazy_exports('difflib_models.diffing', _LAZY, globals(), __all__)
