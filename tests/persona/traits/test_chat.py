"""Token conventions: prompt/response split (prefix assertion), last-token reads under left and right padding."""

from __future__ import annotations

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.traits import chat
from tests.helpers.tiny_models import make_tiny

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tok(tinystories_656k):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tinystories_656k)
    t.chat_template = CHATML
    return t


@pytest.fixture(scope="module")
def plain_tok(tinystories_656k):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tinystories_656k)
    t.chat_template = None
    return t


def test_render_prompt_uses_template_and_system(tok):
    text = chat.render_prompt(tok, "Hi there", system="Be evil.")
    assert text == "<|im_start|>system\nBe evil.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    assert "system" not in chat.render_prompt(tok, "Hi there")


def test_fallback_template_without_chat_template(plain_tok):
    assert chat.render_prompt(plain_tok, "Hi", system="S") == "System: S\nUser: Hi\nAssistant:"
    enc = chat.encode_prompt(plain_tok, "Hi")
    assert enc.ids[0] == plain_tok.bos_token_id  # base models get their BOS


def test_prompt_response_split_is_exact(tok):
    enc = chat.encode_prompt_response(tok, "Is the sky blue?", "Yes, it is.")
    prompt = chat.encode_prompt(tok, "Is the sky blue?")
    assert enc.ids[: enc.prompt_len] == prompt.ids  # prefix assertion
    assert tok.decode(enc.ids[enc.prompt_len :]) == "Yes, it is."
    assert enc.response_len == len(enc.ids) - len(prompt.ids)
    assert not enc.merged_boundary


def test_boundary_merge_detected(plain_tok):
    # the fallback prompt ends with "Assistant:"; this tokenizer merges ": A" differently from ":" + " A"
    prompt = chat.encode_prompt(plain_tok, "Q")
    full_ids = plain_tok("User: Q\nAssistant: A")["input_ids"]
    assert full_ids[: prompt.prompt_len] != prompt.ids
    with pytest.raises(ConfigError, match="prefix"):
        chat.encode_prompt_response(plain_tok, "Q", " A", strict=True)
    enc = chat.encode_prompt_response(plain_tok, "Q", " A")
    assert enc.merged_boundary and enc.ids[: enc.prompt_len] == prompt.ids
    assert plain_tok.decode(enc.ids[enc.prompt_len :]).strip() == "A"


def test_empty_inputs_rejected(tok):
    with pytest.raises(ConfigError, match="user"):
        chat.render_prompt(tok, "  ")
    with pytest.raises(ConfigError, match="response"):
        chat.encode_prompt_response(tok, "Q", "")


def test_answer_token_ids_first_differing_token(tok):
    ctx, a, b = chat.answer_token_ids(tok, "Pick one\n (A) x\n (B) y", "(A)", "(B)")
    assert a != b
    full_a = chat.encode_prompt_response(tok, "Pick one\n (A) x\n (B) y", "(A)")
    assert full_a.ids[: len(ctx.ids)] == ctx.ids and full_a.ids[len(ctx.ids)] == a
    assert tok.decode([a]).strip() == "A" and tok.decode([b]).strip() == "B"


def test_index_helpers_left_and_right_padding():
    seqs = [[5, 6, 7, 8, 9], [5, 6, 7]]
    prompt_lens = [3, 2]
    for side in ("left", "right"):
        ids, mask = chat.pad_batch(seqs, pad_token_id=0, padding_side=side)
        last = chat.last_token_index(mask)
        assert ids[0, last[0]] == 9 and ids[1, last[1]] == 7
        pl = chat.prompt_last_index(mask, prompt_lens)
        assert ids[0, pl[0]] == 7 and ids[1, pl[1]] == 6
        rm = chat.response_mask(mask, prompt_lens)
        assert ids[0][rm[0]].tolist() == [8, 9] and ids[1][rm[1]].tolist() == [7]
    _, mask = chat.pad_batch(seqs, pad_token_id=0, padding_side="left")
    assert chat.last_token_index(mask).tolist() == [4, 4]
    _, mask = chat.pad_batch(seqs, pad_token_id=0, padding_side="right")
    assert chat.last_token_index(mask).tolist() == [4, 2]
    with pytest.raises(ConfigError):
        chat.pad_batch(seqs, pad_token_id=0, padding_side="middle")


def test_last_token_hidden_state_independent_of_padding():
    model = make_tiny("llama")
    seqs = [[1, 10, 11, 12, 13, 14, 15], [1, 20, 21], [1, 30, 31, 32, 33]]
    with torch.no_grad():
        ref = [model(torch.tensor([s]), output_hidden_states=True).hidden_states[2][0, -1] for s in seqs]
        for side in ("left", "right"):
            ids, mask = chat.pad_batch(seqs, pad_token_id=0, padding_side=side)
            out = model(ids, attention_mask=mask, position_ids=chat.position_ids(mask), output_hidden_states=True)
            idx = chat.last_token_index(mask)
            got = out.hidden_states[2][torch.arange(len(seqs)), idx]
            for r, g in zip(ref, got, strict=True):
                torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)
