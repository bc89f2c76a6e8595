"""Crash-safe activation stores: safetensors shards + a JSON manifest (see ``manifest.py`` for the format)."""

from difflib_models.store.manifest import FORMAT_VERSION, Manifest, ShardInfo, tokenizer_name, vocab_hash
from difflib_models.store.reader import ActivationStore
from difflib_models.store.writer import ActivationStoreWriter

__all__ = [
    "FORMAT_VERSION",
    "ActivationStore",
    "ActivationStoreWriter",
    "Manifest",
    "ShardInfo",
    "tokenizer_name",
    "vocab_hash",
]
