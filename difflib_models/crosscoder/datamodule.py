"""`CrosscoderDataModule`: a Lightning DataModule over a `PairedActivationSource` (imports Lightning)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning.pytorch as pl
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from difflib_models.crosscoder.sources import PairedActivationSource
from difflib_models.errors import ConfigError, bad_value


class _SourceDataset(IterableDataset):
    """An endless stream of batches, a deterministic function of (seed, global step).

    Pass e of the source is shuffled with ``seed + e``; the stream's batch g goes to rank ``g % world``, so
    each step consumes ``world`` consecutive batches. Starting at ``start_step`` (resume) skips the batches
    earlier steps consumed, so a resumed run sees exactly the data an uninterrupted run would."""

    def __init__(self, source: PairedActivationSource, batch_size: int, seed: int, rank: int, world: int,
                 start_step: int = 0) -> None:
        self.source, self.batch_size, self.seed, self.rank, self.world = source, batch_size, seed, rank, world
        self.start_step = start_step

    def __iter__(self) -> Iterator[Tensor]:
        if get_worker_info() is not None:
            raise ConfigError(bad_value("num_workers", get_worker_info().num_workers, [0]))
        skip = self.start_step * self.world
        g = 0
        epoch = 0
        while True:
            produced = False
            for batch in self.source.iter_batches(self.batch_size, shuffle=True, seed=self.seed + 1000003 * epoch):
                produced = True
                if g >= skip and g % self.world == self.rank:
                    yield batch
                g += 1
            if not produced:
                raise ConfigError(bad_value("source", "no full batch", f"at least {self.batch_size} tokens"))
            epoch += 1


class CrosscoderDataModule(pl.LightningDataModule):
    """Shuffled batches of a `PairedActivationSource`, split across DDP ranks.

    ``batch_size`` is the global batch; each of W ranks gets ceil(batch_size / W) tokens per step (every W-th
    batch of the shuffled stream). ``norm_scales`` are the per-source normalisation scalars."""

    def __init__(self, source: PairedActivationSource, batch_size: int, *, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(source, PairedActivationSource):
            raise ConfigError(bad_value("source", type(source).__name__, "a PairedActivationSource"))
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(bad_value("batch_size", batch_size, "an integer >= 1"))
        self.source = source
        self.batch_size = batch_size
        self.seed = seed

    @property
    def norm_scales(self) -> Tensor:
        return self.source.norm_scales()

    def train_dataloader(self) -> DataLoader:
        rank, world = 0, 1
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            rank, world = trainer.global_rank, trainer.world_size
        per_rank = max(1, math.ceil(self.batch_size / world))
        if per_rank > self.source.n_tokens:
            raise ConfigError(
                bad_value("batch_size", self.batch_size, f"at most n_tokens={self.source.n_tokens} per rank",
                          "collect more activations or lower batch_size")
            )
        start = int(trainer.global_step) if trainer is not None else 0
        dataset = _SourceDataset(self.source, per_rank, self.seed, rank, world, start)
        return DataLoader(dataset, batch_size=None, num_workers=0)
