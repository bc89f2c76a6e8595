"""ActivationStore: shuffled streaming, checksums, paired alignment, compatibility checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflib_models.errors import ConfigError, CorruptStoreError, IncompatibleStoreError, StoreError
from difflib_models.store import ActivationStore, ActivationStoreWriter, vocab_hash
from tests.store.synthetic import FakeBatch, batches_for, make_batch, writer_kwargs

LAYERS = [1, 3]
D = 8


def _store(
    path: Path, n_prompts: int = 40, sides: tuple[str, ...] = ("model",), tamper: bool = False
) -> Path:
    with ActivationStoreWriter(path, shard_tokens=30, **writer_kwargs(LAYERS, D, sides=sides)) as w:
        for ids in batches_for(n_prompts, 3):
            base = make_batch(ids, LAYERS, D, seed=0)
            batches = {sides[0]: base}
            for k, s in enumerate(sides[1:], start=1):  # paired sides share the tokens, activations differ
                batches[s] = FakeBatch(
                    {i: a * 1.5 + k for i, a in base.acts.items()},
                    base.token_ids.clone(),
                    base.seq_index,
                    base.pos_index,
                )
            if tamper and 13 in ids:
                row = int((base.seq_index == ids.index(13)).nonzero()[2])
                batches[sides[-1]].token_ids[row] += 1
            w.add(ids, batches)
    return path


def _keys(batches: list[dict]) -> list[tuple[int, int]]:
    pid = torch.cat([b["prompt_id"] for b in batches]).tolist()
    pos = torch.cat([b["pos_index"] for b in batches]).tolist()
    return list(zip(pid, pos, strict=True))


def test_shuffle_yields_every_token_exactly_once_with_its_activations(tmp_path: Path) -> None:
    store = ActivationStore.open(_store(tmp_path / "s"))
    assert store.n_shards >= 6
    ordered = list(store.iter_batches(16))
    shuffled = list(store.iter_batches(16, shuffle=True, seed=3, buffer_shards=2))
    k_ord, k_shuf = _keys(ordered), _keys(shuffled)
    assert len(k_shuf) == store.n_tokens == len(set(k_shuf))
    assert sorted(k_shuf) == sorted(k_ord)
    assert k_shuf != k_ord
    # activations travel with their token
    by_key = dict(zip(k_ord, torch.cat([b["acts"] for b in ordered]), strict=True))
    acts = torch.cat([b["acts"] for b in shuffled])
    assert all(torch.equal(by_key[k], acts[j]) for j, k in enumerate(k_shuf))
    # deterministic per seed, different across seeds; shards are interleaved, not read in file order
    assert _keys(list(store.iter_batches(16, shuffle=True, seed=3, buffer_shards=2))) == k_shuf
    assert _keys(list(store.iter_batches(16, shuffle=True, seed=4, buffer_shards=2))) != k_shuf
    first_prompts = {p for p, _ in k_shuf[:16]}
    assert max(first_prompts) > 10


def test_drop_last_and_layer_selection(tmp_path: Path) -> None:
    store = ActivationStore.open(_store(tmp_path / "s"))
    got = list(store.iter_batches(10, layers=[3], drop_last=True, shuffle=True))
    assert all(b["acts"].shape == (10, 1, 1, D) for b in got)
    assert len(got) == store.n_tokens // 10
    full = torch.cat([b["acts"] for b in store.iter_batches(1000)])
    one = torch.cat([b["acts"] for b in store.iter_batches(1000, layers=[3])])
    assert torch.equal(one[:, :, 0], full[:, :, 1])
    with pytest.raises(ConfigError, match=r"layers=\[2\].*Allowed: 1, 3"):
        next(store.iter_batches(4, layers=[2]))
    with pytest.raises(ConfigError, match="batch_size"):
        next(store.iter_batches(0))


def test_corrupt_shard_is_named(tmp_path: Path) -> None:
    path = _store(tmp_path / "s")
    victim = path / "shards" / "shard-00002.safetensors"
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0xFF
    victim.write_bytes(bytes(data))
    store = ActivationStore.open(path)  # checksums are lazy: opening is fine
    with pytest.raises(CorruptStoreError, match=r"shard-00002\.safetensors is corrupt"):
        list(store.iter_batches(8))
    # shards before the corrupt one were served
    it = store.iter_batches(8)
    assert next(it)["acts"].shape[0] == 8
    # without verification the flipped byte goes unnoticed (it is inside tensor data)
    assert sum(b["acts"].shape[0] for b in ActivationStore.open(path, verify=False).iter_batches(8)) > 0


def test_missing_or_truncated_shard(tmp_path: Path) -> None:
    path = _store(tmp_path / "s")
    victim = path / "shards" / "shard-00001.safetensors"
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(CorruptStoreError, match="shard-00001"):
        ActivationStore.open(path, verify=False).token_table()
    victim.unlink()
    with pytest.raises(
        CorruptStoreError, match=r"shard-00001\.safetensors listed in the manifest is missing"
    ):
        ActivationStore.open(path)


def test_paired_alignment(tmp_path: Path) -> None:
    good = ActivationStore.open(_store(tmp_path / "good", sides=("base", "finetuned")))
    good.check_alignment()
    assert good.sides == ["base", "finetuned"]
    b = next(good.iter_batches(5))
    assert b["acts"].shape == (5, 2, 2, D)
    assert not torch.equal(b["acts"][:, 0], b["acts"][:, 1])
    assert next(good.iter_batches(5, sides=["finetuned"]))["acts"].shape == (5, 1, 2, D)
    bad = ActivationStore.open(_store(tmp_path / "bad", sides=("base", "finetuned"), tamper=True))
    with pytest.raises(StoreError, match=r"misaligned.*1 token\(s\) differ.*prompt id 13 position 2"):
        bad.check_alignment()


def test_check_compatible_compares_vocabularies(tmp_path: Path) -> None:
    class Tok:
        name_or_path = "fake"

        def __init__(self, vocab: dict[str, int]) -> None:
            self.vocab = vocab

        def get_vocab(self) -> dict[str, int]:
            return self.vocab

    vocab = {"a": 0, "b": 1, "c": 2}
    path = tmp_path / "s"
    with ActivationStoreWriter(path, **writer_kwargs(LAYERS, D, vocab_hash=vocab_hash(Tok(vocab)))) as w:
        w.add([0], {"model": make_batch([0], LAYERS, D, seed=0)})
    store = ActivationStore.open(path)
    store.check_compatible(Tok(dict(reversed(list(vocab.items())))))  # same mapping, other order
    with pytest.raises(IncompatibleStoreError, match="vocab hash"):
        store.check_compatible(Tok({"a": 0, "b": 2, "c": 1}))


def test_empty_store(tmp_path: Path) -> None:
    with ActivationStoreWriter(tmp_path / "s", **writer_kwargs(LAYERS, D)):
        pass
    store = ActivationStore.open(tmp_path / "s")
    assert store.complete and store.n_tokens == 0 and list(store.iter_batches(4)) == []
    assert store.norm_scale("model", 1) == 1.0
    assert store.token_table()["token_ids"].numel() == 0
