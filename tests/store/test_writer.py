"""ActivationStoreWriter: round trip, sharding, resume, config clashes, NaN refusal, background errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from difflib_models.errors import ConfigError, IncompatibleStoreError, NonFiniteActivationError, StoreError
from difflib_models.store import ActivationStore, ActivationStoreWriter
from tests.store.synthetic import batches_for, make_batch, writer_kwargs

LAYERS = [0, 2]
D = 16


def _write(
    path: Path, n_prompts: int = 30, batch_size: int = 4, shard_tokens: int = 40, **kw: object
) -> dict:
    """Write a store and return what was added, concatenated in add order."""
    added: dict = {"acts": {i: [] for i in LAYERS}, "token_ids": [], "pos_index": [], "prompt_id": []}
    with ActivationStoreWriter(path, shard_tokens=shard_tokens, **writer_kwargs(LAYERS, D, **kw)) as w:
        for ids in batches_for(n_prompts, batch_size):
            b = make_batch(ids, LAYERS, D, seed=1)
            w.add(ids, {"model": b})
            for i in LAYERS:
                added["acts"][i].append(b.acts[i])
            added["token_ids"].append(b.token_ids)
            added["pos_index"].append(b.pos_index)
            added["prompt_id"].append(torch.tensor(ids)[b.seq_index])
    return {
        "acts": {i: torch.cat(v) for i, v in added["acts"].items()},
        **{k: torch.cat(added[k]) for k in ("token_ids", "pos_index", "prompt_id")},
    }


def test_round_trip_is_exact_and_sharded(tmp_path: Path) -> None:
    added = _write(tmp_path / "s")
    store = ActivationStore.open(tmp_path / "s")
    assert store.complete
    assert store.n_tokens == added["token_ids"].numel()
    assert store.prompt_ids() == list(range(30))
    # shards hold whole prompts and never exceed shard_tokens (each batch < 40 tokens here)
    assert store.n_shards >= 3
    assert all(s.n_tokens <= 40 for s in store.manifest.shards)
    assert sorted(p for s in store.manifest.shards for p in s.prompt_ids) == list(range(30))
    got = list(store.iter_batches(7))
    assert all(b["acts"].shape[0] == 7 for b in got[:-1])
    acts = torch.cat([b["acts"] for b in got])
    assert acts.shape == (store.n_tokens, 1, 2, D)
    for j, i in enumerate(LAYERS):
        assert torch.equal(acts[:, 0, j], added["acts"][i])
    for key in ("token_ids", "pos_index", "prompt_id"):
        assert torch.equal(torch.cat([b[key] for b in got]), added[key])
    table = store.token_table()
    assert torch.equal(table["prompt_id"], added["prompt_id"])
    # manifest records what the contract lists
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["format_version"] == 1 and m["library_version"] and m["layer_convention"].startswith("blocks.i")
    assert m["identities"]["model"]["weight_hash"] == "hash-model" and m["vocab_hash"] == "v" * 64
    assert all(len(s["sha256"]) == 64 for s in m["shards"])
    # contiguous prompt ids are stored as half-open ranges
    assert [r for s in m["shards"] for r in s["prompt_ranges"]][0][0] == 0
    assert sum(b - a for s in m["shards"] for a, b in s["prompt_ranges"]) == 30
    assert all(len(s["prompt_ranges"]) == 1 for s in m["shards"])


def test_norm_scale_makes_mean_squared_norm_equal_d(tmp_path: Path) -> None:
    added = _write(tmp_path / "s")
    store = ActivationStore.open(tmp_path / "s")
    for i in LAYERS:
        x = added["acts"][i].double()
        expected = (D / x.pow(2).sum(1).mean()).sqrt().item()
        assert store.norm_scale("model", i) == pytest.approx(expected, rel=1e-6)
    acts = torch.cat([b["acts"] for b in store.iter_batches(64, normalize=True)]).double()
    assert acts.pow(2).sum(-1).mean(0).squeeze(0).tolist() == pytest.approx([D, D], rel=1e-5)


def test_float16_store_rounds_like_half(tmp_path: Path) -> None:
    added = _write(tmp_path / "s", dtype="float16")
    store = ActivationStore.open(tmp_path / "s")
    acts = torch.cat([b["acts"] for b in store.iter_batches(50)])
    assert acts.dtype == torch.float32
    assert torch.equal(acts[:, 0, 1], added["acts"][2].half().float())


def test_resume_after_partial_write_has_every_prompt_once(tmp_path: Path) -> None:
    reference = _write(tmp_path / "ref")
    path = tmp_path / "s"
    batches = batches_for(30, 4)
    with pytest.raises(KeyboardInterrupt):
        with ActivationStoreWriter(path, shard_tokens=40, **writer_kwargs(LAYERS, D)) as w:
            for k, ids in enumerate(batches):
                if k == 4:
                    raise KeyboardInterrupt
                w.add(ids, {"model": make_batch(ids, LAYERS, D, seed=1)})
    partial = ActivationStore.open(path)
    assert not partial.complete
    assert partial.prompt_ids() == list(range(16))
    # what a SIGKILL between shard rename and manifest write leaves behind: an unlisted shard and a temp file
    (path / "shards" / "shard-00099.safetensors").write_bytes(b"garbage")
    (path / "shards" / ".shard-00007.safetensors.abc.tmp").write_bytes(b"garbage")
    with ActivationStoreWriter(path, shard_tokens=40, **writer_kwargs(LAYERS, D)) as w:
        done = w.done_prompt_ids()
        assert done == set(range(16))
        for ids in batches:
            todo = [p for p in ids if p not in done]
            if todo:
                w.add(todo, {"model": make_batch(todo, LAYERS, D, seed=1)})
    assert sorted(p.name for p in (path / "shards").iterdir()) == [
        f"shard-{i:05d}.safetensors" for i in range(ActivationStore.open(path).n_shards)
    ]
    store = ActivationStore.open(path)
    assert store.complete and store.prompt_ids() == list(range(30))
    table = store.token_table()
    assert torch.equal(table["prompt_id"], reference["prompt_id"])
    assert torch.equal(table["token_ids"], reference["token_ids"])
    acts = torch.cat([b["acts"] for b in store.iter_batches(1000)])
    assert torch.equal(acts[:, 0, 0], reference["acts"][0])
    ref_store = ActivationStore.open(tmp_path / "ref")
    assert store.norm_scale("model", 2) == pytest.approx(ref_store.norm_scale("model", 2), rel=1e-12)


def test_adding_a_stored_prompt_again_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "s", n_prompts=8)
    with ActivationStoreWriter(tmp_path / "s", **writer_kwargs(LAYERS, D)) as w:
        with pytest.raises(ConfigError, match="done_prompt_ids"):
            w.add([3, 9], {"model": make_batch([3, 9], LAYERS, D, seed=1)})
    assert ActivationStore.open(tmp_path / "s").prompt_ids() == list(range(8))


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"layers": [0, 1]}, "layers"),
        ({"identities": {"model": {"name": "other", "weight_hash": "zzz"}}}, "identities"),
        ({"vocab_hash": "w" * 64}, "vocab_hash"),
        ({"extra": {"positions": "last_prompt"}}, "extra"),
    ],
)
def test_different_config_into_existing_store_is_a_config_error(
    tmp_path: Path, override: dict, field: str
) -> None:
    _write(tmp_path / "s", n_prompts=4)
    kw = writer_kwargs(LAYERS, D)
    kw.update(override)
    with pytest.raises(ConfigError, match=rf"different configuration \({field}: store has"):
        ActivationStoreWriter(tmp_path / "s", **kw)


def test_non_store_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="not empty"):
        ActivationStoreWriter(tmp_path, **writer_kwargs(LAYERS, D))


def test_newer_format_version_is_incompatible_for_writer_and_reader(tmp_path: Path) -> None:
    _write(tmp_path / "s", n_prompts=4)
    mpath = tmp_path / "s" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["format_version"] = 99
    mpath.write_text(json.dumps(m))
    with pytest.raises(IncompatibleStoreError, match=r"format_version=99.*HINT: .*snapshot"):
        ActivationStore.open(tmp_path / "s")
    with pytest.raises(IncompatibleStoreError):
        ActivationStoreWriter(tmp_path / "s", **writer_kwargs(LAYERS, D))


def test_nan_is_refused_naming_layer_and_prompt(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with ActivationStoreWriter(path, **writer_kwargs(LAYERS, D)) as w:
        w.add([0, 1], {"model": make_batch([0, 1], LAYERS, D, seed=1)})
        bad = make_batch([7, 8, 9], LAYERS, D, seed=1)
        row = int((bad.seq_index == 1).nonzero()[1])  # second token of prompt 8
        bad.acts[2][row, 3] = float("inf")
        with pytest.raises(NonFiniteActivationError, match=r"layer blocks\.2 .*prompt id 8 position 1"):
            w.add([7, 8, 9], {"model": bad})
        w.add([7], {"model": make_batch([7], LAYERS, D, seed=1)})  # the failed batch left no trace
    assert ActivationStore.open(path).prompt_ids() == [0, 1, 7]


def test_paired_batches_with_different_token_counts_are_refused(tmp_path: Path) -> None:
    kw = writer_kwargs(LAYERS, D, sides=("base", "finetuned"))
    with ActivationStoreWriter(tmp_path / "s", **kw) as w:
        a = make_batch([0, 1], LAYERS, D, seed=1)
        b = make_batch([0, 1], LAYERS, D, seed=1, min_len=10, max_len=12)
        with pytest.raises(StoreError, match="misaligned"):
            w.add([0, 1], {"base": a, "finetuned": b})


def test_background_write_error_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import difflib_models.store.writer as writer_mod

    def boom(path: object, write: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writer_mod, "atomic_write", boom)
    w = ActivationStoreWriter(tmp_path / "s", shard_tokens=1, **writer_kwargs(LAYERS, D))
    with pytest.raises(StoreError, match="disk full"):
        for ids in batches_for(40, 2):
            w.add(ids, {"model": make_batch(ids, LAYERS, D, seed=1)})
        w.close()
    assert not ActivationStore.open(tmp_path / "s").complete


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shard_tokens"):
        ActivationStoreWriter(tmp_path / "a", shard_tokens=0, **writer_kwargs(LAYERS, D))
    with pytest.raises(ConfigError, match="dtype"):
        ActivationStoreWriter(tmp_path / "b", dtype="int8", **writer_kwargs(LAYERS, D))
    with pytest.raises(ConfigError, match="identities"):
        ActivationStoreWriter(tmp_path / "c", **writer_kwargs(LAYERS, D, identities={}))
    with ActivationStoreWriter(tmp_path / "d", **writer_kwargs(LAYERS, D)) as w:
        with pytest.raises(ConfigError, match="batches"):
            w.add([0], {"base": make_batch([0], LAYERS, D, seed=1)})


def test_huge_finite_values_are_stored_and_counted_in_float64(tmp_path: Path) -> None:
    b = make_batch([0], LAYERS, D, seed=1)
    b.acts[0][0, 0] = 1e20  # its square overflows float32
    with ActivationStoreWriter(tmp_path / "s", **writer_kwargs(LAYERS, D)) as w:
        w.add([0], {"model": b})
    store = ActivationStore.open(tmp_path / "s")
    expected = (D / b.acts[0].double().pow(2).sum(1).mean()).sqrt().item()
    assert store.norm_scale("model", 0) == pytest.approx(expected, rel=1e-9)
    assert next(store.iter_batches(100))["acts"][0, 0, 0, 0].item() == pytest.approx(1e20)


def test_max_shard_bytes_caps_shard_size(tmp_path: Path) -> None:
    row_bytes = 2 * D * 4  # two layers of float32
    with ActivationStoreWriter(
        tmp_path / "s", shard_tokens=10_000, max_shard_bytes=25 * row_bytes, **writer_kwargs(LAYERS, D)
    ) as w:
        assert w.shard_tokens == 25
        for ids in batches_for(20, 2):
            w.add(ids, {"model": make_batch(ids, LAYERS, D, seed=1)})
    shards = ActivationStore.open(tmp_path / "s").manifest.shards
    assert len(shards) > 3 and all(s.n_tokens <= 25 for s in shards)


def test_resume_refuses_a_store_with_a_missing_shard(tmp_path: Path) -> None:
    from difflib_models.errors import CorruptStoreError

    _write(tmp_path / "s", n_prompts=12)
    (tmp_path / "s" / "shards" / "shard-00001.safetensors").unlink()
    with pytest.raises(CorruptStoreError, match=r"shard-00001\.safetensors is missing.*HINT"):
        ActivationStoreWriter(tmp_path / "s", shard_tokens=40, **writer_kwargs(LAYERS, D))


def test_leftovers_of_a_writer_killed_before_its_first_manifest_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s"
    (path / "shards").mkdir(parents=True)
    (path / ".manifest.json.x1y2.tmp").write_text("{")
    with ActivationStoreWriter(path, **writer_kwargs(LAYERS, D)) as w:
        w.add([0], {"model": make_batch([0], LAYERS, D, seed=1)})
    assert not list(path.glob("*.tmp"))
    assert ActivationStore.open(path).prompt_ids() == [0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_write_safetensors_is_read_by_the_safetensors_library(tmp_path: Path, dtype: torch.dtype) -> None:
    import hashlib

    from safetensors import safe_open
    from safetensors.torch import load_file

    from difflib_models.store.writer import write_safetensors

    tensors = {
        "a": (torch.randn(5, 3) * 100).to(dtype),
        "b": torch.arange(7),
        "empty": torch.zeros(0, 3).to(dtype),
        "c": torch.randn(2, 2, 2).to(dtype),
    }
    pieces = [torch.randn(3, 4).to(dtype), torch.zeros(0, 4).to(dtype), torch.randn(2, 4).to(dtype)]
    digest, size = write_safetensors(tmp_path / "x.safetensors", {**tensors, "pieces": pieces}, {"k": "v", "n": "3"})
    tensors["pieces"] = torch.cat(pieces)
    data = (tmp_path / "x.safetensors").read_bytes()
    assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    back = load_file(tmp_path / "x.safetensors")
    assert set(back) == set(tensors)
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k], t)
    with safe_open(str(tmp_path / "x.safetensors"), framework="pt") as fh:
        assert fh.metadata() == {"k": "v", "n": "3"}


_WRITE_ONE = """
import sys, torch
from pathlib import Path
from difflib_models.store.writer import write_safetensors
torch.manual_seed(0)
pieces = [torch.randn(3, 4), torch.randn(2, 4)]
meta = {"format": "difflib_models.store", "n_tokens": "5", "b": "x", "a": "1,2"}
print(write_safetensors(Path(sys.argv[1]), {"acts.base.1": pieces, "prompt_id": torch.arange(5)}, meta)[0])
"""


def test_shards_are_byte_identical_across_processes(tmp_path: Path) -> None:
    """The bytes of a shard do not depend on the process (string-hash seed): a killed and resumed capture rewrites
    identical shards."""
    import os
    import subprocess
    import sys

    digests = set()
    for seed in ("1", "2", "3"):  # different string-hash seeds, as separate processes get
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _WRITE_ONE, str(tmp_path / f"{seed}.safetensors")], env=env,
                             check=True, capture_output=True, text=True).stdout.strip()
        digests.add(out)
    assert len(digests) == 1
    first = (tmp_path / "1.safetensors").read_bytes()
    assert all((tmp_path / f"{s}.safetensors").read_bytes() == first for s in ("2", "3"))
