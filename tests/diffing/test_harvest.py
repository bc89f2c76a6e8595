from __future__ import annotations

import copy

import pytest
import torch

import difflib_models.diffing.harvest as harvest_mod
from difflib_models.diffing.harvest import harvest_paired, paired_acts
from difflib_models.diffing.pair import ModelPair
from difflib_models.errors import ConfigError, StoreError
from difflib_models.models.loading import from_pretrained_objects
from tests.diffing._helpers import SENTENCES, make_word_tokenizer, planted_pair, tiny_llama


def _n_real(tok, texts) -> int:
    return sum(len(ids) - 1 for ids in tok(texts)["input_ids"])  # BOS skipped


def test_two_model_harvest_is_aligned_and_exact(tmp_path) -> None:
    base, ft, offset = planted_pair(layer=1)
    store = harvest_paired(ModelPair(base, ft), SENTENCES, [0, 1, 2], tmp_path / "s", batch_size=3)
    assert store.sides == ["base", "finetuned"] and store.layers == [0, 1, 2] and store.complete
    assert store.n_tokens == _n_real(base.tokenizer, SENTENCES)
    b0, f0, idx = paired_acts(store, 0)
    assert torch.equal(b0, f0)  # the planted change is after block 0
    b1, f1, _ = paired_acts(store, 1)
    torch.testing.assert_close(f1 - b1, offset.expand_as(b1), atol=1e-5, rtol=0)
    # base side equals HF hidden_states[i + 1] on the real (non-BOS) tokens
    enc = base.tokenizer(SENTENCES[0], return_tensors="pt")
    with torch.no_grad():
        hs = base.model(**enc, output_hidden_states=True).hidden_states
    rows = idx["prompt_id"] == 0
    torch.testing.assert_close(b0[rows], hs[1][0, 1:], atol=1e-5, rtol=1e-5)
    assert idx["token_ids"][rows].tolist() == enc["input_ids"][0, 1:].tolist()
    ident = store.manifest.identities
    assert ident["base"]["weight_hash"] != ident["finetuned"]["weight_hash"]


def test_adapter_pair_uses_disable_adapter(tmp_path) -> None:
    from tests.helpers.tiny_models import make_tiny_lora

    tok = make_word_tokenizer()
    peft_model = make_tiny_lora(vocab_size=len(tok))
    loaded = from_pretrained_objects(peft_model, tok, name="tiny-lora")
    pair = ModelPair.from_adapter(loaded)
    assert pair.mode == "adapter"
    ids = pair.identities()
    assert ids["base"]["adapter_hash"] is None and ids["finetuned"]["adapter_hash"]
    store = harvest_paired(pair, SENTENCES[:4], "all", tmp_path / "s")
    base_acts, ft_acts, idx = paired_acts(store, 1)
    enc = tok(SENTENCES[0], return_tensors="pt")
    with torch.no_grad(), peft_model.disable_adapter():
        hs_base = peft_model(**enc, output_hidden_states=True).hidden_states[2][0, 1:]
    with torch.no_grad():
        hs_ft = peft_model(**enc, output_hidden_states=True).hidden_states[2][0, 1:]
    rows = idx["prompt_id"] == 0
    torch.testing.assert_close(base_acts[rows], hs_base, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ft_acts[rows], hs_ft, atol=1e-5, rtol=1e-5)
    assert (ft_acts - base_acts).abs().max() > 1e-3


def test_harvest_resumes_after_a_crash(tmp_path, monkeypatch) -> None:
    base, ft, _ = planted_pair()
    pair = ModelPair(base, ft)
    ref = harvest_paired(pair, SENTENCES, [1], tmp_path / "ref", batch_size=2, shard_tokens=8)
    real = harvest_mod.capture_batch
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # base side of the 4th batch
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(harvest_mod, "capture_batch", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        harvest_paired(pair, SENTENCES, [1], tmp_path / "s", batch_size=2, shard_tokens=8)
    monkeypatch.setattr(harvest_mod, "capture_batch", real)
    store = harvest_paired(pair, SENTENCES, [1], tmp_path / "s", batch_size=2, shard_tokens=8)
    assert store.complete and store.n_tokens == ref.n_tokens
    got, want = store.token_table(), ref.token_table()
    order_g = torch.argsort(got["prompt_id"] * 1000 + got["pos_index"])
    order_w = torch.argsort(want["prompt_id"] * 1000 + want["pos_index"])
    assert torch.equal(got["token_ids"][order_g], want["token_ids"][order_w])
    # a second run over a complete store adds nothing
    again = harvest_paired(pair, SENTENCES, [1], tmp_path / "s", batch_size=2, shard_tokens=8)
    assert again.n_tokens == ref.n_tokens
    # other texts into the same store are refused
    with pytest.raises(ConfigError):
        harvest_paired(pair, SENTENCES[:3], [1], tmp_path / "s")


def test_different_tokenizer_or_width_is_config_error() -> None:
    tok = make_word_tokenizer()
    base = from_pretrained_objects(tiny_llama(), tok, name="b")
    other_tok = make_word_tokenizer()
    other_tok.add_tokens(["zebra"])
    with pytest.raises(ConfigError, match="tokenizer"):
        ModelPair(base, from_pretrained_objects(tiny_llama(), other_tok, name="f"))
    wide = tiny_llama(hidden_size=48, head_dim=12)
    with pytest.raises(ConfigError, match="hidden"):
        ModelPair(base, from_pretrained_objects(wide, make_word_tokenizer(), name="f"))
    with pytest.raises(ConfigError, match="finetuned"):
        ModelPair(base, None)


def test_misaligned_paired_store_is_refused(tmp_path) -> None:
    from difflib_models.store.batch import CaptureBatch
    from difflib_models.store.reader import ActivationStore
    from difflib_models.store.writer import ActivationStoreWriter

    def batch(ids):
        n = len(ids)
        return CaptureBatch(acts={0: torch.randn(n, 4)}, token_ids=torch.tensor(ids),
                            seq_index=torch.zeros(n, dtype=torch.long), pos_index=torch.arange(n))

    with ActivationStoreWriter(tmp_path / "s", sides=["base", "finetuned"], layers=[0], d_model=4,
                               identities={"base": {}, "finetuned": {}}, tokenizer_name="t", vocab_hash="h",
                               hook_points={}) as w:
        w.add([0], {"base": batch([5, 6, 7]), "finetuned": batch([5, 9, 7])})
    with pytest.raises(StoreError, match="misaligned"):
        ActivationStore.open(tmp_path / "s").check_alignment()


def test_pair_identity_and_sides_are_checked() -> None:
    base, ft, _ = planted_pair()
    pair = ModelPair(base, copy.copy(ft))
    with pytest.raises(ConfigError, match="side"):
        with pair.side("middle"):
            pass
