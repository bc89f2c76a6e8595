"""Crash-safe activation stores: safetensors shards + a JSON manifest (see ``manifest.py`` for the format)."""

from difflib_models.models.compat import tokenizer_name, vocab_hash
from difflib_models.store.batch import CaptureBatch
from difflib_models.store.manifest import FORMAT_VERSION, Manifest, ShardInfo
from difflib_models.store.reader import ActivationStore
from difflib_models.store.writer import ActivationStoreWriter

__all__ = [
    "CaptureBatch",
    "FORMAT_VERSION",
    "ActivationStore",
    "ActivationStoreWriter",
    "Manifest",
    "ShardInfo",
    "tokenizer_name",
    "vocab_hash",
]
