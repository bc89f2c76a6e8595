"""Per-base cache of the gate's base-side measurements, in the user cache.

Every gate measures the BASE model the same way: its answers to each response check's questions (greedy, then
teacher-forced: the :class:`~difflib_models.persona.shift.response.ResponseProbe`), the trait scale those answers are
placed on (:class:`~difflib_models.persona.shift.headroom.TraitScale`) and its position-balanced A/B scores of the
behaviour items (:class:`~difflib_models.gate.ab_scoring.ItemScores`). The next gate on the same base
reads them from ``<cache_dir()>/gate-base/<key>.json`` (+ ``<key>.safetensors`` for activations) instead of
measuring again, so a warm gate measures only the candidate (and the control). The key is a sha256 over

- the identity of the model measured (weight hash; a different base, or one fine-tuned since, misses; the gate
  re-hashes a LoadedModel edited in memory after loading first, :meth:`~difflib_models.models.loading.LoadedModel.verify_identity`),
- what was measured (``kind``) and everything it depends on (questions or items, layers, answer length, batch size,
  device type and dtype),
- the library version, :data:`CACHE_VERSION` and a hash of the source of the modules that do the measurement
  (:data:`CODE`), so a changed scorer never reads an older scorer's numbers.

Entries are written atomically (:mod:`difflib_models.io`; the tensor file first, the JSON that names its sha256
last, so a crash leaves no entry that looks complete) and read only through safetensors and JSON. An entry that
fails any check (unreadable, another key, a checksum or shape mismatch) is ignored with a warning and measured
again: a cache entry is never trusted over a fresh measurement. ``$DIFFLIB_MODELS_CACHE`` moves the cache; the
gate's ``--no-cache`` bypasses it (as it does the vector cache, :mod:`difflib_models.gate.vector_cache`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from difflib_models._version import __version__
from difflib_models.io import atomic_write, atomic_write_json, sha256_file, sha256_tensor
from difflib_models.paths import cache_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 1
SUBDIR = "gate-base"

CODE: dict[str, tuple[str, ...]] = {
    "ab_scores": ("difflib_models.gate.ab_scoring", "difflib_models.persona.traits.chat",
                  "difflib_models.persona.validation.dose_response"),
    "response_probe": ("difflib_models.persona.shift.response", "difflib_models.persona.shift.core",
                       "difflib_models.persona.traits.chat", "difflib_models.hooks"),
    "trait_scale": ("difflib_models.persona.shift.headroom", "difflib_models.persona.shift.response",
                    "difflib_models.persona.shift.core", "difflib_models.persona.traits.chat", "difflib_models.hooks"),
}
"""Per measurement kind, the modules (or packages) whose source is hashed into its keys."""


@functools.cache
def code_hash(kind: str) -> str:
    """sha256 of the source files of :data:`CODE`'s modules for ``kind`` (every ``.py`` of a package)."""
    h = hashlib.sha256()
    for name in CODE[kind]:
        module = importlib.import_module(name)
        root = Path(module.__file__ or "")
        files = sorted(root.parent.rglob("*.py")) if root.name == "__init__.py" else [root]
        for f in files:
            h.update(f.name.encode("utf-8"))
            h.update(f.read_bytes())
    return h.hexdigest()


def cache_root() -> Path:
    """``<user cache>/gate-base`` (honours ``$DIFFLIB_MODELS_CACHE``)."""
    return cache_dir() / SUBDIR


def measured_identity(loaded: Any, side: str) -> str | None:
    """Weight hash of the model a ``(loaded, side)`` pair runs: the base view of a peft model (``side="base"``)
    is its base model; otherwise the model itself with its adapter. None (nothing is cached) when the model has no
    weight hash or carries forward hooks (a steering hook changes what it computes, not its weight hash)."""
    if any(m._forward_hooks or m._forward_pre_hooks for m in loaded.model.modules()):
        log.info("not using the gate base cache: the base model carries forward hooks")
        return None
    ident = loaded.identity
    if side == "base" and getattr(loaded, "is_peft", False) and ident.base is not None:
        return ident.base.weight_hash or None
    if ident.weight_hash is None:
        return None
    return f"{ident.weight_hash}+{ident.adapter_hash}" if ident.adapter_hash else ident.weight_hash


def cache_key(identity: str, kind: str, settings: Mapping[str, Any]) -> str:
    """sha256 (hex, 32 chars) of the measured model's identity, the measurement kind and its settings, and the
    library version."""
    payload = {"cache_version": CACHE_VERSION, "library_version": __version__, "code": code_hash(kind),
               "identity": identity, "kind": kind, "settings": dict(settings)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]


def model_settings(loaded: Any) -> dict[str, str]:
    """The device type and dtype the measurement ran in (numbers differ across them) and a fingerprint of the
    tokenizer (class, vocabulary size, chat template: the weight hash does not cover them); part of every key."""
    param = next(loaded.model.parameters())
    tok = loaded.tokenizer
    fingerprint = json.dumps([type(tok).__name__, len(tok), getattr(tok, "chat_template", None)], default=str)
    return {"device": param.device.type, "dtype": str(param.dtype),
            "tokenizer": hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:16]}


def key_for(loaded: Any, side: str, kind: str, settings: Mapping[str, Any]) -> str | None:
    """The cache key of measuring ``kind`` with ``settings`` on the model a ``(loaded, side)`` pair runs (its
    :func:`measured_identity`, with :func:`model_settings` added to ``settings``); None when it must not be cached."""
    identity = measured_identity(loaded, side)
    return None if identity is None else cache_key(identity, kind, {**settings, **model_settings(loaded)})


def _paths(key: str) -> tuple[Path, Path]:
    root = cache_root()
    return root / f"{key}.json", root / f"{key}.safetensors"


def _encode_floats(xs: list[float]) -> list[float | None]:
    return [float(x) if math.isfinite(x) else None for x in xs]


def _decode_floats(xs: Any, n: int, name: str) -> list[float]:
    if not isinstance(xs, list) or len(xs) != n:
        raise ValueError(f"{name}: expected a list of {n} numbers")
    out = []
    for x in xs:
        if x is None:
            out.append(float("nan"))
        elif isinstance(x, int | float) and not isinstance(x, bool):
            out.append(float(x))
        else:
            raise ValueError(f"{name}: {x!r} is not a number")
    return out


def _read(key: str, kind: str) -> dict[str, Any] | None:
    meta_path, _ = _paths(key)
    if not meta_path.exists():
        log.info("gate base cache miss for %s (key %s)", kind, key)
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("key") != key or meta.get("kind") != kind:
        raise ValueError("the entry was written for another key or kind")
    return meta


def _warn(key: str, kind: str, exc: Exception) -> None:
    log.warning("ignoring the unusable gate base cache entry %s (%s; %s: %s); measuring again",
                _paths(key)[0], kind, type(exc).__name__, exc)


def load_item_scores(key: str, n_items: int) -> Any:
    """The cached :class:`ItemScores` of ``n_items`` items under ``key``, or None (a miss or an unusable entry)."""
    from difflib_models.gate.ab_scoring import ItemScores

    try:
        meta = _read(key, "ab_scores")
        if meta is None:
            return None
        return ItemScores(first=_decode_floats(meta.get("first"), n_items, "first"),
                          second=_decode_floats(meta.get("second"), n_items, "second"),
                          p_matching=_decode_floats(meta.get("p_matching"), n_items, "p_matching"),
                          open=_decode_floats(meta.get("open"), n_items, "open"))
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with an entry, it is measured again, never trusted
        _warn(key, "ab_scores", exc)
        return None


def store_item_scores(key: str, scores: Any) -> None:
    """Write the entry of ``key`` (atomically). A cache that cannot be written costs the next gate a measurement,
    nothing else: logged."""
    meta_path, _ = _paths(key)
    try:
        atomic_write_json(meta_path, {"key": key, "kind": "ab_scores", "first": _encode_floats(scores.first),
                                      "second": _encode_floats(scores.second),
                                      "p_matching": _encode_floats(scores.p_matching),
                                      "open": _encode_floats(scores.open)})
    except OSError as exc:
        log.warning("could not write the gate base cache entry %s: %s", meta_path, exc)


def load_probe(key: str, prompts: list[list[int]]) -> Any:
    """The cached :class:`ResponseProbe` under ``key``, or None. ``prompts`` are the freshly tokenised questions:
    an entry whose prompts differ (another tokenizer or chat template) is not used."""
    from safetensors.torch import load_file

    from difflib_models.persona.shift.response import ResponseProbe

    try:
        meta = _read(key, "response_probe")
        if meta is None:
            return None
        _, tensor_path = _paths(key)
        if sha256_file(tensor_path) != meta.get("sha256"):
            raise ValueError("the tensor file does not match the sha256 its JSON records")
        if meta.get("prompts") != [list(p) for p in prompts]:
            raise ValueError("the entry's prompts differ from the questions tokenised now")
        answers = meta.get("answers")
        if (not isinstance(answers, list) or len(answers) != len(prompts)
                or not all(isinstance(a, list) and a and all(isinstance(t, int) for t in a) for a in answers)):
            raise ValueError("answers: expected one non-empty list of token ids per prompt")
        tensors = load_file(str(tensor_path))
        acts: dict[int, torch.Tensor] = {}
        for name, t in tensors.items():
            if not name.startswith("layer.") or t.ndim != 2 or t.shape[0] != len(prompts) or t.dtype != torch.float32:
                raise ValueError(f"tensor {name}: expected layer.<i> of shape [{len(prompts)}, d], float32")
            if not torch.isfinite(t).all():
                raise ValueError(f"tensor {name} holds non-finite values")
            acts[int(name.split(".", 1)[1])] = t
        return ResponseProbe(prompts=tuple(tuple(p) for p in prompts), answers=tuple(tuple(a) for a in answers),
                             acts=acts, pad_token_id=int(meta["pad_token_id"]),
                             max_new_tokens=int(meta["max_new_tokens"]), batch_size=int(meta["batch_size"]))
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with an entry, it is measured again, never trusted
        _warn(key, "response_probe", exc)
        return None


def store_probe(key: str, probe: Any) -> None:
    """Write the probe's activations (safetensors) and then its JSON (answers, settings, the tensor file's sha256),
    each atomically. Unwritable cache: logged, nothing else."""
    from safetensors.torch import save_file

    meta_path, tensor_path = _paths(key)
    try:
        tensors = {f"layer.{layer}": t.detach().to("cpu", torch.float32).contiguous() for layer, t in probe.acts.items()}
        atomic_write(tensor_path, lambda p: save_file(tensors, str(p)))
        atomic_write_json(meta_path, {"key": key, "kind": "response_probe", "sha256": sha256_file(tensor_path),
                                      "prompts": [list(p) for p in probe.prompts],
                                      "answers": [list(a) for a in probe.answers],
                                      "pad_token_id": int(probe.pad_token_id),
                                      "max_new_tokens": int(probe.max_new_tokens),
                                      "batch_size": int(probe.batch_size)}, indent=0)
    except OSError as exc:
        log.warning("could not write the gate base cache entry %s: %s", meta_path, exc)


def vector_digest(vector: torch.Tensor) -> str:
    """sha256 of a direction's float32 bytes (a key setting of measurements read along it)."""
    return sha256_tensor(vector)


def load_scale(key: str, *, trait: str, layer: int) -> Any:
    """The cached :class:`TraitScale` under ``key``, or None (a miss or an unusable entry)."""
    from difflib_models.persona.shift.headroom import TraitScale

    try:
        meta = _read(key, "trait_scale")
        if meta is None:
            return None
        t_mean, n_mean = _decode_floats([meta.get("trait_mean"), meta.get("neutral_mean")], 2, "means")
        n_pairs = meta.get("n_pairs")
        if not (isinstance(n_pairs, int) and n_pairs >= 2) or not (math.isfinite(t_mean) and math.isfinite(n_mean)):
            raise ValueError("expected finite means over >= 2 pairs")
        return TraitScale(trait=trait, layer=int(layer), trait_mean=t_mean, neutral_mean=n_mean, n_pairs=n_pairs)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with an entry, it is measured again, never trusted
        _warn(key, "trait_scale", exc)
        return None


def store_scale(key: str, scale: Any) -> None:
    """Write the scale's two means (atomically). Unwritable cache: logged, nothing else."""
    meta_path, _ = _paths(key)
    try:
        atomic_write_json(meta_path, {"key": key, "kind": "trait_scale", "trait_mean": float(scale.trait_mean),
                                      "neutral_mean": float(scale.neutral_mean), "n_pairs": int(scale.n_pairs)})
    except OSError as exc:
        log.warning("could not write the gate base cache entry %s: %s", meta_path, exc)
