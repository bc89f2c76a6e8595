"""Persona vectors: trait files, judge-free extraction, vector files, validation against null baselines,
the shift math used by the training monitor and the release gate, data filtering and steering.

One sub-package ("room") per concept, each exporting its public names:

- ``traits``: trait YAML schema and built-ins, importers (Anthropic evals, CAA, EM YAML), chat-template encoding;
- ``shift``: residual reads at the probe positions, null directions and ``compute_shift``;
- ``extraction``: ``PersonaExtractor``, ``PersonaVectorSet`` files and export to steering libraries;
- ``steering``: ``steer`` / ``SteeringHook`` (add a vector to the residual stream);
- ``validation``: held-out AUROC, null baselines, layer selection and the steering dose-response;
- ``filtering``: training-data filtering by projection difference and its own validation.

A room imports only from rooms listed above it. The names below load lazily (torch is imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difflib_models._lazy import lazy_exports

if TYPE_CHECKING:
    from difflib_models.persona.extraction import (
        PersonaExtractor as PersonaExtractor,
    )
    from difflib_models.persona.extraction import (
        PersonaVectorSet as PersonaVectorSet,
    )
    from difflib_models.persona.shift import (
        ShiftResult as ShiftResult,
    )
    from difflib_models.persona.shift import (
        compute_shift as compute_shift,
    )
    from difflib_models.persona.shift import (
        covariance_null_directions as covariance_null_directions,
    )
    from difflib_models.persona.shift import (
        probe_activations as probe_activations,
    )
    from difflib_models.persona.traits import (
        Trait as Trait,
    )
    from difflib_models.persona.traits import (
        builtin_traits as builtin_traits,
    )
    from difflib_models.persona.traits import (
        import_anthropic_jsonl as import_anthropic_jsonl,
    )
    from difflib_models.persona.traits import (
        import_caa_json as import_caa_json,
    )
    from difflib_models.persona.traits import (
        import_em_yaml as import_em_yaml,
    )
    from difflib_models.persona.traits import (
        load_trait as load_trait,
    )
    from difflib_models.persona.validation import (
        ValidationResult as ValidationResult,
    )
    from difflib_models.persona.validation import (
        cross_trait_cosines as cross_trait_cosines,
    )
    from difflib_models.persona.validation import (
        extract_and_validate as extract_and_validate,
    )
    from difflib_models.persona.validation import (
        validate_vectors as validate_vectors,
    )

_LAZY: dict[str, str] = {
    "Trait": "difflib_models.persona.traits",
    "load_trait": "difflib_models.persona.traits",
    "builtin_traits": "difflib_models.persona.traits",
    "PersonaExtractor": "difflib_models.persona.extraction",
    "PersonaVectorSet": "difflib_models.persona.extraction",
    "validate_vectors": "difflib_models.persona.validation",
    "extract_and_validate": "difflib_models.persona.validation",
    "ValidationResult": "difflib_models.persona.validation",
    "cross_trait_cosines": "difflib_models.persona.validation",
    "import_anthropic_jsonl": "difflib_models.persona.traits",
    "import_caa_json": "difflib_models.persona.traits",
    "import_em_yaml": "difflib_models.persona.traits",
    "ShiftResult": "difflib_models.persona.shift",
    "compute_shift": "difflib_models.persona.shift",
    "probe_activations": "difflib_models.persona.shift",
    "covariance_null_directions": "difflib_models.persona.shift",
}

__all__ = [
    "Trait",
    "load_trait",
    "builtin_traits",
    "PersonaExtractor",
    "PersonaVectorSet",
    "validate_vectors",
    "extract_and_validate",
    "ValidationResult",
    "cross_trait_cosines",
    "import_anthropic_jsonl",
    "import_caa_json",
    "import_em_yaml",
    "ShiftResult",
    "compute_shift",
    "probe_activations",
    "covariance_null_directions",
]

__getattr__, __dir__ = lazy_exports('difflib_models.persona', _LAZY, globals(), __all__)
