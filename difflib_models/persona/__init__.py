"""Persona vectors: trait files, judge-free extraction, vector files, validation against null baselines,
and the shift math used by the training monitor and the release gate.

Modules: ``traits`` (trait YAML schema + built-ins), ``importers`` (Anthropic evals, CAA, EM YAML),
``chat`` (chat-template and token-position helpers), ``extraction`` (``PersonaExtractor``), ``vectors``
(``PersonaVectorSet`` files), ``validation`` (AUROC, nulls, steering dose-response, layer selection) and
``shift`` (probe activations and ``compute_shift``). Names are imported lazily.
"""

from __future__ import annotations

from difflib_models._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "Trait": "difflib_models.persona.traits",
    "load_trait": "difflib_models.persona.traits",
    "builtin_traits": "difflib_models.persona.traits",
    "PersonaExtractor": "difflib_models.persona.extraction",
    "PersonaVectorSet": "difflib_models.persona.vectors",
    "validate_vectors": "difflib_models.persona.validation",
    "extract_and_validate": "difflib_models.persona.validation",
    "ValidationResult": "difflib_models.persona.validation",
    "cross_trait_cosines": "difflib_models.persona.validation",
    "import_anthropic_jsonl": "difflib_models.persona.importers",
    "import_caa_json": "difflib_models.persona.importers",
    "import_em_yaml": "difflib_models.persona.importers",
    "ShiftResult": "difflib_models.persona.shift",
    "compute_shift": "difflib_models.persona.shift",
    "probe_activations": "difflib_models.persona.shift",
    "covariance_null_directions": "difflib_models.persona.shift",
}

__getattr__, __dir__, __all__ = lazy_exports('difflib_models.persona', _LAZY, globals())
