"""Assistant-token masks: transformers' ``return_assistant_tokens_mask`` ({% generation %} templates) and the
prefix-rendering fallback give the same mask."""

from __future__ import annotations

import pytest

from difflib_models.errors import ConfigError
from difflib_models.models.chat_masks import assistant_tokens, has_generation_block

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# the same text, with the assistant turn's body (text and end-of-turn) in a generation block
CHATML_GENERATION = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ m['content'] + '<|im_end|>\n' }}{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Once upon a time there was a cat."},
    {"role": "assistant", "content": "The cat ran home."},
    {"role": "user", "content": "And then?"},
    {"role": "assistant", "content": "It slept by the fire all night."},
]


@pytest.fixture()
def tok(tinystories_656k):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tinystories_656k)


def test_generation_template_and_fallback_give_the_same_mask(tok) -> None:
    tok.chat_template = CHATML_GENERATION
    assert has_generation_block(tok)
    lib_ids, lib_mask = assistant_tokens(tok, CONVERSATION)  # transformers' assistant mask
    by_hand = assistant_tokens(tok, CONVERSATION, use_template_mask=False)
    tok.chat_template = CHATML
    assert not has_generation_block(tok)
    plain = assistant_tokens(tok, CONVERSATION)  # no generation block: the fallback
    assert (lib_ids, lib_mask) == by_hand == plain
    text = tok.decode([t for t, m in zip(lib_ids, lib_mask, strict=True) if m])
    # the assistant turns; this tokenizer merges "\n" before them into their first token, which therefore counts
    assert text.replace("\n", "") == "The cat ran home.<|im_end|>It slept by the fire all night.<|im_end|>"
    assert sum(lib_mask) < len(lib_mask) and lib_mask[0] == 0


def test_fallback_marks_the_turn_after_the_generation_prompt(tok) -> None:
    tok.chat_template = CHATML
    msgs = CONVERSATION[1:3]
    ids, mask = assistant_tokens(tok, msgs)
    prompt = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(msgs, tokenize=False)
    offsets = tok(full, add_special_tokens=False).encodings[0].offsets
    first = next(i for i, (a, b) in enumerate(offsets) if b > len(prompt))  # the token where the answer starts
    assert mask == [0] * first + [1] * (len(ids) - first)  # from there to the end of the turn
    assert 0 < first < len(ids) - 3


def test_errors_name_the_problem(tok) -> None:
    tok.chat_template = None
    with pytest.raises(ConfigError, match="chat_template"):
        assistant_tokens(tok, CONVERSATION)
    tok.chat_template = CHATML
    with pytest.raises(ConfigError, match="assistant"):
        assistant_tokens(tok, CONVERSATION[:2])
