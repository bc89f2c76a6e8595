"""Cache of the persona vectors the gate extracts, per base-model identity, in the user cache.

The gate extracts a trait's vector on the BASE model when no ``--vectors`` file is given. The next gate on the same
base reuses it: the entry ``<cache_dir()>/gate-vectors/<key>/<trait id>.safetensors`` (+ ``.json`` sidecar, the
ordinary vector-file format) is keyed by a sha256 over

- the base model's weight hash (a different base, or one fine-tuned since, misses),
- the trait file's content hash,
- the extraction settings (mode, layer, instruction / question / probe-prompt caps, batch size, validation level),
- the library version and :data:`CACHE_VERSION`.

Entries are written atomically (:meth:`PersonaVectorSet.save` goes through :mod:`difflib_models.io`) and read only
through :meth:`PersonaVectorSet.load` (JSON sidecar + safetensors, checksum and model identity checked). An entry
that fails any check (corrupt, truncated, another model, another key) is ignored with a warning and re-extracted:
a cache entry is never trusted over a fresh extraction. ``$DIFFLIB_MODELS_CACHE`` moves the cache
(:func:`difflib_models.paths.cache_dir`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from difflib_models._version import __version__
from difflib_models.paths import cache_dir
from difflib_models.persona.extraction.vectors import PersonaVectorSet, identity_dict, vector_paths

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""2: vector files carry the typed, versioned validation summary (entries of version 1 are re-extracted)."""
SUBDIR = "gate-vectors"


def cache_root() -> Path:
    """``<user cache>/gate-vectors`` (honours ``$DIFFLIB_MODELS_CACHE``)."""
    return cache_dir() / SUBDIR


def cache_key(base: Any, trait_hash: str | None, settings: Mapping[str, Any]) -> str:
    """sha256 (hex, 32 chars) of the base weight hash, the trait hash, the extraction settings and the library
    version. ``base`` is a LoadedModel, ModelIdentity, identity dict or weight-hash string."""
    weight_hash = identity_dict(base).get("weight_hash")
    payload = {"cache_version": CACHE_VERSION, "library_version": __version__, "weight_hash": weight_hash,
               "trait_hash": trait_hash, "settings": dict(settings)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]


def entry_path(key: str, trait_id: str) -> Path:
    return cache_root() / key / f"{trait_id}.safetensors"


def load_cached(key: str, trait_id: str, base: Any) -> PersonaVectorSet | None:
    """The cached vector set of ``trait_id`` under ``key``, or None (a miss, or an entry that fails a check: logged
    as a warning and ignored, so the caller re-extracts)."""
    path = entry_path(key, trait_id)
    tensors, sidecar = vector_paths(path)
    if not tensors.exists() and not sidecar.exists():
        log.info("persona vector cache miss for %s (key %s)", trait_id, key)
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not meta.get("sha256"):
            raise ValueError("the sidecar records no checksum of the tensor file")
        vs = PersonaVectorSet.load(path, expect_model=base)
        if vs.cache_key != key or vs.trait_id != trait_id:
            raise ValueError("the entry was written for another key or trait")
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with an entry, it is re-extracted, never trusted
        log.warning("ignoring the unusable persona vector cache entry %s (%s: %s); re-extracting",
                    tensors, type(exc).__name__, exc)
        return None
    log.info("persona vectors for %s from the cache %s", trait_id, tensors)
    return vs


def store(key: str, vs: PersonaVectorSet) -> Path | None:
    """Write ``vs`` as the entry of ``key`` (atomically); returns its tensor path. A cache that cannot be written
    (read-only home, full disk) costs the next run an extraction, nothing else: logged, None returned."""
    vs = dataclasses.replace(vs, cache_key=key)
    path = entry_path(key, vs.trait_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for p in vector_paths(path):  # an unusable entry found by load_cached is replaced, never merged
            p.unlink(missing_ok=True)
        return vs.save(path)
    except OSError as exc:
        log.warning("could not write the persona vector cache entry %s: %s", path, exc)
        return None
