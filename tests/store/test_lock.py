"""The store's writer lock: one writer at a time (same process or another), released on close, on an exception
and on the death of the holder (SIGKILL); a stale lock file never blocks a resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from difflib_models.errors import ConfigError, StoreLockedError
from difflib_models.store import ActivationStore, ActivationStoreWriter
from difflib_models.store.lock import LOCK_NAME, StoreLock
from tests.store.synthetic import batches_for, make_batch, writer_kwargs

ROOT = Path(__file__).resolve().parents[2]
LAYERS = [0, 1]
D = 8


def _writer(path: Path) -> ActivationStoreWriter:
    return ActivationStoreWriter(path, shard_tokens=20, **writer_kwargs(LAYERS, D))


def _add(writer: ActivationStoreWriter, ids: list[int]) -> None:
    writer.add(ids, {"model": make_batch(ids, LAYERS, D, seed=3)})


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(proc.stdout)


def test_second_writer_in_the_same_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    store = tmp_path / "s"
    first = _writer(store)
    _add(first, [0, 1, 2])
    assert (store / LOCK_NAME).read_text().strip() == str(os.getpid())
    with pytest.raises(StoreLockedError, match=rf"locked by the writer with pid {os.getpid()}\b") as exc:
        _writer(store)
    assert isinstance(exc.value, ConfigError)  # CLI exit 2
    assert "HINT" in str(exc.value)
    first.close()
    # released by close(): a new writer resumes the complete store and adds more prompts
    with _writer(store) as again:
        assert again.done_prompt_ids() == {0, 1, 2}
        _add(again, [3, 4])
    assert ActivationStore.open(store).prompt_ids() == [0, 1, 2, 3, 4]


def test_lock_is_released_when_the_with_block_raises(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with pytest.raises(RuntimeError, match="boom"), _writer(store) as w:
        _add(w, [0, 1])
        raise RuntimeError("boom")
    with _writer(store) as w:
        assert w.done_prompt_ids() == {0, 1}


def test_a_refused_writer_changes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with _writer(store) as w:
        for ids in batches_for(12, 3):
            _add(w, ids)
        w.sync()  # shards already handed to the writer thread are on disk before the comparison
        before = {p.name: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file() and p.name != LOCK_NAME}
        with pytest.raises(StoreLockedError):
            _writer(store)
        after = {p.name: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file() and p.name != LOCK_NAME}
        assert before == after
    assert ActivationStore.open(store).prompt_ids() == list(range(12))


def test_stale_lock_file_of_a_dead_process_does_not_block(tmp_path: Path) -> None:
    store = tmp_path / "s"
    store.mkdir()
    dead = _dead_pid()
    (store / LOCK_NAME).write_text(f"{dead}\n")  # a new directory holding only a stale lock is still "empty"
    with _writer(store) as w:
        assert (store / LOCK_NAME).read_text().strip() == str(os.getpid())
        _add(w, [0])
    assert ActivationStore.open(store).complete


def test_non_store_directory_gets_no_lock_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        _writer(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


_HOLDER = textwrap.dedent(
    """
    import sys
    from difflib_models.store import ActivationStoreWriter
    from tests.store.synthetic import make_batch, writer_kwargs

    w = ActivationStoreWriter(sys.argv[1], shard_tokens=20, **writer_kwargs([0, 1], 8))
    for ids in ([0, 1, 2], [3, 4, 5], [6, 7, 8]):
        w.add(ids, {"model": make_batch(ids, [0, 1], 8, seed=3)})
    print("holding", flush=True)
    sys.stdin.readline()  # hold the lock until killed
    """
)


def test_writer_in_another_process_blocks_until_it_dies(tmp_path: Path) -> None:
    """Two processes on one store: the second is refused with the first's pid; after SIGKILL of the first, its
    lock file (with its dead pid) is left behind and the store resumes from what it completed."""
    store = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        with pytest.raises(StoreLockedError, match=rf"pid {proc.pid}\b"):
            _writer(store)
        with pytest.raises(StoreLockedError):
            StoreLock(store).acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert (store / LOCK_NAME).read_text().strip() == str(proc.pid)  # stale, but free
    partial = ActivationStore.open(store)
    assert not partial.complete
    done = set(partial.prompt_ids())
    with _writer(store) as w:  # resume: the dead holder's flock is gone
        assert w.done_prompt_ids() == done
        for ids in batches_for(12, 3):
            todo = [p for p in ids if p not in done]
            if todo:
                _add(w, todo)
    final = ActivationStore.open(store)
    assert final.complete and final.prompt_ids() == list(range(12))
    # the same data as one uninterrupted writer (same batches in the same order per prompt)
    with _writer(tmp_path / "ref") as w:
        for ids in batches_for(12, 3):
            _add(w, ids)
    ref = ActivationStore.open(tmp_path / "ref")
    got, want = final.token_table(), ref.token_table()
    order_got, order_want = got["prompt_id"].argsort(stable=True), want["prompt_id"].argsort(stable=True)
    for key in ("token_ids", "pos_index", "prompt_id"):
        assert torch.equal(got[key][order_got], want[key][order_want]), key
    acts_got = torch.cat([b["acts"] for b in final.iter_batches(512)])[order_got]
    acts_want = torch.cat([b["acts"] for b in ref.iter_batches(512)])[order_want]
    assert torch.equal(acts_got, acts_want)
