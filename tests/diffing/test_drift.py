from __future__ import annotations

import pytest
import torch

from difflib_models.diffing.drift import drift_from_store, drift_from_tensors, next_token_kl
from difflib_models.diffing.harvest import harvest_paired
from difflib_models.diffing.pair import ModelPair
from tests.diffing._helpers import SENTENCES, planted_pair


def test_identical_models_have_no_drift(tmp_path) -> None:
    base, _, _ = planted_pair()
    pair = ModelPair(base, base)
    store = harvest_paired(pair, SENTENCES, [0, 2], tmp_path / "s")
    for d in drift_from_store(store):
        assert d.mean_diff_norm == 0.0 and d.relative_mse == 0.0
        assert d.mean_cosine == pytest.approx(1.0, abs=1e-9)
        assert d.cka == pytest.approx(1.0, abs=1e-9)
    kl = next_token_kl(pair, SENTENCES)
    assert kl["mean"] == 0.0 and kl["max"] == 0.0


def test_planted_offset_shows_in_layer_drift_and_kl(tmp_path) -> None:
    base, ft, offset = planted_pair(layer=1, scale=3.0)
    pair = ModelPair(base, ft)
    store = harvest_paired(pair, SENTENCES, [0, 1], tmp_path / "s")
    d0, d1 = drift_from_store(store)
    assert d0.mean_diff_norm == 0.0
    assert d1.mean_diff_norm == pytest.approx(float(offset.norm()), rel=1e-5)
    assert d1.cka == pytest.approx(1.0, abs=1e-6)  # a constant offset is removed by centring
    assert d1.mean_cosine < 0.999
    kl = next_token_kl(pair, SENTENCES, buckets=(0, 4))
    assert kl["mean"] > 1e-3 and kl["n_tokens"] == sum(len(s.split()) + 1 for s in SENTENCES)
    assert set(kl["by_position_bucket"]) == {"0-3", "4+"}
    assert kl["top"][0]["kl"] == pytest.approx(kl["max"])
    assert kl["top"][0]["context"].endswith(kl["top"][0]["token"])


def test_cka_known_answers() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=gen)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
    assert drift_from_tensors(x, 2.0 * x @ q + 5.0).cka == pytest.approx(1.0, abs=1e-9)
    unrelated = drift_from_tensors(x, torch.randn(500, 16, generator=gen))
    assert unrelated.cka < 0.1
    assert unrelated.mean_cosine == pytest.approx(0.0, abs=0.05)
    scaled = drift_from_tensors(x, 3.0 * x)
    assert scaled.mean_cosine == pytest.approx(1.0) and scaled.relative_mse == pytest.approx(4.0)


def test_kl_does_not_depend_on_padding_or_batching() -> None:
    base, ft, _ = planted_pair(layer=0, scale=2.0)
    pair = ModelPair(base, ft)
    texts = [SENTENCES[0], "the cat", SENTENCES[2] + " and the dog ran home", "sun"]
    batched = next_token_kl(pair, texts, batch_size=4, top_n=3)
    singles = [next_token_kl(pair, [t], batch_size=1) for t in texts]
    n = sum(s["n_tokens"] for s in singles)
    assert batched["n_tokens"] == n
    assert batched["mean"] == pytest.approx(sum(s["mean"] * s["n_tokens"] for s in singles) / n, rel=1e-5)
    assert batched["max"] == pytest.approx(max(s["max"] for s in singles), rel=1e-5)
