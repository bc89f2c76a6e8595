"""Stores written before the writer used the safetensors library (hand-packed header, tests/store/data/
legacy_store_struct_pack, written by the previous ``write_safetensors``) still open, verify and read; the
library-written store of the same batches holds identical tensors."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from difflib_models.store import ActivationStore, ActivationStoreWriter
from tests.store.synthetic import batches_for, make_batch, writer_kwargs

LEGACY = Path(__file__).parent / "data" / "legacy_store_struct_pack"


def _write_new(path: Path) -> None:
    with ActivationStoreWriter(path, shard_tokens=24, **writer_kwargs([0, 2], 8)) as w:
        for ids in batches_for(6, 2):
            w.add(ids, {"model": make_batch(ids, [0, 2], 8, seed=1)})


def _acts(store: ActivationStore) -> torch.Tensor:
    return torch.cat([b["acts"] for b in store.iter_batches(5)])


def test_legacy_store_opens_verifies_and_reads(tmp_path: Path) -> None:
    legacy = shutil.copytree(LEGACY, tmp_path / "legacy")
    store = ActivationStore.open(legacy, verify=True)
    assert store.complete and store.prompt_ids() == list(range(6)) and store.n_shards == 2
    for shard in store.manifest.shards:  # the manifest's sha256 is the legacy file's
        data = (legacy / shard.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard.sha256 and len(data) == shard.n_bytes
    expected = torch.cat([torch.stack([make_batch(ids, [0, 2], 8, seed=1).acts[i] for i in (0, 2)], 1)
                          for ids in batches_for(6, 2)])
    assert torch.equal(_acts(store)[:, 0], expected)


def test_library_written_store_holds_the_same_tensors(tmp_path: Path) -> None:
    _write_new(tmp_path / "new")
    new = ActivationStore.open(tmp_path / "new", verify=True)
    legacy = ActivationStore.open(LEGACY, verify=True)
    assert [(s.n_tokens, s.prompt_ids) for s in new.manifest.shards] == [
        (s.n_tokens, s.prompt_ids) for s in legacy.manifest.shards]
    for a, b in zip(new.manifest.shards, legacy.manifest.shards, strict=True):
        ta, tb = load_file(tmp_path / "new" / a.file), load_file(LEGACY / b.file)
        assert set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)
        data = (tmp_path / "new" / a.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == a.sha256 and len(data) == a.n_bytes
    assert torch.equal(_acts(new), _acts(legacy))
