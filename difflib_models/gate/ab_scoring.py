"""One pass over a model for the behavioural A/B eval: shared prompt tokens are run once, their KV cache reused.

Every behaviour item is asked in both option orders; the two prompts (the question with both options listed)
share their beginning (chat template, system prompt, question, the first option's start). Per batch of items:

1. the shared beginning of each item's two prompts, once per item (``use_cache=True``; no logits needed);
2. the cache is duplicated per order and the rest of each order's prompt (without its last token) is run;
3. the cache is duplicated per continuation and five continuations per item run together, each starting with its
   prompt's last token (whose logits predict the continuation's first token): the matching and the non-matching
   answer text in each order, teacher-forced (per-token mean log-likelihoods give the answer-text score, with the
   tokenisation and log-likelihood of :func:`difflib_models.persona.dose_response.answer_text_scores`, which scores
   each full sequence on its own), and, in the item's listed order, the answers' common letter prefix (``"("`` of
   ``"(A)"`` / ``"(B)"``): the next-token distribution after it gives P(matching letter) (as
   :func:`difflib_models.gate.behavioural.ab_probabilities`, which runs prompt + prefix again).

Padding sits at the left of step 1 and between the steps; it is masked and the position ids count real tokens only,
so the numbers equal the per-sequence scoring up to float rounding (``tests/gate/test_ab_scoring.py`` compares
both). Items are sorted by prompt length before batching (less padding); results come back in item order.
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

ORDERS = (True, False)
"""The two option orders asked: the matching answer listed as (A), then as (B)."""


@dataclass(frozen=True)
class ItemScores:
    """Per item (in input order): answer-text scores with the matching answer listed first / second, and
    P(matching letter) in the item's listed order."""

    first: list[float]
    second: list[float]
    p_matching: list[float]


@dataclass(frozen=True)
class _Encoded:
    """Token ids of one item: the prompt prefix shared by both orders, per order the rest of the prompt without
    its last token, the last token, the two answers (matching, non-matching); the letter readout in the listed
    order (index into ORDERS, the common letter prefix, the matching and the other letter's first distinct id)."""

    prefix: list[int]
    middles: tuple[list[int], list[int]]
    lasts: tuple[int, int]
    answers: tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]
    letter_order: int
    letter_prefix: list[int]
    letter_ids: tuple[int, int]

    @property
    def prompt_len(self) -> int:
        return len(self.prefix) + max(len(m) for m in self.middles) + 1


def _encode_item(tokenizer: Any, item: Any) -> _Encoded:
    prompts, answers = [], []
    for first in ORDERS:
        stem, m_text, n_text = answer_texts(item.text_item(first))
        m = encode_prompt_response(tokenizer, stem, m_text)
        n = encode_prompt_response(tokenizer, stem, n_text)
        prompt = m.ids[: m.prompt_len]
        if n.ids[: n.prompt_len] != prompt or len(prompt) < 3:  # pragma: no cover - the rendered prompt's ids
            raise RuntimeError(f"item {item.id}: unexpected prompt encoding")
        prompts.append(prompt)
        answers.append((m.ids[m.prompt_len:], n.ids[n.prompt_len:]))
    shared = 0
    limit = min(len(p) for p in prompts) - 2  # each order keeps >= 1 token before its last one
    while shared < limit and prompts[0][shared] == prompts[1][shared]:
        shared += 1
    shared = max(shared, 1)
    letter_order = ORDERS.index(item.matching_first)
    letter = item.letter_item(item.matching_first)
    ctx, pos_id, neg_id = answer_token_ids(tokenizer, letter.question, letter.matching, letter.not_matching)
    if ctx.ids[: ctx.prompt_len] != prompts[letter_order]:  # pragma: no cover - the same rendered prompt
        raise RuntimeError(f"item {item.id}: the letter context encodes other prompt ids")
    return _Encoded(prefix=prompts[0][:shared], middles=(prompts[0][shared:-1], prompts[1][shared:-1]),
                    lasts=(prompts[0][-1], prompts[1][-1]), answers=(answers[0], answers[1]),
                    letter_order=letter_order, letter_prefix=ctx.ids[ctx.prompt_len:], letter_ids=(pos_id, neg_id))


def _forward_kwargs(model: Any) -> tuple[str, bool]:
    """The cache keyword of the model's forward (``cache`` in transformers >= 5, else ``past_key_values``) and
    whether it takes ``logits_to_keep``; a peft wrapper is looked through."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(inner.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


class _Runner:
    """Runs continuation steps on one growing KV cache (rows re-selected between steps)."""

    def __init__(self, model: Any, pad: int) -> None:
        self.model, self.pad = model, pad
        self.device = next(model.parameters()).device
        self.cache_kw, keep = _forward_kwargs(model)
        self.no_logits: dict[str, Any] = {"logits_to_keep": 1} if keep else {}  # only the cache is needed
        self.cache: Any = None
        self.mask = torch.zeros(0, 0, dtype=torch.long)
        self.lengths = torch.zeros(0, dtype=torch.long)

    def start(self, seqs: list[list[int]]) -> None:
        ids, mask = pad_batch(seqs, pad_token_id=self.pad, padding_side="left")
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=position_ids(mask).to(self.device), use_cache=True, **self.no_logits)
        cache = getattr(out, "cache", None)
        self.cache = cache if cache is not None else out.past_key_values
        self.mask, self.lengths = mask, mask.sum(dim=1)

    def select(self, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long)
        self.cache.batch_select_indices(index.to(self.device))
        self.mask, self.lengths = self.mask[index], self.lengths[index]

    def extend(self, seqs: list[list[int]], *, logits: bool) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Run ``seqs`` (right-padded) after the cached tokens; returns their ids, mask and logits (or None)."""
        ids, mask = pad_batch(seqs, pad_token_id=self.pad, padding_side="right")
        full = torch.cat([self.mask, mask], dim=1)
        pos = self.lengths[:, None] + torch.arange(ids.shape[1])[None, :]
        kw = {} if logits else self.no_logits
        out = self.model(input_ids=ids.to(self.device), attention_mask=full.to(self.device),
                         position_ids=pos.to(self.device), use_cache=True, **{self.cache_kw: self.cache}, **kw)
        self.mask, self.lengths = full, self.lengths + mask.sum(dim=1)
        return ids, mask, out.logits.float().cpu() if logits else None


def score_items(model: Any, tokenizer: Any, items: Sequence[Any], *, batch_size: int = 8,
                length_normalize: bool = True, desc: str = "A/B eval") -> ItemScores:
    """Answer-text scores in both orders and the listed-order letter probability of every behaviour item
    (:class:`difflib_models.gate.behavioural.BehaviourItem`). ``model`` is run as given: call inside
    ``probe_mode`` (eval, no grad). ``batch_size`` items (each asked in both orders) per batch."""
    enc = [_encode_item(tokenizer, it) for it in items]
    order = sorted(range(len(enc)), key=lambda j: -enc[j].prompt_len)
    pad = pad_id(tokenizer)
    runner = _Runner(model, pad)
    text = torch.full((len(enc), 2), float("nan"), dtype=torch.float64)
    letter_p = torch.full((len(enc),), float("nan"), dtype=torch.float64)
    starts = range(0, len(order), batch_size)
    with torch.no_grad():
        for start in progress(starts, desc=desc, total=len(starts)):
            js = order[start:start + batch_size]
            chunk = [enc[j] for j in js]
            runner.start([e.prefix for e in chunk])
            runner.select([b for b in range(len(chunk)) for _ in ORDERS])  # row 2b + o
            runner.extend([e.middles[o] for e in chunk for o in range(2)], logits=False)
            # per item: matching / non-matching answer in order 0, then in order 1, then the letter prefix
            rows, conts = [], []
            for b, e in enumerate(chunk):
                for o in range(2):
                    for a in range(2):
                        rows.append(2 * b + o)
                        conts.append([e.lasts[o], *e.answers[o][a]])
                rows.append(2 * b + e.letter_order)
                conts.append([e.lasts[e.letter_order], *e.letter_prefix])
            runner.select(rows)
            ids, mask, logits = runner.extend(conts, logits=True)
            n_rows = ids.shape[0]
            answer_rows = torch.tensor([r for r in range(n_rows) if r % 5 != 4])
            lp = logits[answer_rows, :-1].log_softmax(-1).gather(2, ids[answer_rows, 1:, None])[..., 0].double()
            real = mask[answer_rows, 1:].bool()
            total, count = (lp * real).sum(dim=1), real.sum(dim=1).double()
            score = (total / count.clamp_min(1) if length_normalize else total).reshape(len(chunk), 2, 2)
            text[js] = score[:, :, 0] - score[:, :, 1]
            for b, e in enumerate(chunk):
                last = int(mask[5 * b + 4].sum()) - 1  # the letter prefix's last token (or the prompt's)
                logp = logits[5 * b + 4, last].log_softmax(-1)
                two = torch.stack([logp[e.letter_ids[0]], logp[e.letter_ids[1]]])
                letter_p[js[b]] = float(torch.softmax(two, dim=0)[0])
    return ItemScores(first=text[:, 0].tolist(), second=text[:, 1].tolist(), p_matching=letter_p.tolist())
