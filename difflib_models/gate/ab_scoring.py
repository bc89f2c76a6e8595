"""One pass over a model for the behavioural A/B eval: each asked prompt is encoded once, its KV cache reused.

For every behaviour item and both option orders the prompt (the question with both options listed) is run once
through the model with ``use_cache=True`` (only its last position's logits are computed when the model supports
``logits_to_keep``). Its cache is repeated for three continuations that are run together in one batched forward:

- the matching answer text and the non-matching answer text, teacher-forced: per-token mean log-likelihoods give
  the answer-text score (the same tokenisation and log-likelihood as
  :func:`difflib_models.persona.dose_response.answer_text_scores`, which scores each full sequence separately);
- in the item's listed order only, the answers' common letter prefix (``"("`` of ``"(A)"`` / ``"(B)"``): the
  next-token distribution after it gives P(matching letter) (as :func:`difflib_models.gate.behavioural.
  ab_probabilities`, which runs prompt + prefix again).

Prompts are sorted by length before batching (less padding); results are returned in item order. The numbers
equal the per-sequence scoring up to float rounding (``tests/gate/test_ab_scoring.py`` compares both).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from difflib_models.persona.chat import (
    answer_token_ids,
    encode_prompt_response,
    pad_batch,
    pad_id,
    position_ids,
)
from difflib_models.persona.dose_response import answer_texts
from difflib_models.progress import progress

N_CONT = 3
"""Continuations per prompt: matching answer, non-matching answer, letter prefix (a pad token when unused)."""


@dataclass(frozen=True)
class ItemScores:
    """Per item (in input order): answer-text scores with the matching answer listed first / second, and
    P(matching letter) in the item's listed order."""

    first: list[float]
    second: list[float]
    p_matching: list[float]


@dataclass(frozen=True)
class _Task:
    item: int
    matching_first: bool
    """The option order asked: the matching answer listed as (A)."""
    prompt: list[int]
    conts: tuple[list[int], list[int], list[int]]
    letter: tuple[int, int] | None
    """(matching letter id, other letter id) in the item's listed order; None in the other order."""
    letter_at_prompt: bool = False
    """The letters differ at their first token: P(letter) is read at the prompt's last position."""


def _tasks(tokenizer: Any, items: Sequence[Any]) -> list[_Task]:
    pad = pad_id(tokenizer)
    tasks: list[_Task] = []
    for i, it in enumerate(items):
        for first in (True, False):
            asked = it.text_item(first)
            stem, m_text, n_text = answer_texts(asked)
            m = encode_prompt_response(tokenizer, stem, m_text)
            n = encode_prompt_response(tokenizer, stem, n_text)
            prompt = m.ids[: m.prompt_len]
            if n.ids[: n.prompt_len] != prompt:  # pragma: no cover - both start with the rendered prompt's ids
                raise RuntimeError("answers of one prompt encode different prompt ids")
            letter_ids: list[int] = [pad]
            letter, at_prompt = None, False
            if first == it.matching_first:
                li = it.letter_item(first)
                ctx, pos_id, neg_id = answer_token_ids(tokenizer, li.question, li.matching, li.not_matching)
                if ctx.ids[: ctx.prompt_len] != prompt:  # pragma: no cover - same rendered prompt
                    raise RuntimeError("the letter context encodes other prompt ids")
                letter, at_prompt = (pos_id, neg_id), len(ctx.ids) == ctx.prompt_len
                letter_ids = ctx.ids[ctx.prompt_len:] or [pad]
            tasks.append(_Task(i, first, prompt, (m.ids[m.prompt_len:], n.ids[n.prompt_len:], letter_ids), letter,
                               at_prompt))
    return tasks


def _forward_kwargs(model: Any) -> tuple[str, bool]:
    """The cache keyword of the model's forward (``cache`` in transformers >= 5, else ``past_key_values``) and
    whether it takes ``logits_to_keep``; a peft wrapper is looked through."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(inner.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


def score_items(model: Any, tokenizer: Any, items: Sequence[Any], *, batch_size: int = 8,
                length_normalize: bool = True, desc: str = "A/B eval") -> ItemScores:
    """Answer-text scores in both orders and the listed-order letter probability of every behaviour item
    (:class:`difflib_models.gate.behavioural.BehaviourItem`). ``model`` is run as given: call inside
    ``probe_mode`` (eval, no grad). ``batch_size`` prompts per forward."""
    tasks = _tasks(tokenizer, items)
    order = sorted(range(len(tasks)), key=lambda j: -len(tasks[j].prompt))
    device = next(model.parameters()).device
    cache_kw, keep = _forward_kwargs(model)
    pad = pad_id(tokenizer)
    text = torch.full((len(tasks),), float("nan"), dtype=torch.float64)
    letter_p = torch.full((len(tasks),), float("nan"), dtype=torch.float64)
    starts = range(0, len(order), batch_size)
    with torch.no_grad():
        for start in progress(starts, desc=desc, total=len(starts)):
            chunk = [tasks[j] for j in order[start:start + batch_size]]
            pids, pmask = pad_batch([t.prompt for t in chunk], pad_token_id=pad, padding_side="left")
            kw: dict[str, Any] = {"logits_to_keep": 1} if keep else {}
            out = model(input_ids=pids.to(device), attention_mask=pmask.to(device),
                        position_ids=position_ids(pmask).to(device), use_cache=True, **kw)
            cache = getattr(out, "cache", None)
            cache = cache if cache is not None else out.past_key_values
            cache.batch_repeat_interleave(N_CONT)
            last = out.logits[:, -1].float().log_softmax(-1).cpu()  # [B, V]: predicts each continuation's token 0
            aids, amask = pad_batch([c for t in chunk for c in t.conts], pad_token_id=pad, padding_side="right")
            plen = pmask.sum(dim=1).repeat_interleave(N_CONT)
            full_mask = torch.cat([pmask.repeat_interleave(N_CONT, dim=0), amask], dim=1)
            pos = plen[:, None] + torch.arange(aids.shape[1])[None, :]
            logits = model(input_ids=aids.to(device), attention_mask=full_mask.to(device),
                           position_ids=pos.to(device), use_cache=True, **{cache_kw: cache}).logits.cpu()
            rows = torch.arange(len(chunk) * N_CONT)
            answer_rows = rows[rows % N_CONT != 2]
            lp = logits[answer_rows, :-1].float().log_softmax(-1).gather(2, aids[answer_rows, 1:, None])[..., 0]
            first_lp = last.repeat_interleave(2, dim=0).gather(1, aids[answer_rows, :1])
            per_tok = torch.cat([first_lp, lp], dim=1).double()
            real = amask[answer_rows].bool()
            total, count = (per_tok * real).sum(dim=1), real.sum(dim=1).double()
            score = total / count.clamp_min(1) if length_normalize else total
            diff = score[0::2] - score[1::2]
            for b, t in enumerate(chunk):
                j = order[start + b]
                text[j] = diff[b]
                if t.letter is not None:
                    k = int(amask[N_CONT * b + 2].sum())
                    logp = last[b] if t.letter_at_prompt else logits[N_CONT * b + 2, k - 1].float().log_softmax(-1)
                    two = torch.stack([logp[t.letter[0]], logp[t.letter[1]]])
                    letter_p[j] = float(torch.softmax(two, dim=0)[0])
    firsts = [float(text[j]) for j, t in enumerate(tasks) if t.matching_first]
    seconds = [float(text[j]) for j, t in enumerate(tasks) if not t.matching_first]
    probs = [float(letter_p[j]) for j, t in enumerate(tasks) if t.letter is not None]
    return ItemScores(first=firsts, second=seconds, p_matching=probs)
