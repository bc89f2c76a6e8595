"""The activation-store manifest: what a store holds, where, and how to check it.

A store is a directory ``DIR/manifest.json`` + ``DIR/shards/shard-00000.safetensors`` ... The manifest is the
single source of truth: a shard file that the manifest does not list (left by a killed writer) is ignored and
overwritten on resume. The manifest is rewritten atomically after every completed shard, so a store on disk is
always readable and lists exactly the shards that were fully written.

Tensors in a shard (N tokens; every prompt lies wholly inside one shard):

- ``acts.{side}.{layer}`` float [N, d_model] for each side and layer,
- ``token_ids``, ``seq_index`` (row inside the capture batch), ``pos_index`` (position in the sequence),
  ``prompt_id`` (index of the prompt in the snapshot's prompt list), all int64 [N],
- ``token_ids.{side}`` int64 [N] for each side of a paired store (used by ``check_alignment``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflib_models._version import __version__
from difflib_models.errors import (
    ConfigError,
    CorruptStoreError,
    IncompatibleStoreError,
    StoreError,
    bad_value,
)
from difflib_models.io import atomic_write_json
from difflib_models.models.hookpoints import LAYER_CONVENTION

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARD_DIR = "shards"
DTYPES = ("float32", "float16", "bfloat16")
INDEX_KEYS = ("token_ids", "seq_index", "pos_index", "prompt_id")

# fields that define what a store contains: reopening a store with different values is refused
CONFIG_FIELDS = (
    "sides",
    "layers",
    "d_model",
    "dtype",
    "identities",
    "tokenizer_name",
    "vocab_hash",
    "hook_points",
    "layer_convention",
    "extra",
)


# the only file names a manifest may list: what the writer writes (relative, inside the store, no "..")
SHARD_FILE_RE = re.compile(r"shards/shard-[0-9]{5,}\.safetensors")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def check_shard_files(shards: list[ShardInfo], where: str) -> None:
    """Every ``file`` must be ``shards/shard-NNNNN.safetensors`` and listed once (CorruptStoreError otherwise),
    so a manifest can never make a reader or writer touch a file outside the store."""
    seen: set[str] = set()
    for i, shard in enumerate(shards):
        if not SHARD_FILE_RE.fullmatch(shard.file) or shard.file in seen:
            why = "is listed twice" if shard.file in seen else "is not a shard file name of this store"
            raise CorruptStoreError(
                f"{where}: shards[{i}].file {shard.file[:200]!r} {why}; allowed: "
                f"'{SHARD_DIR}/shard-NNNNN.safetensors' (relative, inside the store, no '..'). HINT: the manifest "
                "was edited or damaged; re-create the store with `difflib-models snapshot`."
            )
        seen.add(shard.file)


def shard_path(store_dir: str | Path, shard: ShardInfo) -> Path:
    """The shard's file, refusing one that resolves outside the store (e.g. a symlinked shard) with
    CorruptStoreError."""
    root = Path(store_dir).resolve()
    path = Path(store_dir) / shard.file
    if not SHARD_FILE_RE.fullmatch(shard.file) or not path.resolve().is_relative_to(root / SHARD_DIR):
        raise CorruptStoreError(
            f"shard {path} resolves to {path.resolve()}, outside the store {root}. HINT: shard files must be "
            "regular files inside the store's shards/ directory; re-create the store with `difflib-models snapshot`."
        )
    return path


def act_key(side: str, layer: int) -> str:
    return f"acts.{side}.{layer}"


@dataclass
class ShardInfo:
    """One completed shard: its file (relative to the store), token count, prompt ids and checksum.

    On disk the prompt ids are written as half-open ``prompt_ranges`` (``[[start, stop], ...]``)."""

    file: str
    n_tokens: int
    prompt_ids: list[int]
    sha256: str
    n_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "n_tokens": self.n_tokens,
            "prompt_ranges": _to_ranges(self.prompt_ids),
            "sha256": self.sha256,
            "n_bytes": self.n_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardInfo:
        return cls(
            file=str(data["file"]),
            n_tokens=int(data["n_tokens"]),
            prompt_ids=_from_ranges(data["prompt_ranges"]),
            sha256=str(data["sha256"]),
            n_bytes=int(data.get("n_bytes", -1)),
        )


def _to_ranges(ids: list[int]) -> list[list[int]]:
    """[0, 1, 2, 5, 6] -> [[0, 3], [5, 7]] (half-open runs, order kept) so manifests stay small."""
    runs: list[list[int]] = []
    for p in ids:
        if runs and runs[-1][1] == p:
            runs[-1][1] = p + 1
        else:
            runs.append([p, p + 1])
    return runs


def _from_ranges(runs: list[list[int]]) -> list[int]:
    return [p for start, stop in runs for p in range(int(start), int(stop))]


@dataclass
class NormStats:
    """Running sums of squared norms for one side/layer; ``scale`` makes E||scale * x||^2 = d_model."""

    sum_sq: float = 0.0
    count: int = 0

    def scale(self, d_model: int) -> float | None:
        if self.count == 0 or self.sum_sq <= 0.0:
            return None
        return math.sqrt(d_model / (self.sum_sq / self.count))

    def to_dict(self, d_model: int) -> dict[str, Any]:
        return {"sum_sq": self.sum_sq, "count": self.count, "scale": self.scale(d_model)}


@dataclass
class Manifest:
    """Everything ``manifest.json`` records. ``config_dict()`` is what must match on resume."""

    sides: list[str]
    layers: list[int]
    d_model: int
    dtype: str
    identities: dict[str, dict[str, Any]]
    tokenizer_name: str
    vocab_hash: str
    hook_points: dict[str, Any]
    layer_convention: str = LAYER_CONVENTION
    extra: dict[str, Any] = field(default_factory=dict)
    shards: list[ShardInfo] = field(default_factory=list)
    norm: dict[str, dict[str, NormStats]] = field(default_factory=dict)
    complete: bool = False
    format_version: int = FORMAT_VERSION
    library_version: str = __version__

    def __post_init__(self) -> None:
        if not self.sides or len(set(self.sides)) != len(self.sides):
            raise ConfigError(bad_value("sides", self.sides, "a non-empty list of distinct names"))
        for side in self.sides:
            if not side or "." in side:
                raise ConfigError(
                    bad_value("sides", self.sides, "names without dots, e.g. ['base', 'finetuned']")
                )
        if not self.layers or len(set(self.layers)) != len(self.layers) or min(self.layers) < 0:
            raise ConfigError(
                bad_value("layers", self.layers, "a non-empty list of distinct non-negative block indices")
            )
        if self.d_model <= 0:
            raise ConfigError(bad_value("d_model", self.d_model, "a positive integer"))
        if self.dtype not in DTYPES:
            raise ConfigError(bad_value("dtype", self.dtype, DTYPES))
        missing = [s for s in self.sides if s not in self.identities]
        if missing:
            raise ConfigError(
                bad_value(
                    "identities",
                    sorted(self.identities),
                    f"one entry per side {self.sides}",
                    f"add the model identity of side(s) {missing}",
                )
            )
        for side in self.sides:
            per_layer = self.norm.setdefault(side, {})
            for layer in self.layers:
                per_layer.setdefault(str(layer), NormStats())

    # --- derived -----------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return sum(s.n_tokens for s in self.shards)

    def prompt_ids(self) -> set[int]:
        return {p for s in self.shards for p in s.prompt_ids}

    def norm_scale(self, side: str, layer: int) -> float | None:
        return self.norm[side][str(layer)].scale(self.d_model)

    def next_shard_index(self) -> int:
        indices = [int(Path(s.file).name.split("-")[1].split(".")[0]) for s in self.shards]
        return max(indices) + 1 if indices else 0

    def config_dict(self) -> dict[str, Any]:
        return {name: _jsonable(getattr(self, name)) for name in CONFIG_FIELDS}

    def config_diff(self, other: Manifest) -> list[str]:
        mine, theirs = self.config_dict(), other.config_dict()
        return [name for name in CONFIG_FIELDS if mine[name] != theirs[name]]

    # --- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "library_version": self.library_version,
            "complete": self.complete,
            **self.config_dict(),
            "n_tokens": self.n_tokens,
            "n_prompts": len(self.prompt_ids()),
            "norm": {
                side: {layer: stats.to_dict(self.d_model) for layer, stats in per.items()}
                for side, per in self.norm.items()
            },
            "shards": [s.to_dict() for s in self.shards],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "manifest") -> Manifest:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise IncompatibleStoreError(
                bad_value(
                    "format_version",
                    version,
                    [FORMAT_VERSION],
                    f"{where} was written by difflib-models {data.get('library_version', '?')} with store format "
                    f"{version}; this is difflib-models {__version__} (format {FORMAT_VERSION}). Re-create the "
                    "store with `difflib-models snapshot`, or read it with the library version that wrote it.",
                )
            )
        try:
            norm = {
                side: {layer: NormStats(float(v["sum_sq"]), int(v["count"])) for layer, v in per.items()}
                for side, per in data.get("norm", {}).items()
            }
            shards = [ShardInfo.from_dict(s) for s in data.get("shards", [])]
            manifest = cls(
                sides=[str(s) for s in data["sides"]],
                layers=[int(i) for i in data["layers"]],
                d_model=int(data["d_model"]),
                dtype=str(data["dtype"]),
                identities=dict(data["identities"]),
                tokenizer_name=str(data["tokenizer_name"]),
                vocab_hash=str(data["vocab_hash"]),
                hook_points=dict(data["hook_points"]),
                layer_convention=str(data.get("layer_convention", LAYER_CONVENTION)),
                extra=dict(data.get("extra") or {}),
                shards=shards,
                norm=norm,
                complete=bool(data.get("complete", False)),
                format_version=int(version),
                library_version=str(data.get("library_version", "?")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{where} is malformed ({type(exc).__name__}: {exc}).") from exc
        check_shard_files(manifest.shards, where)
        return manifest


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so that tuples/lists and int/str keys compare like they will after reload."""
    return json.loads(json.dumps(value, default=str))


def manifest_path(store_dir: str | Path) -> Path:
    return Path(store_dir) / MANIFEST_NAME


def read_manifest(store_dir: str | Path) -> Manifest:
    path = manifest_path(store_dir)
    if not path.is_file():
        raise StoreError(
            f"{Path(store_dir)} is not an activation store: {MANIFEST_NAME} not found. "
            "HINT: create one with `difflib-models snapshot ... --out DIR`."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path} is malformed: expected a JSON object.")
    return Manifest.from_dict(data, where=str(path))


def write_manifest(store_dir: str | Path, manifest: Manifest) -> Path:
    return atomic_write_json(manifest_path(store_dir), manifest.to_dict())
