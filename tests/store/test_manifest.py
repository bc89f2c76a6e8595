"""Manifest shard entries are validated on read: only the writer's shard names, nothing outside the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from difflib_models.cli.app import main
from difflib_models.errors import CorruptStoreError
from difflib_models.store import ActivationStore, ActivationStoreWriter
from tests.store.synthetic import batches_for, make_batch, writer_kwargs

LAYERS = [0]
D = 8


def _store(path: Path) -> Path:
    with ActivationStoreWriter(path, shard_tokens=15, **writer_kwargs(LAYERS, D)) as w:
        for ids in batches_for(6, 2):
            w.add(ids, {"model": make_batch(ids, LAYERS, D, seed=2)})
    return path


def _point_shard_0_at(store: Path, file: str) -> None:
    m = json.loads((store / "manifest.json").read_text())
    m["shards"][0]["file"] = file
    (store / "manifest.json").write_text(json.dumps(m))


def _outside_copy(tmp_path: Path, store: Path) -> None:
    """A byte-identical copy of shard 0 outside the store: with its sha256 it would pass --verify if read."""
    (tmp_path / "outside").mkdir()
    shutil.copy(store / "shards" / "shard-00000.safetensors", tmp_path / "outside" / "x.safetensors")


@pytest.mark.parametrize(
    "file",
    [
        "../outside/x.safetensors",
        "shards/../../outside/x.safetensors",
        "ABS",
        "shards/x.safetensors",
        "manifest.json",
        "shards/shard-00000.safetensors/../shard-00001.safetensors",
        "shards/shard-1.safetensors",
        "shards\\shard-00000.safetensors",
    ],
)
def test_bad_shard_file_names_are_refused_by_reader_and_writer(tmp_path: Path, file: str) -> None:
    store = _store(tmp_path / "s")
    _outside_copy(tmp_path, store)
    if file == "ABS":
        file = str(tmp_path / "outside" / "x.safetensors")
    _point_shard_0_at(store, file)
    with pytest.raises(CorruptStoreError, match=r"shards\[0\]\.file .* is not a shard file name of this store"):
        ActivationStore.open(store)
    with pytest.raises(CorruptStoreError, match="not a shard file name"):
        ActivationStoreWriter(store, shard_tokens=15, **writer_kwargs(LAYERS, D))


def test_a_shard_listed_twice_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    _point_shard_0_at(store, "shards/shard-00001.safetensors")
    with pytest.raises(CorruptStoreError, match="listed twice"):
        ActivationStore.open(store)


def test_a_symlinked_shard_pointing_outside_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    _outside_copy(tmp_path, store)
    shard = store / "shards" / "shard-00000.safetensors"
    shard.unlink()
    shard.symlink_to(tmp_path / "outside" / "x.safetensors")
    with pytest.raises(CorruptStoreError, match="outside the store"):
        ActivationStore.open(store)
    with pytest.raises(CorruptStoreError, match="outside the store"):
        ActivationStoreWriter(store, shard_tokens=15, **writer_kwargs(LAYERS, D))


def test_inspect_verify_never_reads_a_file_outside_the_store(tmp_path: Path, capsys) -> None:
    """The issue's case: `file: ../outside/x.safetensors` (a valid copy, matching sha256) is exit 3, not a pass."""
    store = _store(tmp_path / "s")
    _outside_copy(tmp_path, store)
    _point_shard_0_at(store, "../outside/x.safetensors")
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(store), "--verify"])
    _, err = capsys.readouterr()
    assert exc.value.code == 3
    assert "'../outside/x.safetensors' is not a shard file name of this store" in err
    assert str(store / "manifest.json") in err
