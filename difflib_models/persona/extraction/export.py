"""Persona vectors as plain per-layer tensors for the steering libraries.

Every format keys a direction by OUR layer index i = decoder block i (0-indexed), whose output (the residual
stream after block i, HF ``hidden_states[i + 1]``) is where it was read and where it is added. The two
libraries use the same index for the same place, so no shift is applied:

- ``repeng``: a GGUF file as ``ControlVector.export_gguf`` writes it (architecture ``controlvector``, string
  ``controlvector.model_hint``, uint32 ``controlvector.layer_count``, one float32 tensor ``direction.{i}`` per
  layer); ``ControlVector.import_gguf(path)`` reads it and ``ControlModel`` adds ``direction.{i}`` to the output
  of ``model.layers[i]``. Unit vectors by default (repeng's own directions are unit-norm, so its ``coeff``
  values carry over).
- ``steering-vectors``: ``<out>.safetensors`` with ``layer_activations.{i}`` tensors and a JSON sidecar
  (``layer_type: "decoder_block"``); ``SteeringVector(layer_activations, "decoder_block")`` patches the output
  of decoder block i. Raw mean-difference vectors by default (what its ``train_steering_vector`` returns).
- ``safetensors``: ``{"{i}": tensor}`` plus the metadata strings ``layer_convention``, ``trait``, ``model``.

``unit=None`` picks the format's default above; ``True`` / ``False`` forces unit / raw vectors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.io import atomic_write, atomic_write_json
from difflib_models.persona.extraction.vectors import PersonaVectorSet

log = logging.getLogger(__name__)

FORMATS = ("repeng", "steering-vectors", "safetensors")
_UNIT_DEFAULT = {"repeng": True, "steering-vectors": False, "safetensors": False}
_SUFFIX = {"repeng": ".gguf", "steering-vectors": ".safetensors", "safetensors": ".safetensors"}


def _select(vs: PersonaVectorSet, layers: list[int] | None, unit: bool) -> dict[int, torch.Tensor]:
    chosen = vs.layers if layers is None else sorted(set(layers))
    missing = [i for i in chosen if i not in vs.vectors]
    if missing:
        raise ConfigError(bad_value("layers", missing, vs.layers, "export only layers the vector file holds"))
    if not chosen:
        raise ConfigError(bad_value("layers", [], vs.layers, "name at least one layer"))
    return {i: (vs.unit(i) if unit else vs.vector(i)).to(torch.float32).contiguous() for i in chosen}


def model_hint(vs: PersonaVectorSet) -> str:
    """repeng's ``model_hint`` (HF ``config.model_type`` when recorded, else the model's name)."""
    return str(vs.model.extra.get("model_type") or vs.model.name or "unknown")


def export_path(out: str | Path, fmt: str) -> Path:
    """``out`` with the format's suffix (``.gguf`` for repeng, ``.safetensors`` otherwise)."""
    out = Path(out)
    return out if out.suffix == _SUFFIX[fmt] else out.with_suffix(_SUFFIX[fmt])


def export_vectors(vs: PersonaVectorSet, out: str | Path, *, fmt: str, layers: list[int] | None = None,
                   unit: bool | None = None, hint: str | None = None) -> list[Path]:
    """Write ``vs`` in format ``fmt`` (one of :data:`FORMATS`); returns the files written."""
    if fmt not in FORMATS:
        raise ConfigError(bad_value("format", fmt, FORMATS))
    unit = _UNIT_DEFAULT[fmt] if unit is None else bool(unit)
    vectors = _select(vs, layers, unit)
    path = export_path(out, fmt)
    common: dict[str, Any] = {"trait": vs.trait_id, "polarity": vs.polarity, "model": vs.model.name or None,
                              "weight_hash": vs.weight_hash, "layer_convention": vs.layer_convention,
                              "unit": unit, "layers": sorted(vectors)}
    if fmt == "repeng":
        atomic_write(path, lambda p: _write_gguf(p, vectors, hint or model_hint(vs)))
        written = [path]
    elif fmt == "steering-vectors":
        from safetensors.torch import save_file

        tensors = {f"layer_activations.{i}": v for i, v in vectors.items()}
        atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"layer_type": "decoder_block"}))
        sidecar = path.with_suffix(".json")
        atomic_write_json(sidecar, {"format": "steering-vectors", "layer_type": "decoder_block", **common})
        written = [path, sidecar]
    else:
        from safetensors.torch import save_file

        tensors = {str(i): v for i, v in vectors.items()}
        meta = {k: str(v) for k, v in common.items() if k in ("trait", "model", "layer_convention", "unit")}
        atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))
        written = [path]
    log.info("exported %s persona vectors (%d layers) to %s", fmt, len(vectors), path)
    return written


def _write_gguf(path: Path, vectors: dict[int, torch.Tensor], hint: str) -> None:
    import gguf

    arch = "controlvector"
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string(f"{arch}.model_hint", hint)
    writer.add_uint32(f"{arch}.layer_count", len(vectors))
    for i, v in vectors.items():
        writer.add_tensor(f"direction.{i}", v.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
