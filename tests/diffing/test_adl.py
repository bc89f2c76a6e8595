from __future__ import annotations

import pytest
import torch

from difflib_models.diffing.adl import (
    activation_difference_lens,
    add_to_residual,
    adl_vector,
    first_k_mask,
    logit_lens,
)
from difflib_models.diffing.harvest import harvest_paired
from difflib_models.diffing.pair import ModelPair
from difflib_models.errors import ConfigError
from tests.diffing._helpers import SENTENCES, planted_pair


def test_adl_recovers_planted_offset_and_reads_its_token() -> None:
    base, ft, offset = planted_pair(layer=1, token="cake")
    pair = ModelPair(base, ft)
    res = activation_difference_lens(pair, SENTENCES, layer=1, k=5, top_n=5)
    cos = torch.nn.functional.cosine_similarity(res.vector, offset, dim=0)
    assert cos > 0.999
    assert res.norm == pytest.approx(float(offset.norm()), rel=1e-4)
    assert res.top_tokens[0]["token"] == "cake"
    assert res.n_tokens == sum(min(5, len(s.split())) for s in SENTENCES)
    d = res.to_dict()
    assert d["top_tokens"][0]["token"] == "cake" and "vector" not in d


def test_adl_from_store_equals_adl_from_models(tmp_path) -> None:
    base, ft, offset = planted_pair(layer=2, token="moon")
    pair = ModelPair(base, ft)
    # layer 1 is before the plant: zero; layer 2 carries it
    store = harvest_paired(pair, SENTENCES, [1, 2], tmp_path / "s")
    from_store = activation_difference_lens(pair, layer=2, k=3, store=store)
    from_models = activation_difference_lens(pair, SENTENCES, layer=2, k=3)
    torch.testing.assert_close(from_store.vector, from_models.vector, atol=1e-5, rtol=1e-5)
    assert from_store.n_tokens == from_models.n_tokens
    assert from_store.top_tokens[0]["token"] == "moon"
    before = activation_difference_lens(pair, layer=1, k=3, store=store)
    assert before.norm == 0.0


def test_identical_models_give_zero_vector() -> None:
    base, _, _ = planted_pair()
    vec, n, rms = adl_vector(ModelPair(base, base), SENTENCES, layer=2, k=5)
    assert n > 0 and rms > 0 and float(vec.abs().max()) == 0.0


def test_steering_base_with_adl_vector_reproduces_finetune() -> None:
    base, ft, _ = planted_pair(layer=1)
    res = activation_difference_lens(ModelPair(base, ft), SENTENCES, layer=1, k=5)
    enc = base.tokenizer(SENTENCES[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        want = ft.model(**enc).logits
        plain = base.model(**enc).logits
        with add_to_residual(base.model, 1, res.vector):
            steered = base.model(**enc).logits
        after = base.model(**enc).logits
    torch.testing.assert_close(steered, want, atol=1e-4, rtol=1e-4)
    assert (plain - want).abs().max() > 1e-2
    torch.testing.assert_close(after, plain)  # hook removed


def test_logit_lens_bottom_tokens_of_negated_direction() -> None:
    base, _, offset = planted_pair(token="tree")
    top, bottom = logit_lens(base.model, -offset, base.tokenizer, top_n=3)
    assert bottom[0]["token"] == "tree"
    assert top[0]["logit"] >= top[1]["logit"] >= top[2]["logit"]


def test_first_k_mask_counts_from_each_prompts_first_position() -> None:
    pid = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    pos = torch.tensor([1, 2, 3, 1, 2, 3, 4])
    assert first_k_mask(pid, pos, 2).tolist() == [True, True, False, True, True, False, False]


def test_bad_k() -> None:
    base, ft, _ = planted_pair()
    with pytest.raises(ConfigError, match="k="):
        adl_vector(ModelPair(base, ft), SENTENCES, layer=1, k=0)
    with pytest.raises(ConfigError, match="layer"):
        adl_vector(ModelPair(base, ft), SENTENCES, layer=7, k=3)
