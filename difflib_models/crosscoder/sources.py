"""Activation sources for crosscoders: the small `PairedActivationSource` protocol and two implementations.

A source yields raw activation batches [B, M, d] (M = models x layers, source m = model * n_layers + layer) and
knows a normalisation scalar per source (``sqrt(d / E||x||^2)``). Two implementations: `TensorSource`
(in-memory [N, M, d] tensor) and `StoreSource` (a paired `ActivationStore` on disk, read in shuffled order).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from difflib_models.errors import ConfigError, bad_value
from difflib_models.store.reader import ActivationStore

logger = logging.getLogger(__name__)


@runtime_checkable
class PairedActivationSource(Protocol):
    """What crosscoder training needs from activations."""

    @property
    def n_sources(self) -> int: ...

    @property
    def d_model(self) -> int: ...

    @property
    def n_tokens(self) -> int: ...

    def iter_batches(self, batch_size: int, *, shuffle: bool = True, seed: int = 0) -> Iterator[Tensor]:
        """Raw (un-normalised) float32 batches [B, M, d]."""
        ...

    def norm_scales(self) -> Tensor:
        """[M] scalars so that E||scale_m * x_m||^2 = d."""
        ...


def estimate_norm_scales(acts: Tensor) -> Tensor:
    """[M] scalars ``sqrt(d / E||x_m||^2)`` from a sample [N, M, d]."""
    msq = acts.float().pow(2).sum(-1).mean(0)
    return torch.sqrt(acts.shape[-1] / msq.clamp_min(1e-12))


class TensorSource:
    """Activations held in memory as one [N, M, d] tensor."""

    def __init__(self, acts: Tensor, *, source_names: Sequence[str] | None = None) -> None:
        if acts.dim() != 3 or acts.shape[0] == 0:
            raise ConfigError(bad_value("acts.shape", tuple(acts.shape), "[N > 0, n_sources, d_model]"))
        if not torch.isfinite(acts).all():
            raise ConfigError(bad_value("acts", "non-finite values", "finite activations"))
        self.acts = acts.float().contiguous()
        self.source_names = list(source_names or [])
        self._scales: Tensor | None = None

    @property
    def n_sources(self) -> int:
        return int(self.acts.shape[1])

    @property
    def d_model(self) -> int:
        return int(self.acts.shape[2])

    @property
    def n_tokens(self) -> int:
        return int(self.acts.shape[0])

    def norm_scales(self) -> Tensor:
        if self._scales is None:
            self._scales = estimate_norm_scales(self.acts[: min(self.n_tokens, 65536)])
        return self._scales

    def iter_batches(self, batch_size: int, *, shuffle: bool = True, seed: int = 0) -> Iterator[Tensor]:
        if shuffle:
            order = torch.randperm(self.n_tokens, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(self.n_tokens)
        for start in range(0, self.n_tokens - batch_size + 1 if self.n_tokens >= batch_size else 1, batch_size):
            yield self.acts[order[start : start + batch_size]]


SHARD_CACHE_BYTES = 256 * 2**20
"""A store whose shards total at most this many bytes is kept in memory by :class:`StoreSource` (read and
checksum-verified once per process instead of once per pass; a small store is passed once per training step)."""


class _CachedShards(ActivationStore):
    """An :class:`ActivationStore` that keeps every shard it has loaded (all tensors) in memory."""

    def __init__(self, store: ActivationStore) -> None:
        super().__init__(store.path, store.manifest, verify=store.verify)
        self._shards: dict[int, dict[str, Tensor]] = {}

    def load_shard(self, index: int, keys: Sequence[str] | None = None) -> dict[str, Tensor]:
        if index not in self._shards:
            self._shards[index] = super().load_shard(index)
        tensors = self._shards[index]
        return dict(tensors) if keys is None else {k: tensors[k] for k in keys}


class StoreSource:
    """A paired activation store (``difflib_models.store``) seen as a crosscoder source.

    ``sides`` x ``layers`` become the sources (side-major). Only the path and the selection are pickled, so it
    survives ``ddp_spawn``; the store is opened once per process, and a store of at most ``cache_bytes`` of shards
    is held in memory after its first pass (the batches are the same either way)."""

    def __init__(self, path: str | Path, *, sides: Sequence[str] | None = None,
                 layers: Sequence[int] | None = None, cache_bytes: int = SHARD_CACHE_BYTES) -> None:
        self.path = Path(path)
        self.cache_bytes = int(cache_bytes)
        self._opened: ActivationStore | None = None
        store = self._store()
        self.sides = list(sides or store.sides)
        self.layers = list(layers if layers is not None else store.layers)
        unknown = [s for s in self.sides if s not in store.sides]
        if unknown:
            raise ConfigError(bad_value("sides", self.sides, store.sides))
        bad_layers = [layer for layer in self.layers if layer not in store.layers]
        if bad_layers:
            raise ConfigError(bad_value("layers", self.layers, store.layers, "the store holds only these layers"))
        if len(self.sides) > 1:
            store.check_alignment()
        self._d = int(store.d_model)
        self._n = int(store.n_tokens)
        self.source_names = [f"{s}/blocks.{layer}" for s in self.sides for layer in self.layers]
        #: identity dict of each model (in source/model order), from the store manifest: recorded with the
        #: trained crosscoder so that the gate can refuse a crosscoder trained on other models
        self.identities = [dict(store.manifest.identities.get(s) or {}) for s in self.sides]

    def _store(self) -> ActivationStore:
        if self._opened is None:
            store = ActivationStore.open(self.path)
            size = sum(max(s.n_bytes, 0) for s in store.manifest.shards)
            self._opened = _CachedShards(store) if size <= self.cache_bytes else store
        return self._opened

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None}  # reopened in the receiving process

    @property
    def n_sources(self) -> int:
        return len(self.sides) * len(self.layers)

    @property
    def d_model(self) -> int:
        return self._d

    @property
    def n_tokens(self) -> int:
        return self._n

    def norm_scales(self) -> Tensor:
        store = self._store()
        return torch.tensor(
            [float(store.norm_scale(s, layer)) for s in self.sides for layer in self.layers], dtype=torch.float32
        )

    def iter_batches(self, batch_size: int, *, shuffle: bool = True, seed: int = 0) -> Iterator[Tensor]:
        store = self._store()
        for batch in store.iter_batches(batch_size, sides=self.sides, layers=self.layers, shuffle=shuffle,
                                        seed=seed, normalize=False):
            acts = batch["acts"]
            if acts.shape[0] < batch_size:
                continue
            yield acts.reshape(acts.shape[0], -1, acts.shape[-1]).float()
