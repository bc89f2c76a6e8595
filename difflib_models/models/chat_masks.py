"""Which tokens of a chat conversation are the assistant's: the loss mask of supervised fine-tuning.

:func:`assistant_tokens` returns the conversation's token ids and a 0/1 mask that is 1 on every assistant turn.

- Templates that mark the assistant's text with ``{% generation %} ... {% endgeneration %}`` go through
  transformers: ``tokenizer.apply_chat_template(..., tokenize=True, return_dict=True,
  return_assistant_tokens_mask=True)`` (a fast tokenizer is needed: the mask is mapped through token offsets).
- Other templates (SmolLM2's, most ChatML ones) fall back to prefix rendering: assistant message j spans the
  characters from the end of ``render(messages[:j], add_generation_prompt=True)`` to the end of
  ``render(messages[:j + 1])``, i.e. the whole assistant turn the template writes (its text and its end-of-turn
  markup, which the model must learn to emit); a token is the assistant's when its offsets overlap such a span
  (transformers' rule, so a token merged across the boundary counts). A template whose generation block wraps
  the same text gives the same mask (tests/models/test_chat_masks.py). Slow tokenizers (no offsets) count the
  tokens of the rendered prefixes instead.

Open-ended responses (persona extraction, filtering: a response teacher-forced after the generation prompt, with no
end-of-turn) keep :func:`difflib_models.persona.traits.chat.encode_prompt_response`: transformers' assistant mask cannot
be combined with ``continue_final_message``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from difflib_models.errors import ConfigError, bad_value

__all__ = ["assistant_tokens", "has_generation_block"]

_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_block(tokenizer: Any) -> bool:
    """True when the tokenizer's chat template marks assistant text with ``{% generation %}`` and the tokenizer
    has token offsets (a fast tokenizer), so ``return_assistant_tokens_mask`` works."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, Mapping):  # named templates: the default one is used
        template = template.get("default")
    return (isinstance(template, str) and bool(_GENERATION.search(template))
            and bool(getattr(tokenizer, "is_fast", False)))


def _render(tokenizer: Any, messages: Sequence[Mapping[str, Any]], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    return text if isinstance(text, str) else "".join(text)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def assistant_tokens(tokenizer: Any, messages: Sequence[Mapping[str, Any]], *,
                     use_template_mask: bool | None = None) -> tuple[list[int], list[int]]:
    """``(ids, mask)`` of a conversation rendered by the tokenizer's chat template; ``mask[i]`` is 1 where token i
    belongs to an assistant turn. ``use_template_mask`` None picks transformers' mask when the template has a
    ``{% generation %}`` block (:func:`has_generation_block`); False forces the prefix-rendering fallback."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(bad_value("tokenizer.chat_template", None, "a tokenizer with a chat template",
                                    "Pass plain texts for base models without a chat template."))
    messages = list(messages)
    if not any(m.get("role") == "assistant" for m in messages):
        raise ConfigError(bad_value("messages", [m.get("role") for m in messages], "at least one assistant turn"))
    if use_template_mask is None:
        use_template_mask = has_generation_block(tokenizer)
    if use_template_mask:
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        return list(out["input_ids"]), [int(x) for x in out["assistant_masks"]]
    text = _render(tokenizer, messages, False)
    spans = []  # character spans of the assistant turns in ``text``
    for j, m in enumerate(messages):
        if m.get("role") == "assistant":
            start = len(_render(tokenizer, messages[:j], True)) if j else 0
            spans.append((start, len(_render(tokenizer, messages[:j + 1], False))))
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False)
        offsets = enc.encodings[0].offsets
        # transformers' rule: a token that overlaps an assistant span is the assistant's
        mask = [int(any(b > s0 and a < s1 for s0, s1 in spans)) for a, b in offsets]
        return list(enc["input_ids"]), mask
    ids = _ids(tokenizer, text)  # slow tokenizer (no offsets): token counts of the rendered prefixes
    mask = [0] * len(ids)
    for s0, s1 in spans:
        a, b = len(_ids(tokenizer, text[:s0])) if s0 else 0, min(len(_ids(tokenizer, text[:s1])), len(ids))
        mask[a:b] = [1] * max(0, b - a)
    return ids, mask
