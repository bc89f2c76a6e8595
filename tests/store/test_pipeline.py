"""snapshot(): real TinyStories-656K activations into a store, read back against direct forwards; resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.store import ActivationStore


@pytest.fixture(scope="module")
def loaded(tinystories_656k: Path):
    from difflib_models.models.loading import load_model

    return load_model(tinystories_656k)


@pytest.fixture(scope="module")
def texts(tinystories_text: Path) -> list[str]:
    lines = [ln.strip() for ln in tinystories_text.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines[:24]


def _direct(loaded, text: str, max_length: int) -> dict[int, torch.Tensor]:
    """Block outputs of one unpadded prompt: layer 0 from hidden_states[1], the last block through a hook."""
    enc = loaded.tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    last = loaded.model.model.layers[-1]
    seen: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            out = loaded.model(**enc, output_hidden_states=True)
    finally:
        handle.remove()
    return {0: out.hidden_states[1][0], 1: seen[0][0], "ids": enc["input_ids"][0]}


def test_snapshot_round_trip_matches_direct_forward(loaded, texts: list[str], tmp_path: Path) -> None:
    from difflib_models.capture.pipeline import snapshot

    store = snapshot(loaded, texts, "0,1", tmp_path / "s", batch_size=5, max_length=48, shard_tokens=300)
    assert store.complete and store.layers == [0, 1] and store.d_model == 128
    assert store.prompt_ids() == list(range(len(texts)))
    assert store.n_shards >= 3
    m = store.manifest
    assert m.identities["model"]["weight_hash"] == loaded.identity.weight_hash
    assert m.hook_points == loaded.hook_points.to_dict()
    assert m.extra["capture"]["max_length"] == 48
    store.check_compatible(loaded)
    batches = list(store.iter_batches(97))
    acts = torch.cat([b["acts"] for b in batches])[:, 0]
    pid = torch.cat([b["prompt_id"] for b in batches])
    pos = torch.cat([b["pos_index"] for b in batches])
    tok = torch.cat([b["token_ids"] for b in batches])
    n_expected = 0
    for p in (0, 7, 23):
        ref = _direct(loaded, texts[p], 48)
        rows = (pid == p).nonzero().flatten()
        # BOS skipped: positions 1..L-1 of the unpadded prompt, in order
        assert pos[rows].tolist() == list(range(1, len(ref["ids"])))
        assert torch.equal(tok[rows], ref["ids"][1:])
        for j in (0, 1):
            torch.testing.assert_close(
                acts[rows, j], ref[j][1:], atol=1e-4, rtol=1e-4
            )  # batched vs unpadded matmuls
    for p in range(len(texts)):
        n_expected += len(loaded.tokenizer(texts[p], truncation=True, max_length=48)["input_ids"]) - 1
    assert store.n_tokens == n_expected


def test_snapshot_resumes_after_interruption(loaded, texts: list[str], tmp_path: Path, monkeypatch) -> None:
    import difflib_models.capture.pipeline as pipeline

    kw = {"batch_size": 4, "max_length": 32, "shard_tokens": 100}
    ref = pipeline.snapshot(loaded, texts, [1], tmp_path / "ref", **kw)

    def interrupted(iterable, **_: object):
        for k, item in enumerate(iterable):
            if k == 4:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(pipeline, "progress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.snapshot(loaded, texts, [1], tmp_path / "s", **kw)
    partial = ActivationStore.open(tmp_path / "s")
    assert not partial.complete and partial.prompt_ids() == list(range(16))
    monkeypatch.undo()
    store = pipeline.snapshot(loaded, texts, [1], tmp_path / "s", **kw)
    assert store.complete and store.prompt_ids() == list(range(len(texts)))
    a, b = store.token_table(), ref.token_table()
    for key in ("token_ids", "prompt_id", "pos_index"):
        assert torch.equal(a[key], b[key])
    torch.testing.assert_close(
        torch.cat([x["acts"] for x in store.iter_batches(4096)]),
        torch.cat([x["acts"] for x in ref.iter_batches(4096)]),
        atol=1e-6,
        rtol=1e-6,
    )
    # other prompts or other capture settings into the same store are refused
    with pytest.raises(ConfigError, match="extra"):
        pipeline.snapshot(loaded, texts[:-1], [1], tmp_path / "s", **kw)
    with pytest.raises(ConfigError, match="layers"):
        pipeline.snapshot(loaded, texts, [0], tmp_path / "s", **kw)


def test_store_refuses_a_model_with_another_vocabulary(
    loaded, texts, tmp_path: Path, stories260k: Path
) -> None:
    from difflib_models.capture.pipeline import snapshot
    from difflib_models.errors import IncompatibleStoreError
    from difflib_models.models.loading import load_model

    store = snapshot(loaded, texts[:2], [0], tmp_path / "s", max_length=16)
    other = load_model(stories260k)
    with pytest.raises(IncompatibleStoreError, match=r"vocab hash .*HINT"):
        store.check_compatible(other)


def test_snapshot_bad_input(loaded, texts: list[str], tmp_path: Path) -> None:
    from difflib_models.capture.pipeline import snapshot

    with pytest.raises(ConfigError, match="at least one prompt"):
        snapshot(loaded, [], [0], tmp_path / "a")
    with pytest.raises(ConfigError, match=r"layers=5.*\[0, 1\]"):
        snapshot(loaded, texts, [5], tmp_path / "b")
    assert not (tmp_path / "b").exists()
