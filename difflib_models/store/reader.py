"""Reading activation stores: streamed ordered or shuffled batches, lazy checksum verification.

``ActivationStore.open(path)`` reads only the manifest. Shards are loaded one at a time when a batch needs them
(shuffled reading keeps a buffer of ``buffer_shards`` shards), and each shard's sha256 is checked against the
manifest the first time it is read, so a corrupt or truncated file raises :class:`CorruptStoreError` naming it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from difflib_models.errors import (
    ConfigError,
    CorruptStoreError,
    IncompatibleStoreError,
    StoreError,
    bad_value,
)
from difflib_models.models.compat import vocab_hash
from difflib_models.store.manifest import (
    INDEX_KEYS,
    Manifest,
    ShardInfo,
    act_key,
    read_manifest,
    shard_path,
)

logger = logging.getLogger(__name__)


class ActivationStore:
    """A store on disk. Cheap to open; everything heavy is streamed."""

    def __init__(self, path: Path, manifest: Manifest, *, verify: bool = True) -> None:
        self.path = path
        self.manifest = manifest
        self.verify = verify
        self._verified: set[str] = set()

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> ActivationStore:
        """Open the store at ``path``; missing shard files raise CorruptStoreError, checksums are checked lazily."""
        path = Path(path)
        manifest = read_manifest(path)
        for shard in manifest.shards:
            file = shard_path(path, shard)
            if not file.is_file():
                raise CorruptStoreError(f"shard {file} listed in the manifest is missing.")
        if not manifest.complete:
            logger.warning(
                "store %s is incomplete (%d shards, %d tokens written); rerun the same snapshot command to "
                "finish it",
                path,
                len(manifest.shards),
                manifest.n_tokens,
            )
        return cls(path, manifest, verify=verify)

    # --- summary -----------------------------------------------------------------------------------
    @property
    def sides(self) -> list[str]:
        return list(self.manifest.sides)

    @property
    def layers(self) -> list[int]:
        return list(self.manifest.layers)

    @property
    def d_model(self) -> int:
        return self.manifest.d_model

    @property
    def n_tokens(self) -> int:
        return self.manifest.n_tokens

    @property
    def n_shards(self) -> int:
        return len(self.manifest.shards)

    @property
    def complete(self) -> bool:
        return self.manifest.complete

    def prompt_ids(self) -> list[int]:
        return sorted(self.manifest.prompt_ids())

    def norm_scale(self, side: str, layer: int) -> float:
        """Scalar s with E||s * x||^2 = d_model for this side/layer (1.0 when the store is empty)."""
        self._check_selection([side], [layer])
        scale = self.manifest.norm_scale(side, layer)
        return 1.0 if scale is None else scale

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": str(self.path),
            "format_version": m.format_version,
            "library_version": m.library_version,
            "complete": m.complete,
            "sides": m.sides,
            "identities": m.identities,
            "tokenizer_name": m.tokenizer_name,
            "vocab_hash": m.vocab_hash,
            "layers": m.layers,
            "hook_points": m.hook_points,
            "layer_convention": m.layer_convention,
            "d_model": m.d_model,
            "dtype": m.dtype,
            "n_shards": len(m.shards),
            "n_tokens": m.n_tokens,
            "n_prompts": len(m.prompt_ids()),
            "bytes": sum(max(s.n_bytes, 0) for s in m.shards),
            "norm_scale": {
                side: {str(layer): m.norm_scale(side, layer) for layer in m.layers} for side in m.sides
            },
            "extra": m.extra,
        }

    # --- shard access ------------------------------------------------------------------------------
    def load_shard(self, index: int, keys: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Tensors of shard ``index`` (all, or only ``keys``), checksum-verified on first use."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        shard = self.manifest.shards[index]
        file = shard_path(self.path, shard)
        if keys is not None and (not self.verify or shard.file in self._verified):
            return self._load_keys(file, keys)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CorruptStoreError(f"cannot read shard {file}: {exc}") from exc
        self._verify_bytes(shard, file, data)
        try:
            tensors = load(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise CorruptStoreError(f"shard {file} is not a valid safetensors file: {exc}") from exc
        self._check_shard(shard, file, tensors)
        if keys is not None:
            tensors = {k: tensors[k] for k in keys}
        return tensors

    @staticmethod
    def _load_keys(file: Path, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(file), framework="pt") as fh:
                return {k: fh.get_tensor(k) for k in keys}
        except (SafetensorError, OSError, KeyError, RuntimeError) as exc:
            raise CorruptStoreError(f"cannot read {list(keys)[:3]} from shard {file}: {exc}") from exc

    def _verify_bytes(self, shard: ShardInfo, file: Path, data: bytes) -> None:
        if not self.verify or shard.file in self._verified:
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest != shard.sha256:
            raise CorruptStoreError(
                f"shard {file} is corrupt: sha256 {digest[:16]}... does not match the manifest's "
                f"{shard.sha256[:16]}.... HINT: delete the store and re-run the snapshot, or restore the file."
            )
        self._verified.add(shard.file)

    def _check_shard(self, shard: ShardInfo, file: Path, tensors: dict[str, torch.Tensor]) -> None:
        m = self.manifest
        expected = list(INDEX_KEYS) + [act_key(s, layer) for s in m.sides for layer in m.layers]
        missing = [k for k in expected if k not in tensors]
        if missing:
            raise CorruptStoreError(f"shard {file} lacks tensors {missing[:5]}.")
        for key in expected:
            rows = tensors[key].shape[0]
            if rows != shard.n_tokens:
                raise CorruptStoreError(
                    f"shard {file}: {key} has {rows} rows, the manifest says {shard.n_tokens}."
                )

    def _check_selection(self, sides: Sequence[str], layers: Sequence[int]) -> None:
        unknown_sides = [s for s in sides if s not in self.manifest.sides]
        if unknown_sides:
            raise ConfigError(bad_value("sides", list(sides), self.manifest.sides))
        unknown_layers = [i for i in layers if i not in self.manifest.layers]
        if unknown_layers:
            raise ConfigError(
                bad_value("layers", list(layers), self.manifest.layers, "the store holds only these layers")
            )

    # --- streaming ---------------------------------------------------------------------------------
    def iter_batches(
        self,
        batch_size: int,
        *,
        sides: Sequence[str] | None = None,
        layers: Sequence[int] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        normalize: bool = False,
        drop_last: bool = False,
        buffer_shards: int = 2,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield dicts with ``acts`` float32 [B, n_sides, n_layers, d] and the index tensors [B].

        Ordered: tokens in store order. Shuffled: shard order permuted, then tokens permuted inside a buffer of
        ``buffer_shards`` shards; every token is yielded exactly once per pass either way (the last batch may
        be smaller unless ``drop_last``). ``normalize`` multiplies each side/layer by ``norm_scale``.
        """
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(bad_value("batch_size", batch_size, "a positive integer"))
        if not isinstance(buffer_shards, int) or buffer_shards <= 0:
            raise ConfigError(bad_value("buffer_shards", buffer_shards, "a positive integer"))
        sides = list(sides) if sides is not None else self.sides
        layers = list(layers) if layers is not None else self.layers
        self._check_selection(sides, layers)
        scales = None
        if normalize:
            scales = torch.tensor(
                [[self.norm_scale(s, i) for i in layers] for s in sides], dtype=torch.float32
            )
            scales = scales[None, :, :, None]
        gen = torch.Generator().manual_seed(seed)
        order = list(range(self.n_shards))
        if shuffle:
            order = torch.randperm(len(order), generator=gen).tolist()
        group = buffer_shards if shuffle else 1
        carry: dict[str, torch.Tensor] | None = None
        for start in range(0, len(order), group):
            parts = [self._stack(self.load_shard(i), sides, layers) for i in order[start : start + group]]
            if carry is not None:
                parts.insert(0, carry)
            pool = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            if shuffle:
                perm = torch.randperm(pool["acts"].shape[0], generator=gen)
                pool = {k: v[perm] for k, v in pool.items()}
            n = pool["acts"].shape[0]
            n_full = n - n % batch_size
            for b in range(0, n_full, batch_size):
                yield self._finish_batch({k: v[b : b + batch_size] for k, v in pool.items()}, scales)
            carry = {k: v[n_full:] for k, v in pool.items()} if n_full < n else None
        if carry is not None and not drop_last:
            yield self._finish_batch(carry, scales)

    @staticmethod
    def _finish_batch(batch: dict[str, torch.Tensor], scales: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if scales is not None:
            batch["acts"] = batch["acts"] * scales
        return batch

    def _stack(
        self, tensors: dict[str, torch.Tensor], sides: list[str], layers: list[int]
    ) -> dict[str, torch.Tensor]:
        acts = torch.stack(
            [torch.stack([tensors[act_key(s, i)].float() for i in layers], dim=1) for s in sides], dim=1
        )
        out = {"acts": acts}
        out.update({k: tensors[k] for k in INDEX_KEYS})
        return out

    def token_table(self) -> dict[str, torch.Tensor]:
        """Index tensors of every token in store order: token_ids, seq_index, pos_index, prompt_id."""
        parts = [self.load_shard(i, INDEX_KEYS) for i in range(self.n_shards)]
        if not parts:
            return {k: torch.zeros(0, dtype=torch.long) for k in INDEX_KEYS}
        return {k: torch.cat([p[k] for p in parts]) for k in INDEX_KEYS}

    # --- checks ------------------------------------------------------------------------------------
    def check_alignment(self) -> None:
        """Paired stores: every side must hold identical token ids (StoreError naming the first mismatch)."""
        sides = self.manifest.sides
        if len(sides) < 2:
            return
        for index, shard in enumerate(self.manifest.shards):
            keys = [f"token_ids.{s}" for s in sides]
            tensors = self.load_shard(index, keys + ["prompt_id", "pos_index"])
            ref = tensors[keys[0]]
            for side, key in zip(sides[1:], keys[1:], strict=True):
                other = tensors.get(key)
                if other is None or other.shape != ref.shape:
                    raise StoreError(f"paired store {self.path}: shard {shard.file} lacks aligned {key}.")
                diff = (other != ref).nonzero().flatten()
                if diff.numel():
                    j = int(diff[0])
                    raise StoreError(
                        f"paired store {self.path} is misaligned: in {shard.file}, {diff.numel()} token(s) differ "
                        f"between sides {sides[0]!r} and {side!r}; first at prompt id {int(tensors['prompt_id'][j])} "
                        f"position {int(tensors['pos_index'][j])} (token {int(ref[j])} vs {int(other[j])}). "
                        "HINT: both models must use the same tokenizer and the same tokenized inputs."
                    )

    def check_compatible(self, loaded: Any) -> None:
        """Refuse a model whose tokenizer vocabulary differs from the store's (IncompatibleStoreError)."""
        tokenizer = getattr(loaded, "tokenizer", loaded)
        theirs = vocab_hash(tokenizer)
        if theirs != self.manifest.vocab_hash:
            name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
            raise IncompatibleStoreError(
                f"store {self.path} was written with tokenizer {self.manifest.tokenizer_name!r} (vocab hash "
                f"{self.manifest.vocab_hash[:12]}), the model's tokenizer {name!r} has vocab hash {theirs[:12]}. "
                "HINT: token ids would not line up; snapshot this model into a new store."
            )
        d_model = getattr(loaded, "d_model", None)
        if isinstance(d_model, int) and d_model != self.manifest.d_model:
            raise IncompatibleStoreError(
                bad_value(
                    "d_model",
                    d_model,
                    [self.manifest.d_model],
                    f"store {self.path} holds activations of width {self.manifest.d_model}",
                )
            )
