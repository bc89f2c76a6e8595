"""Trait files and their texts: the trait YAML schema (``schema``), importers for public trait data (``importers``:
Anthropic evals, CAA, EM YAML), loading by built-in id or file (``loading``) and the chat-template encoding of a
trait's prompts (``chat``)."""

from __future__ import annotations

from difflib_models.persona.traits.chat import (
    EncodedPair,
    encode_prompt,
    encode_prompt_response,
    has_chat_template,
    render_prompt,
)
from difflib_models.persona.traits.importers import (
    ProbeQuestion,
    ProbeSet,
    import_anthropic_jsonl,
    import_caa_json,
    import_em_yaml,
    import_trait_file,
    read_anthropic_jsonl,
    read_caa_json,
    trait_from_items,
)
from difflib_models.persona.traits.loading import builtin_traits, load_trait
from difflib_models.persona.traits.schema import (
    SCHEMA_VERSION,
    SPLITS,
    ABItem,
    Instruction,
    PairedResponse,
    Trait,
    deterministic_split,
)

__all__ = [
    "ABItem",
    "EncodedPair",
    "Instruction",
    "PairedResponse",
    "ProbeQuestion",
    "ProbeSet",
    "SCHEMA_VERSION",
    "SPLITS",
    "Trait",
    "builtin_traits",
    "deterministic_split",
    "encode_prompt",
    "encode_prompt_response",
    "has_chat_template",
    "import_anthropic_jsonl",
    "import_caa_json",
    "import_em_yaml",
    "import_trait_file",
    "load_trait",
    "read_anthropic_jsonl",
    "read_caa_json",
    "render_prompt",
    "trait_from_items",
]
