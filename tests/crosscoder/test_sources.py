"""StoreSource keeps a small store in memory: the same batches as a fresh read of the store, shards read once."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from difflib_models.crosscoder.sources import StoreSource
from difflib_models.store import ActivationStore, ActivationStoreWriter
from tests.store.synthetic import FakeBatch, batches_for, make_batch, writer_kwargs

LAYERS = [1, 3]
D = 8


@pytest.fixture
def paired_store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    sides = ("base", "finetuned")
    with ActivationStoreWriter(path, shard_tokens=30, **writer_kwargs(LAYERS, D, sides=sides)) as w:
        for ids in batches_for(40, 3):
            base = make_batch(ids, LAYERS, D, seed=0)
            ft = FakeBatch({i: a * 1.5 + 1 for i, a in base.acts.items()}, base.token_ids.clone(), base.seq_index,
                           base.pos_index)
            w.add(ids, {"base": base, "finetuned": ft})
    return path


def _fresh(path: Path, batch_size: int, seed: int, shuffle: bool = True) -> list[torch.Tensor]:
    store = ActivationStore.open(path)  # a new store object: every shard read from disk
    out = []
    for b in store.iter_batches(batch_size, shuffle=shuffle, seed=seed):
        if b["acts"].shape[0] == batch_size:
            out.append(b["acts"].reshape(batch_size, -1, D).float())
    return out


@pytest.mark.parametrize("cache_bytes", [0, 2**30])
def test_store_source_batches_equal_a_fresh_read(paired_store: Path, cache_bytes: int, monkeypatch) -> None:
    reads: list[int] = []
    real = ActivationStore.load_shard

    def counting(self, index, keys=None):
        reads.append(index)
        return real(self, index, keys)

    monkeypatch.setattr(ActivationStore, "load_shard", counting)
    source = StoreSource(paired_store, cache_bytes=cache_bytes)
    n_shards = ActivationStore.open(paired_store).n_shards
    assert n_shards > 2
    for epoch in range(3):  # several passes, as training makes: each must equal a fresh read of the store
        for shuffle, seed, bs in ((True, epoch, 16), (True, 1000003 * epoch, 7), (False, 0, 16)):
            got = list(source.iter_batches(bs, shuffle=shuffle, seed=seed))
            monkeypatch.setattr(ActivationStore, "load_shard", real)
            want = _fresh(paired_store, bs, seed, shuffle)
            monkeypatch.setattr(ActivationStore, "load_shard", counting)
            assert len(got) == len(want) > 2
            for a, b in zip(got, want, strict=True):
                assert torch.equal(a, b)
    cached = cache_bytes > 0
    if cached:  # each shard read once in all (the alignment check at construction included)
        assert sorted(reads) == list(range(n_shards))
    else:  # every pass reads every shard again
        assert len(reads) >= 9 * n_shards
    # pickling (ddp_spawn) carries the path, not the shards; the copy reads the store again
    copy = pickle.loads(pickle.dumps(source))
    assert copy._opened is None
    assert torch.equal(next(copy.iter_batches(16, seed=5)), _fresh(paired_store, 16, 5)[0])
