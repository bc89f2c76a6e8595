"""Persona vector files: per-layer trait directions for ONE model, as safetensors + a JSON sidecar.

A vector file is model-specific (a trait file is not). ``PersonaVectorSet.save("evil.safetensors")`` writes

- ``evil.safetensors``: one float32 tensor per layer, named ``layer.{i}`` (the raw, un-normalised direction:
  mean(pos) - mean(neg) for the default aggregator), plus ``readout.{i}`` slices when the filter validation chose a
  stacked readout over several blocks (:mod:`~difflib_models.persona.filtering.readout`), and
- ``evil.json``: format version, trait id + hash + polarity, model identity (with its weight hash), extraction
  mode and aggregator, ``layer_convention``, per-layer norms / gap / base_std, n_pos / n_neg, the selected layer
  and why it was chosen, the typed validation summary (:class:`~difflib_models.persona.contracts.ValidationSummary`,
  versioned by its own ``schema_version``; None when the file was not validated), the optional filter-validation
  record, and the sha256 of the safetensors file.

``PersonaVectorSet.load(path, expect_model=loaded)`` refuses (IdentityMismatchError) a file whose weight hash
differs from the model it is about to be used with: a direction means nothing in another model's residual space.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from difflib_models._version import __version__
from difflib_models.errors import ConfigError, IdentityMismatchError, bad_value
from difflib_models.files import load_json
from difflib_models.finite import finite_or_none
from difflib_models.io import atomic_write, atomic_write_json, sha256_file
from difflib_models.models.hookpoints import LAYER_CONVENTION
from difflib_models.models.identity import ModelIdentity
from difflib_models.persona.contracts import ValidationSummary

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""2: ``validation`` is a :class:`ValidationSummary` record with a ``schema_version`` (1: an untyped dict)."""
FILTER_VALIDATION_VERSION = 2
"""Version of the ``filter_validation`` record (an optional sidecar key: files without it stay readable). 2: a
stacked readout may be chosen (``readout_layers``, ``readout_auroc``); a version-1 record reads as before. Optional
keys within version 2 (absent in older records; an older reader ignores them): ``surface_auroc``,
``eval_word_stratified_auroc``."""

WORDING_MARGIN = 0.05
"""A filter vector whose evaluation AUROC is not at least this much above what the answers' first word and length
alone reach (``surface_auroc``) is flagged: the evaluation pairs cannot show that it reads more than the wording."""


@dataclass(frozen=True)
class FilterValidation:
    """How well this file's directions rank training rows (:mod:`~difflib_models.persona.filtering.validation`).

    Pairs of trait-matching vs non-matching responses to the SAME prompt, split (seeded) into a tuning and an
    evaluation part; ``filter_layer`` and ``method`` were chosen on the tuning part (``filter_auroc`` per layer),
    ``eval_auroc`` / ``eval_precision_at_k`` / ``eval_pair_win_rate`` are measured on the evaluation part only.
    When a STACKED readout won the tuning part (:mod:`~difflib_models.persona.filtering.readout`),
    ``readout_layers`` lists its blocks (their slices are the file's ``readout`` tensors) and ``filter_layer`` is
    the deepest of them; empty: the filter reads ``filter_layer`` alone.
    """

    filter_layer: int
    method: str
    filter_auroc: dict[int, float]
    """Tuning-split AUROC per layer (method ``method``)."""
    eval_auroc: float
    eval_precision_at_k: float
    eval_pair_win_rate: float
    n_tune: int
    n_eval: int
    seed: int
    source: str
    method_auroc: dict[str, float] = field(default_factory=dict)
    """Best tuning AUROC of every method tried (the method with the highest one was kept)."""
    readout_layers: tuple[int, ...] = ()
    """Blocks of the chosen stacked readout (empty: a single block, ``filter_layer``)."""
    readout_auroc: dict[str, float] = field(default_factory=dict)
    """Tuning AUROC (method ``method``) of every stacked readout tried, keyed ``"lo-hi"`` by its span."""
    surface_auroc: float | None = None
    """Evaluation AUROC of a classifier that sees only each answer's first word and length, fitted on the same
    pairs as the readouts (:mod:`~difflib_models.persona.filtering.surface`); None: not measured."""
    eval_word_stratified_auroc: float | None = None
    """The chosen readout's evaluation AUROC counted only between answers that start with the same word (None: not
    measured, or no word starts >= 5 answers of each kind)."""
    version: int = FILTER_VALIDATION_VERSION

    @property
    def reads_wording(self) -> bool:
        """True when the wording alone ranks the evaluation pairs within :data:`WORDING_MARGIN` of the vector."""
        return self.surface_auroc is not None and not self.eval_auroc >= self.surface_auroc + WORDING_MARGIN

    @property
    def readout_span(self) -> str | None:
        """``"blocks.9-29"`` when a stacked readout was chosen, else None."""
        if not self.readout_layers:
            return None
        return f"blocks.{self.readout_layers[0]}-{self.readout_layers[-1]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "filter_layer": int(self.filter_layer), "method": self.method,
            "filter_auroc": {str(k): finite_or_none(v) for k, v in sorted(self.filter_auroc.items())},
            "eval_auroc": finite_or_none(self.eval_auroc), "eval_precision_at_k": finite_or_none(self.eval_precision_at_k),
            "eval_pair_win_rate": finite_or_none(self.eval_pair_win_rate), "n_tune": int(self.n_tune),
            "n_eval": int(self.n_eval), "seed": int(self.seed), "source": self.source,
            "method_auroc": {k: finite_or_none(v) for k, v in self.method_auroc.items()},
            "readout_layers": [int(k) for k in self.readout_layers],
            "readout_auroc": {k: finite_or_none(v) for k, v in self.readout_auroc.items()},
            "surface_auroc": finite_or_none(self.surface_auroc),
            "eval_word_stratified_auroc": finite_or_none(self.eval_word_stratified_auroc),
        }

    @classmethod
    def from_dict(cls, data: Any) -> FilterValidation | None:
        """Tolerant reader: a missing, newer or malformed record gives None (with a warning), never an error."""
        if data is None:
            return None
        try:
            version = int(data.get("version", 0))
            if version > FILTER_VALIDATION_VERSION:
                log.warning("filter_validation record version %s is newer than this library (%s): ignored",
                            version, FILTER_VALIDATION_VERSION)
                return None
            return cls(
                filter_layer=int(data["filter_layer"]), method=str(data["method"]),
                filter_auroc={int(k): float(v) for k, v in (data.get("filter_auroc") or {}).items() if v is not None},
                eval_auroc=float(data["eval_auroc"]),
                eval_precision_at_k=float(data.get("eval_precision_at_k", float("nan"))),
                eval_pair_win_rate=float(data.get("eval_pair_win_rate", float("nan"))),
                n_tune=int(data.get("n_tune", 0)), n_eval=int(data.get("n_eval", 0)),
                seed=int(data.get("seed", 0)), source=str(data.get("source", "")),
                method_auroc={str(k): float(v) for k, v in (data.get("method_auroc") or {}).items()
                              if v is not None},
                readout_layers=tuple(sorted(int(k) for k in (data.get("readout_layers") or ()))),
                readout_auroc={str(k): float(v) for k, v in (data.get("readout_auroc") or {}).items()
                               if v is not None},
                surface_auroc=finite_or_none(data.get("surface_auroc")),
                eval_word_stratified_auroc=finite_or_none(data.get("eval_word_stratified_auroc")),
                version=version,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("unreadable filter_validation record in a persona vector sidecar (%s): ignored", exc)
            return None


@dataclass
class PersonaVectorSet:
    """Per-layer directions of one trait in one model, plus everything needed to judge and reuse them."""

    trait_id: str
    vectors: dict[int, torch.Tensor]
    model: ModelIdentity
    """The model the directions live in (an identity dict, e.g. a sidecar's ``model`` record, is converted)."""
    mode: str
    aggregator: str = "mean_diff"
    trait_hash: str | None = None
    polarity: str = "undesirable"
    n_pos: int = 0
    n_neg: int = 0
    gap: dict[int, float] = field(default_factory=dict)
    base_std: dict[int, float] = field(default_factory=dict)
    selected_layer: int | None = None
    selection_reason: str | None = None
    validation: ValidationSummary | None = None
    """The held-out validation of these directions (None: not validated, level ``"none"``)."""
    gap_source: str | None = None
    """Which features measured ``gap`` (e.g. ``"prompt_contrast_last_token"``)."""
    assistant_prefix: str | None = None
    """The shared assistant prefix of a ``prompt_contrast`` extraction (None: none)."""
    cache_key: str | None = None
    """Key of the cache entry this file is (the gate's vector cache), None for a user's file."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other annotations found in a sidecar's ``extra``, kept so that a re-save does not drop them; no library
    code reads them."""
    layer_convention: str = LAYER_CONVENTION
    filter_validation: FilterValidation | None = None
    """Filter validation (response pairs, tuning/evaluation split); None when the file was never validated for
    filtering."""
    readout: dict[int, torch.Tensor] | None = None
    """Slices of the stacked filter readout per block (``readout.{layer}`` tensors; None: none was fitted), used
    by the data filter when ``filter_validation.readout_layers`` names them."""

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            self.model = _as_identity(self.model)
        if not isinstance(self.model, ModelIdentity):
            raise ConfigError(bad_value("model", type(self.model).__name__, "a ModelIdentity (or its dict)"))
        if not self.vectors:
            raise ConfigError(bad_value("vectors", {}, "at least one layer", "Run an extractor's fit() first."))
        dims = {int(v.shape[-1]) for v in self.vectors.values()}
        if len(dims) != 1 or any(v.dim() != 1 for v in self.vectors.values()):
            raise ConfigError(bad_value("vectors", {k: tuple(v.shape) for k, v in self.vectors.items()},
                                        "1-D tensors of one common size d_model"))
        self.vectors = {int(k): v.detach().to(torch.float32).cpu().contiguous() for k, v in self.vectors.items()}
        if self.selected_layer is not None and self.selected_layer not in self.vectors:
            raise ConfigError(bad_value("selected_layer", self.selected_layer, sorted(self.vectors)))
        if self.filter_validation is not None and self.filter_validation.filter_layer not in self.vectors:
            raise ConfigError(bad_value("filter_validation.filter_layer", self.filter_validation.filter_layer,
                                        sorted(self.vectors)))
        if self.readout is not None:
            self.readout = {int(k): v.detach().to(torch.float32).cpu().contiguous() for k, v in self.readout.items()}
            if not self.readout or any(v.shape != (self.d_model,) for v in self.readout.values()):
                raise ConfigError(bad_value("readout", {k: tuple(v.shape) for k, v in self.readout.items()},
                                            f"1-D slices of size d_model {self.d_model}, or None"))
        wanted = self.filter_validation.readout_layers if self.filter_validation is not None else ()
        if wanted and not set(wanted) <= set(self.readout or {}):
            raise ConfigError(bad_value("filter_validation.readout_layers", list(wanted),
                                        f"blocks of the file's readout {sorted(self.readout or {})}"))
        if self.polarity not in ("undesirable", "desirable"):
            raise ConfigError(bad_value("polarity", self.polarity, ["undesirable", "desirable"]))
        if self.validation is not None and not isinstance(self.validation, ValidationSummary):
            raise ConfigError(bad_value("validation", type(self.validation).__name__, "a ValidationSummary or None",
                                        "validate_vectors(...).summary builds it."))
        if self.validation is not None and any(row.layer not in self.vectors for row in self.validation.layers):
            raise ConfigError(bad_value("validation.layers", [row.layer for row in self.validation.layers],
                                        f"layers of this file {self.layers}"))

    # ------------------------------------------------------------------ access
    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    @property
    def d_model(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])

    @property
    def norms(self) -> dict[int, float]:
        return {k: float(v.norm()) for k, v in sorted(self.vectors.items())}

    @property
    def weight_hash(self) -> str | None:
        return self.model.weight_hash or None

    @property
    def validation_level(self) -> str:
        """``"quick"`` / ``"full"`` (what :attr:`validation` measured) or ``"none"`` (never validated)."""
        return self.validation.level if self.validation is not None else "none"

    def auroc_at(self, layer: int) -> float | None:
        """Held-out AUROC recorded for ``layer`` (None: not validated at that layer); never another layer's."""
        return self.validation.auroc_at(layer) if self.validation is not None else None

    def with_validation(self, summary: ValidationSummary, *, selection_reason: str | None = None) -> PersonaVectorSet:
        """A copy that records ``summary`` and its selected layer (and reason, unless ``selection_reason``)."""
        return dataclasses.replace(self, validation=summary, selected_layer=summary.selected_layer,
                                   selection_reason=selection_reason or summary.selection_reason)

    def _layer(self, layer: int | None) -> int:
        if layer is None:
            if self.selected_layer is None:
                raise ConfigError(bad_value("layer", None, self.layers,
                                            "No layer was selected in this file; pass layer= explicitly."))
            return self.selected_layer
        if layer not in self.vectors:
            raise ConfigError(bad_value("layer", layer, self.layers, "This file has no vector for that layer."))
        return layer

    def vector(self, layer: int | None = None) -> torch.Tensor:
        """Raw direction at ``layer`` (default: the selected layer)."""
        return self.vectors[self._layer(layer)]

    def unit(self, layer: int | None = None) -> torch.Tensor:
        """Unit direction at ``layer``, pointing toward the trait (the pos class)."""
        v = self.vector(layer)
        n = v.norm()
        if float(n) == 0.0:
            raise ConfigError(bad_value("layer", layer, "a layer with a non-zero vector"))
        return v / n

    def undesirable_sign(self) -> float:
        """+1 when the trait direction is the undesirable pole, -1 for desirable traits."""
        return 1.0 if self.polarity == "undesirable" else -1.0

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        return {
            "format": "difflib_models.persona_vectors",
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "trait": {"id": self.trait_id, "hash": self.trait_hash, "polarity": self.polarity},
            "model": self.model.to_dict(),
            "mode": self.mode,
            "aggregator": self.aggregator,
            "layer_convention": self.layer_convention,
            "layers": self.layers,
            "d_model": self.d_model,
            "norms": {str(k): finite_or_none(v) for k, v in self.norms.items()},
            "n_pos": int(self.n_pos),
            "n_neg": int(self.n_neg),
            "gap": {str(k): finite_or_none(v) for k, v in sorted(self.gap.items())},
            "base_std": {str(k): finite_or_none(v) for k, v in sorted(self.base_std.items())},
            "selected_layer": self.selected_layer,
            "selection_reason": self.selection_reason,
            "validation_level": self.validation_level,
            "validation": self.validation.to_json() if self.validation is not None else None,
            "extra": {**self.extra, **{k: v for k, v in (("gap_source", self.gap_source),
                                                         ("assistant_prefix", self.assistant_prefix),
                                                         ("gate_cache_key", self.cache_key)) if v is not None}},
            "filter_validation": self.filter_validation.to_dict() if self.filter_validation else None,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.safetensors`` and the sidecar ``<path>.json`` atomically; returns the tensor path."""
        from safetensors.torch import save_file

        tensor_path, sidecar = _paths(path)
        _refuse_foreign(tensor_path, sidecar)
        tensors = {f"layer.{k}": v for k, v in sorted(self.vectors.items())}
        tensors.update({f"readout.{k}": v for k, v in sorted((self.readout or {}).items())})
        atomic_write(tensor_path, lambda p: save_file(tensors, str(p), metadata={"trait": self.trait_id}))
        meta = self.metadata()
        meta["sha256"] = sha256_file(tensor_path)
        atomic_write_json(sidecar, meta)
        log.info("wrote persona vectors %s (%d layers)", tensor_path, len(self.vectors))
        return tensor_path

    @classmethod
    def load(cls, path: str | Path, expect_model: Any = None) -> PersonaVectorSet:
        """Read a vector file. ``expect_model`` (LoadedModel, ModelIdentity, identity dict or weight-hash str)
        makes a weight-hash mismatch an IdentityMismatchError."""
        from safetensors.torch import load_file

        tensor_path, sidecar = _paths(path)
        if not tensor_path.exists() or not sidecar.exists():
            raise ConfigError(bad_value("path", str(path), "a persona vector file (.safetensors + .json sidecar)",
                                        f"Expected {tensor_path.name} and {sidecar.name} side by side."))
        meta = load_json(sidecar, what="--vectors")
        if not isinstance(meta, dict) or meta.get("format") != "difflib_models.persona_vectors":
            raise ConfigError(bad_value("path", str(sidecar), "a persona vector sidecar"))
        if not isinstance(meta.get("format_version", 0), int) or meta.get("format_version", 0) > FORMAT_VERSION:
            raise ConfigError(bad_value("format_version", meta.get("format_version"), f"<= {FORMAT_VERSION}",
                                        "Upgrade difflib_models to read this file."))
        if meta.get("sha256") and sha256_file(tensor_path) != meta["sha256"]:
            raise ConfigError(f"persona vector file {tensor_path} does not match its sidecar checksum "
                              "(corrupt or replaced). HINT: re-extract the vectors.")
        if expect_model is not None:
            check_identity(meta.get("model", {}), expect_model, what=str(tensor_path))
        try:
            raw = load_file(str(tensor_path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a truncated file
            raise ConfigError(bad_value("--vectors", str(tensor_path), "a readable .safetensors file",
                                        f"{exc}; re-extract the vectors")) from None
        try:
            return cls._from_meta(meta, raw, source=str(sidecar))
        except ConfigError:
            raise
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(bad_value("--vectors", str(sidecar), "a persona vector sidecar written by difflib_models",
                                        f"a field has the wrong type ({exc}); re-extract the vectors")) from None

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], raw: dict[str, torch.Tensor], *, source: str) -> PersonaVectorSet:
        vectors = {int(k.split(".", 1)[1]): v for k, v in raw.items() if k.startswith("layer.")}
        readout = {int(k.split(".", 1)[1]): v for k, v in raw.items() if k.startswith("readout.")} or None
        trait = meta.get("trait", {})
        extra = meta.get("extra") or {}
        if not isinstance(extra, dict):
            raise TypeError(f"'extra' is a {type(extra).__name__}, not an object")
        return cls(
            trait_id=trait.get("id", ""),
            trait_hash=trait.get("hash"),
            polarity=trait.get("polarity", "undesirable"),
            vectors=vectors,
            model=meta.get("model", {}),
            mode=meta.get("mode", ""),
            aggregator=meta.get("aggregator", "mean_diff"),
            n_pos=int(meta.get("n_pos", 0)),
            n_neg=int(meta.get("n_neg", 0)),
            gap={int(k): float(v) for k, v in (meta.get("gap") or {}).items() if v is not None},
            base_std={int(k): float(v) for k, v in (meta.get("base_std") or {}).items() if v is not None},
            selected_layer=meta.get("selected_layer"),
            selection_reason=meta.get("selection_reason"),
            validation=(ValidationSummary.from_json(meta["validation"], source=source)
                        if meta.get("validation") is not None else None),
            gap_source=_opt_str(extra.get("gap_source")), assistant_prefix=_opt_str(extra.get("assistant_prefix")),
            cache_key=_opt_str(extra.get("gate_cache_key")),
            extra={k: v for k, v in extra.items() if k not in _TYPED_EXTRA},
            layer_convention=meta.get("layer_convention", LAYER_CONVENTION),
            filter_validation=_read_filter_validation(meta.get("filter_validation"), vectors, readout),
            readout=readout,
        )


_TYPED_EXTRA = ("gap_source", "assistant_prefix", "gate_cache_key", "validation_level")
"""Keys of a sidecar's ``extra`` read into typed fields (``validation_level``: format 1's copy of the level)."""


def _opt_str(x: Any) -> str | None:
    return None if x is None else str(x)


def _as_identity(d: Mapping[str, Any]) -> ModelIdentity:
    """An identity record as a ModelIdentity; fields a record lacks stay empty (an empty weight hash is "unknown":
    :func:`check_identity` refuses it)."""
    base = d.get("base")
    return ModelIdentity(name=str(d.get("name") or ""), source=str(d.get("source") or "unknown"), path=d.get("path"),
                         weight_hash=str(d.get("weight_hash") or ""), adapter_hash=d.get("adapter_hash"),
                         base=_as_identity(base) if isinstance(base, Mapping) else None,
                         revision=d.get("revision"), extra=dict(d.get("extra") or {}))


def _read_filter_validation(data: Any, vectors: dict[int, torch.Tensor],
                            readout: dict[int, torch.Tensor] | None = None) -> FilterValidation | None:
    record = FilterValidation.from_dict(data) if isinstance(data, dict) or data is None else None
    if data is not None and not isinstance(data, dict):
        log.warning("filter_validation in a persona vector sidecar is not an object: ignored")
    if record is not None and record.filter_layer not in vectors:
        log.warning("filter_validation selects layer %s, which the file does not hold: ignored", record.filter_layer)
        return None
    if record is not None and not set(record.readout_layers) <= set(readout or {}):
        log.warning("filter_validation selects a stacked readout over blocks %s, which the file does not hold: "
                    "ignored", list(record.readout_layers))
        return None
    return record


def _paths(path: str | Path) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)`` for ``<stem>``, ``<stem>.safetensors`` or ``<stem>.json``; a dot in
    the stem is kept (``evil.v2`` -> ``evil.v2.safetensors``)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _is_vector_sidecar(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == "difflib_models.persona_vectors"


def vector_paths(path: str | Path) -> tuple[Path, Path]:
    """The ``(tensors, sidecar)`` paths of the vector file ``path`` (stem, ``.safetensors`` or ``.json``)."""
    return _paths(path)


def check_output_path(path: str | Path) -> tuple[Path, Path]:
    """The ``(tensors, sidecar)`` paths :meth:`PersonaVectorSet.save` would write for ``path``; ConfigError when one
    exists and is not an earlier persona vector file (call it before any compute)."""
    tensor_path, sidecar = _paths(path)
    _refuse_foreign(tensor_path, sidecar)
    return tensor_path, sidecar


def _refuse_foreign(tensor_path: Path, sidecar: Path) -> None:
    """Never write over a file that is not an earlier persona vector file (a trait file, model weights...)."""
    for target in (sidecar, tensor_path):
        if target.exists() and not (target.is_file() and sidecar.is_file() and _is_vector_sidecar(sidecar)):
            raise ConfigError(bad_value(
                "path", str(target), "a new path, or an earlier persona vector file to replace",
                f"{target} exists and is not a persona vector file; vectors are never written over other files "
                "(an input such as a trait file or model weights). Choose another output path."))


def identity_dict(model: Any) -> dict[str, Any]:
    """Identity of a LoadedModel / ModelIdentity / dict / weight-hash string, as a dict."""
    if model is None:
        return {}
    if isinstance(model, str):
        return {"weight_hash": model}
    if isinstance(model, dict):
        return model
    ident = getattr(model, "identity", model)
    if hasattr(ident, "to_dict"):
        return ident.to_dict()
    raise ConfigError(bad_value("expect_model", type(model).__name__,
                                "a LoadedModel, ModelIdentity, identity dict or weight-hash string"))


def _hashes(ident: dict[str, Any]) -> set[str]:
    out = {ident.get("weight_hash")}
    base = ident.get("base")
    if isinstance(base, dict):
        out.add(base.get("weight_hash"))
    return {h for h in out if h}


def check_identity(stored: dict[str, Any], expect_model: Any, *, what: str = "persona vectors") -> None:
    """Raise IdentityMismatchError unless ``stored`` and ``expect_model`` share a weight hash.

    A fine-tuned (peft) model matches vectors extracted on its base: its identity's ``base`` hash counts.
    """
    want = identity_dict(expect_model)
    have, need = _hashes(stored), _hashes(want)
    if not have or not need:
        raise IdentityMismatchError(
            f"{what}: cannot check the model identity (weight hash missing on "
            f"{'the file' if not have else 'the model'}). HINT: re-extract the vectors with this library."
        )
    if not have & need:
        raise IdentityMismatchError(
            bad_value(
                "expect_model.weight_hash",
                sorted(need)[0][:16],
                [h[:16] for h in sorted(have)],
                f"{what} were extracted on model {stored.get('name', '?')!r}; a direction is only meaningful in "
                "the model it was extracted from. Re-extract for this model.",
            )
        )
