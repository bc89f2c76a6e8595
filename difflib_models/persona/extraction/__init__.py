"""Persona-vector extraction and vector files: ``PersonaExtractor`` (``extractor``), the per-model vector file
``PersonaVectorSet`` (``vectors``) and export to the steering libraries' formats (``export``)."""

from __future__ import annotations

from difflib_models.persona.extraction.export import FORMATS, export_path, export_vectors, model_hint
from difflib_models.persona.extraction.extractor import (
    AGGREGATORS,
    MODES,
    Judge,
    OpenAICompatibleJudge,
    PersonaExtractor,
    aggregate,
)
from difflib_models.persona.extraction.vectors import (
    FORMAT_VERSION,
    FilterValidation,
    PersonaVectorSet,
    check_identity,
    check_output_path,
    identity_dict,
    vector_paths,
)

__all__ = [
    "AGGREGATORS",
    "FORMATS",
    "FORMAT_VERSION",
    "FilterValidation",
    "Judge",
    "MODES",
    "OpenAICompatibleJudge",
    "PersonaExtractor",
    "PersonaVectorSet",
    "aggregate",
    "check_identity",
    "check_output_path",
    "export_path",
    "export_vectors",
    "identity_dict",
    "model_hint",
    "vector_paths",
]
