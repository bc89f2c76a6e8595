"""One pass over a model for the behavioural A/B eval: shared prompt tokens are run once, their KV cache reused.

Every behaviour item is asked in both option orders; the two prompts (the question with both options listed)
share their beginning (chat template, system prompt, question, the first option's start). Per batch of items:

1. the tokens every prompt of the batch starts with (e.g. the chat template's system prompt), once;
2. the rest of the beginning shared by each item's two prompts, once per item (no logits are computed);
3. the cache is duplicated per order and the rest of each order's prompt runs; in the item's listed order it goes
   on with the prompt's last token and the answers' common letter prefix (``"("`` of ``"(A)"`` / ``"(B)"``), whose
   next-token distribution gives P(matching letter) (as :func:`difflib_models.gate.behavioural.ab_probabilities`,
   which runs prompt + prefix again); these letter tokens are then masked out of the cache;
4. the cache is duplicated per answer and the matching and the non-matching answer text of both orders run as
   continuations, each starting with its prompt's last token (whose logits predict the answer's first token),
   teacher-forced: per-token mean log-likelihoods give the answer-text score, with the tokenisation and
   log-likelihood of :func:`difflib_models.persona.validation.dose_response.answer_text_scores` (which scores each full
   sequence on its own).

5. the open score (:func:`open_scores`): both answer texts as the reply to the bare question (no options listed),
   a separate pass the same way (the batch's common prefix once, each question once, its cache shared by both
   answers; these prompts share nothing with the listed ones beyond the chat template).

Padding sits anywhere (left in steps 2-3, right in step 4, masked letter tokens in between); it is masked and the
position ids count real tokens only, so the numbers equal the per-sequence scoring up to float rounding
(``tests/gate/test_ab_scoring.py`` compares both). Items are sorted by answer length before batching (less
padding); results come back in item order.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from difflib_models.persona.traits.chat import (
    answer_token_ids,
    encode_prompt_response,
    pad_batch,
    pad_id,
)
from difflib_models.persona.traits.schema import ABItem
from difflib_models.persona.validation.dose_response import answer_text_scores, answer_texts
from difflib_models.progress import progress

ORDERS = (True, False)
"""The two option orders asked: the matching answer listed as (A), then as (B)."""


@dataclass(frozen=True)
class ItemScores:
    """Per item (in input order): answer-text scores with the matching answer listed first / second,
    P(matching letter) in the item's listed order, and the open answer-text score (``open``: the two answers
    teacher-forced as the reply to the bare question, no options listed; empty when not scored)."""

    first: list[float]
    second: list[float]
    p_matching: list[float]
    open: list[float] = field(default_factory=list)

    def part(self, index: slice) -> ItemScores:
        """The scores of the items in ``index``."""
        return ItemScores(self.first[index], self.second[index], self.p_matching[index], self.open[index])


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
    """Runs steps on one growing KV cache: rows re-selected between steps, padding anywhere (masked; position ids
    count real tokens only)."""

    def __init__(self, model: Any, pad: int) -> None:
        self.model, self.pad = model, pad
        self.device = next(model.parameters()).device
        self.cache_kw, keep = _forward_kwargs(model)
        self.last_only: dict[str, Any] = {"logits_to_keep": 1} if keep else {}
        self.cache: Any = None
        self.mask = torch.zeros(1, 0, dtype=torch.long)
        self.lengths = torch.zeros(1, dtype=torch.long)

    def select(self, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long)
        if self.cache is not None:
            self.cache.batch_select_indices(index.to(self.device))
        self.mask, self.lengths = self.mask[index], self.lengths[index]

    def drop_last(self, rows: list[int], n: int) -> None:
        """Mask out the last ``n`` cached columns (real tokens of a left-padded step) of ``rows``."""
        for row in rows:
            self.mask[row, self.mask.shape[1] - n:] = 0
            self.lengths[row] -= n

    def extend(self, seqs: list[list[int]], *, side: str, logits: str) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Run ``seqs`` (padded on ``side``) after the cached tokens. ``logits``: "none", "last" (the last column:
        each row's last real token when left-padded) or "all". Returns the ids, their mask and the logits."""
        ids, mask = pad_batch(seqs, pad_token_id=self.pad, padding_side=side)
        full = torch.cat([self.mask.expand(len(seqs), -1) if self.mask.shape[0] == 1 else self.mask, mask], dim=1)
        pos = self.lengths[:, None] + (mask.cumsum(dim=1) - 1).clamp(min=0)
        kw = {} if logits == "all" else self.last_only
        if self.cache is not None:
            kw[self.cache_kw] = self.cache
        out = self.model(input_ids=ids.to(self.device), attention_mask=full.to(self.device),
                         position_ids=pos.to(self.device), use_cache=True, **kw)
        if self.cache is None:
            cache = getattr(out, "cache", None)
            self.cache = cache if cache is not None else out.past_key_values
        self.mask, self.lengths = full, self.lengths + mask.sum(dim=1)
        if logits == "none":
            return ids, mask, None
        return ids, mask, (out.logits[:, -1] if logits == "last" else out.logits).float().cpu()


def _answer_logliks(ids: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: sum of log p(token t+1 | ..., token t) over its real tokens after the first, and their count."""
    real = mask[:, 1:].bool()
    rows = real.nonzero(as_tuple=True)[0]
    picked = logits[:, :-1][real]  # [n_real, V]: only real positions get a softmax normaliser
    lp = picked.gather(1, ids[:, 1:][real][:, None])[:, 0] - picked.logsumexp(dim=-1)
    total = torch.zeros(ids.shape[0], dtype=torch.float64).index_add_(0, rows, lp.double())
    return total, real.sum(dim=1).double()


def _shared_start(seqs: list[list[int]]) -> int:
    """Length of the prefix common to all ``seqs``, leaving each at least one token of its own."""
    n, limit = 0, min(len(q) for q in seqs) - 1
    while n < limit and all(q[n] == seqs[0][n] for q in seqs):
        n += 1
    return n


def score_items(model: Any, tokenizer: Any, items: Sequence[Any], *, batch_size: int = 8,
                length_normalize: bool = True, desc: str = "A/B eval") -> ItemScores:
    """Answer-text scores in both orders and the listed-order letter probability of every behaviour item
    (:class:`difflib_models.gate.behavioural.BehaviourItem`). ``model`` is run as given: call inside
    ``probe_mode`` (eval, no grad). ``batch_size`` items (each asked in both orders) per batch."""
    enc = [_encode_item(tokenizer, it) for it in items]
    # longest answers first: the answer rows are the widest part of a batch (prompt lengths follow them roughly)
    order = sorted(range(len(enc)), key=lambda j: (-max(len(a) for o in enc[j].answers for a in o),
                                                   -enc[j].prompt_len))
    pad = pad_id(tokenizer)
    text = torch.full((len(enc), 2), float("nan"), dtype=torch.float64)
    letter_p = torch.full((len(enc),), float("nan"), dtype=torch.float64)
    starts = range(0, len(order), batch_size)
    with torch.no_grad():
        for start in progress(starts, desc=desc, total=len(starts)):
            js = order[start:start + batch_size]
            chunk = [enc[j] for j in js]
            run = _Runner(model, pad)
            common = _shared_start([e.prefix for e in chunk])
            if common:  # e.g. the chat template's system prompt: once for the batch
                run.extend([chunk[0].prefix[:common]], side="left", logits="none")
                run.select([0] * len(chunk))
            run.extend([e.prefix[common:] for e in chunk], side="left", logits="none")
            run.select([b for b in range(len(chunk)) for _ in ORDERS])  # row 2b + o
            # each order's rest of the prompt; the listed order goes on with its last token and the letter prefix,
            # whose next-token distribution is the letter readout (left padding: every row ends in column -1)
            letter_tail = [1 + len(e.letter_prefix) for e in chunk]
            middles = [e.middles[o] + ([e.lasts[o], *e.letter_prefix] if o == e.letter_order else [])
                       for e in chunk for o in range(2)]
            _, _, last = run.extend(middles, side="left", logits="last")
            for b, e in enumerate(chunk):
                logp = last[2 * b + e.letter_order].log_softmax(-1)
                two = torch.stack([logp[e.letter_ids[0]], logp[e.letter_ids[1]]])
                letter_p[js[b]] = float(torch.softmax(two, dim=0)[0])
            # the answers see the prompt only: the letter tokens are masked out of their context
            for b, e in enumerate(chunk):
                run.drop_last([2 * b + e.letter_order], letter_tail[b])
            run.select([2 * b + o for b in range(len(chunk)) for o in range(2) for _ in range(2)])
            conts = [[e.lasts[o], *e.answers[o][a]] for e in chunk for o in range(2) for a in range(2)]
            ids, mask, logits = run.extend(conts, side="right", logits="all")
            total, count = _answer_logliks(ids, mask, logits)
            score = (total / count.clamp_min(1) if length_normalize else total).reshape(len(chunk), 2, 2)
            text[js] = score[:, :, 0] - score[:, :, 1]
    return ItemScores(first=text[:, 0].tolist(), second=text[:, 1].tolist(), p_matching=letter_p.tolist(),
                      open=open_scores(model, tokenizer, items, batch_size=batch_size, length_normalize=length_normalize))


def open_scores(model: Any, tokenizer: Any, items: Sequence[Any], *, batch_size: int = 8,
                length_normalize: bool = True) -> list[float]:
    """The open answer-text score of every behaviour item: per-token mean ``log P(matching text) - log P(other
    text)``, each teacher-forced as the reply to the bare question (no options listed, so no letter or position
    can enter it). With the options listed the answers can be copied from the prompt; the open score reads what the
    model would say unprompted. Equal to :func:`~difflib_models.persona.validation.dose_response
    .answer_text_scores` of ``ABItem(question, matching, not_matching)`` up to float rounding, but each question
    runs once (its KV cache shared by both answers, the batch's common prefix once) and logits are computed for
    the answer tokens only. ``model`` is run as given: call inside ``probe_mode``."""
    enc: list[tuple[list[int], list[int], list[int]]] = []
    for it in items:
        m = encode_prompt_response(tokenizer, it.question, it.matching)
        n = encode_prompt_response(tokenizer, it.question, it.not_matching)
        prompt = m.ids[: m.prompt_len]
        if n.ids[: n.prompt_len] != prompt:  # pragma: no cover - the same rendered prompt
            raise RuntimeError(f"item {getattr(it, 'id', it)}: unexpected prompt encoding")
        enc.append((prompt, m.ids[m.prompt_len:], n.ids[n.prompt_len:]))
    if any(len(p) < 2 for p, _, _ in enc):  # a one-token prompt has nothing to cache before its last token
        return answer_text_scores(model, tokenizer, [ABItem(it.question, it.matching, it.not_matching)
                                                     for it in items], batch_size=batch_size,
                                  length_normalize=length_normalize)
    order = sorted(range(len(enc)), key=lambda j: (-max(len(enc[j][1]), len(enc[j][2])), -len(enc[j][0])))
    pad = pad_id(tokenizer)
    out = torch.full((len(enc),), float("nan"), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            js = order[start:start + batch_size]
            heads = [enc[j][0][:-1] for j in js]
            run = _Runner(model, pad)
            common = _shared_start(heads)
            if common:
                run.extend([heads[0][:common]], side="left", logits="none")
                run.select([0] * len(js))
            run.extend([h[common:] for h in heads], side="left", logits="none")
            run.select([b for b in range(len(js)) for _ in range(2)])  # row 2b: matching, 2b + 1: the other
            conts = [[enc[j][0][-1], *enc[j][1 + a]] for j in js for a in range(2)]
            ids, mask, logits = run.extend(conts, side="right", logits="all")
            total, count = _answer_logliks(ids, mask, logits)
            score = total / count.clamp_min(1) if length_normalize else total
            out[js] = score[0::2] - score[1::2]
    return out.tolist()
