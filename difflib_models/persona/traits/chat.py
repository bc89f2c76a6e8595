"""Chat-template helpers shared by persona extraction, validation, steering and filtering.

Everything here works on token ids, because the conventions that matter (which token is "the last prompt token",
where the response starts) are token conventions:

- :func:`render_prompt` renders ``[system?, user]`` with the tokenizer's chat template and the generation prompt
  (the text that opens the assistant turn). Tokenizers without a chat template get a plain documented fallback.
- :func:`encode_prompt_response` teacher-forces a response after a rendered prompt and checks the *prefix
  assertion*: the prompt's token ids must be a prefix of the ids of prompt + response, so the split point is exact.
  When the tokenizer merges tokens across the boundary, the ids are built by concatenation instead (the prompt
  tokens stay exactly what the model sees at generation time) and ``merged_boundary`` is set. The response is open
  (no end-of-turn after it), so transformers' ``return_assistant_tokens_mask`` (which needs a finished assistant
  turn and refuses ``continue_final_message``) does not apply; for training masks over finished turns see
  :mod:`difflib_models.models.chat_masks`.
- ``pad_batch`` (re-exported from :mod:`difflib_models.models.batching`) pads id lists left or right; :func:`last_token_index` finds the last real token of every row
  under either padding side; :func:`response_mask` marks response tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.hooks import reader as hooks_reader
from difflib_models.models.batching import pad_batch as pad_batch

log = logging.getLogger(__name__)

FALLBACK_TEMPLATE = "{system}User: {user}\nAssistant:"
"""Used when a tokenizer has no chat template (base models): ``System: ...\\n`` + ``User: ...\\nAssistant:``."""


@dataclass(frozen=True)
class EncodedPair:
    """A prompt (and optional teacher-forced response) as token ids.

    ``ids[:prompt_len]`` are the prompt tokens; ``ids[prompt_len:]`` the response tokens. The last prompt token
    (the token before the response, where the model decides how to answer) is ``ids[prompt_len - 1]``.
    """

    ids: list[int]
    prompt_len: int
    merged_boundary: bool = False

    @property
    def response_len(self) -> int:
        return len(self.ids) - self.prompt_len


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, user: str, *, system: str | None = None) -> str:
    """Render one user turn (with an optional system prompt) up to and including the assistant header.

    ``system=None`` means *no* system message. Some templates (SmolLM2, Qwen) then insert their own default system
    prompt; that is what the model sees in deployment, so it is kept.
    """
    if not isinstance(user, str) or not user.strip():
        raise ConfigError(bad_value("user", user, "a non-empty string", "Every question must have text."))
    if not has_chat_template(tokenizer):
        sys_text = f"System: {system}\n" if system else ""
        return FALLBACK_TEMPLATE.format(system=sys_text, user=user)
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):  # pragma: no cover - defensive: some tokenizers return lists
        text = "".join(text)
    return text


def _encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without extra special tokens (chat templates already contain BOS where needed)."""
    add_special = not has_chat_template(tokenizer)
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


def encode_prompt(tokenizer: Any, user: str, *, system: str | None = None) -> EncodedPair:
    ids = _encode(tokenizer, render_prompt(tokenizer, user, system=system))
    return EncodedPair(ids=ids, prompt_len=len(ids))


def encode_prompt_response(
    tokenizer: Any, user: str, response: str, *, system: str | None = None, strict: bool = False
) -> EncodedPair:
    """Encode ``prompt + response`` and record where the response starts.

    The prefix assertion: the ids of the rendered prompt must be a prefix of the ids of the full text. If they
    are not (a token merged across the boundary), ``strict=True`` raises ConfigError; otherwise the ids are built as
    ``prompt_ids + ids(response)`` so the prompt part equals what the model sees when it generates.
    """
    if not isinstance(response, str) or response == "":
        raise ConfigError(bad_value("response", response, "a non-empty string"))
    prompt_text = render_prompt(tokenizer, user, system=system)
    prompt_ids = _encode(tokenizer, prompt_text)
    full_ids = _encode(tokenizer, prompt_text + response)
    if full_ids[: len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
        return EncodedPair(ids=full_ids, prompt_len=len(prompt_ids))
    if strict:
        raise ConfigError(
            bad_value(
                "response",
                response,
                "text whose tokens start a new token after the prompt",
                "The prompt tokens are not a prefix of prompt+response tokens (a merge across the boundary); "
                "pass strict=False to encode prompt and response separately.",
            )
        )
    resp_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])
    log.debug("token merge across the prompt/response boundary; encoding the response separately")
    return EncodedPair(ids=prompt_ids + resp_ids, prompt_len=len(prompt_ids), merged_boundary=True)


def pad_id(tokenizer: Any) -> int:
    pid = getattr(tokenizer, "pad_token_id", None)
    if pid is None:
        pid = getattr(tokenizer, "eos_token_id", None)
    return int(pid) if pid is not None else 0


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of every row ([B] LongTensor), for left or right padding."""
    return hooks_reader.last_token_index(attention_mask)


def offsets(attention_mask: torch.Tensor) -> torch.Tensor:
    """Column of the first real token of every row (0 under right padding)."""
    t = attention_mask.shape[1]
    pos = torch.arange(t, device=attention_mask.device).expand_as(attention_mask)
    masked = torch.where(attention_mask.bool(), pos, torch.full_like(pos, t))
    return masked.min(dim=1).values


def prompt_last_index(attention_mask: torch.Tensor, prompt_lens: Sequence[int]) -> torch.Tensor:
    """Column of the last prompt token of every row (the token before the response), any padding side."""
    lens = torch.tensor(list(prompt_lens), dtype=torch.long, device=attention_mask.device)
    return offsets(attention_mask) + lens - 1


def response_mask(attention_mask: torch.Tensor, prompt_lens: Sequence[int]) -> torch.Tensor:
    """BoolTensor [B, T] that is True on response tokens (real tokens after the prompt), any padding side."""
    t = attention_mask.shape[1]
    pos = torch.arange(t, device=attention_mask.device).expand_as(attention_mask)
    start = (offsets(attention_mask) + torch.tensor(list(prompt_lens), device=attention_mask.device))[:, None]
    return attention_mask.bool() & (pos >= start)


def answer_token_ids(tokenizer: Any, user: str, matching: str, not_matching: str) -> tuple[EncodedPair, int, int]:
    """For an A/B item: the shared context and the first token where the two answers differ.

    Returns ``(context, matching_id, not_matching_id)``: ``context.ids`` = prompt + the answers' common token
    prefix (e.g. ``"("``); the next-token distribution at its last position, compared on the two ids, gives
    P(matching answer). Used by the judge-free steering readout.
    """
    pos = encode_prompt_response(tokenizer, user, matching)
    neg = encode_prompt_response(tokenizer, user, not_matching)
    a, b = pos.ids[pos.prompt_len :], neg.ids[neg.prompt_len :]
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    if k >= len(a) or k >= len(b):
        raise ConfigError(
            bad_value("answers", (matching, not_matching), "two answers whose tokens differ", "Check the A/B item.")
        )
    ctx = EncodedPair(ids=pos.ids[: pos.prompt_len + k], prompt_len=pos.prompt_len)
    return ctx, a[k], b[k]


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on the first real token of every row (needed for left padding)."""
    pos = attention_mask.long().cumsum(dim=1) - 1
    return pos.clamp(min=0)
