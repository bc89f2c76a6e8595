"""Steering dose-response on A/B items: does adding ``alpha * r * v_hat`` at ``blocks.L`` move the answer?

Spec persona.md section 3.4 (causal check). For each alpha (units: ``r``, the median residual norm at the layer
over the real tokens of the readout contexts), the vector is added with :func:`~difflib_models.persona.steering.hook.steer`
at ``positions`` ``"all"`` (every token) or ``"response"`` (the last prompt token and every answer token), and one
of two judge-free readouts is taken on the chosen split's A/B items:

- ``readout="text"`` (default): each item's two answers are scored as *texts*. :func:`answer_texts` takes the
  question stem (the question without its ``Choices:`` block) and the contents of the matching and non-matching
  options; each answer is teacher-forced as the assistant response to the stem and its log-likelihood
  ``logL = sum_t log p(answer_t | stem, answer_<t)`` is read. ``P(matching) = sigmoid(logL_m - logL_n)``, or with
  ``length_normalize=True`` (default) ``sigmoid(logL_m / n_m - logL_n / n_n)`` (per-token means, so a longer
  answer is not penalised for its length). Coherence proxy: the mean per-token log-likelihood of both answers;
  a point whose value falls more than ``max_nll_increase`` nats/token below the unsteered one is incoherent.
- ``readout="letter"``: ``P(matching) = p_m / (p_m + p_n)`` at the first token where the two answers differ (the
  letter of ``(A)``/``(B)``); coherence proxy = ``p_m + p_n`` (A/B mass; incoherent below half the unsteered mass).

Incoherent points are left out of the trend. ``monotone``: at least 3 coherent points, no coherent step down by
more than ``tol`` and the last above the first; ``effect`` = last - first coherent P(matching).

:func:`random_direction_control` repeats the curve along norm-matched random directions drawn from the
(covariance-realistic) N(0, Sigma_hat) of given activations: a real direction must move the answer much more than
a generic perturbation of the same size.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.hooks import probe_mode
from difflib_models.persona.contracts.dose_response import DoseResponseCurve, RandomDirectionControl
from difflib_models.persona.shift.core import covariance_null_directions
from difflib_models.persona.steering.hook import median_residual_norm, steer
from difflib_models.persona.traits import chat
from difflib_models.persona.traits.schema import ABItem, Trait

READOUTS: tuple[str, ...] = ("text", "letter")
STEER_POSITIONS: tuple[str, ...] = ("all", "response")
DEFAULT_MAX_NLL_INCREASE = 1.0

_CHOICE = re.compile(r"^\s*\(([A-Za-z])\)\s*(\S.*?)\s*$")
_LETTER = re.compile(r"^\s*\(?([A-Za-z])\)?\s*$")


def answer_texts(item: ABItem) -> tuple[str, str, str]:
    """``(stem, matching text, non-matching text)`` of an A/B item.

    Letter items (answers like ``"(A)"``) whose question lists the options as lines ``" (A) text"``: the stem is
    the question up to the first option line without a trailing ``Choices:`` header or blank lines, the texts are
    the two options' contents. Any other item (e.g. ``" Yes"``/``" No"``): the question unchanged and the two
    answers stripped.
    """
    lines = item.question.splitlines()
    options: dict[str, str] = {}
    first: int | None = None
    for i, line in enumerate(lines):
        m = _CHOICE.match(line)
        if m:
            options.setdefault(m.group(1).upper(), m.group(2))
            first = i if first is None else first
    lm, ln = _LETTER.match(item.matching), _LETTER.match(item.not_matching)
    if first is not None and lm and ln:
        a, b = lm.group(1).upper(), ln.group(1).upper()
        stem_lines = lines[:first]
        while stem_lines and stem_lines[-1].strip().lower().rstrip(":") in ("", "choices", "options"):
            stem_lines.pop()
        stem = "\n".join(stem_lines).strip()
        if a != b and a in options and b in options and stem:
            return stem, options[a], options[b]
    return item.question, item.matching.strip(), item.not_matching.strip()


@dataclass
class _Prepared:
    """Tokenised readout contexts, batched: (input_ids, attention_mask, prompt_lens, extra) per batch."""

    readout: str
    batches: list[tuple[torch.Tensor, torch.Tensor, list[int], Any]]
    n_items: int


def _prepare(tok: Any, items: Sequence[ABItem], readout: str, batch_size: int) -> _Prepared:
    batches: list[tuple[torch.Tensor, torch.Tensor, list[int], Any]] = []
    if readout == "letter":
        ctxs = [chat.answer_token_ids(tok, it.question, it.matching, it.not_matching) for it in items]
        for start in range(0, len(ctxs), batch_size):
            part = ctxs[start : start + batch_size]
            ids, mask = chat.pad_batch([c[0].ids for c in part], pad_token_id=chat.pad_id(tok), padding_side="right")
            extra = (torch.tensor([c[1] for c in part]), torch.tensor([c[2] for c in part]))
            batches.append((ids, mask, [c[0].prompt_len for c in part], extra))
    else:  # text: one left-padded prompt batch + the 2 answers of every item [m0, n0, m1, n1, ...]
        encoded = []
        for it in items:
            stem, m_text, n_text = answer_texts(it)
            encoded.append((chat.encode_prompt_response(tok, stem, m_text), chat.encode_prompt_response(tok, stem, n_text)))
        for start in range(0, len(encoded), batch_size):
            part = encoded[start : start + batch_size]
            full = [e for pair in part for e in pair]
            ids, mask = chat.pad_batch([e.ids for e in full], pad_token_id=chat.pad_id(tok), padding_side="right")
            # the prompt is shared by the two answers (the matching one's prompt ids; equal unless a merge moved it)
            pids, pmask = chat.pad_batch([m.ids[: m.prompt_len] for m, _ in part], pad_token_id=chat.pad_id(tok),
                                         padding_side="left")
            aids, amask = chat.pad_batch([e.ids[part[i // 2][0].prompt_len :] for i, e in enumerate(full)],
                                         pad_token_id=chat.pad_id(tok), padding_side="right")
            same = all(m.ids[: m.prompt_len] == n.ids[: n.prompt_len] and m.prompt_len == n.prompt_len
                       for m, n in part)
            # a token merge across the prompt/answer boundary: score the batch without the shared prompt
            batches.append((ids, mask, [e.prompt_len for e in full], (pids, pmask, aids, amask) if same else None))
    return _Prepared(readout=readout, batches=batches, n_items=len(items))


def _answer_loglik(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                   prompt_lens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log p(response token) per row and the number of response tokens: ([B], [B])."""
    resp = chat.response_mask(mask, prompt_lens)[:, 1:]  # target positions 1..T-1
    rows, cols = resp.nonzero(as_tuple=True)
    lp = logits[rows, cols].float().log_softmax(-1).gather(1, ids[rows, cols + 1][:, None])[:, 0]
    total = torch.zeros(ids.shape[0], dtype=torch.float64).index_add_(0, rows, lp.double())
    return total, resp.sum(dim=1).double()


def _cache_kwarg(model: Any) -> str:
    """``cache`` (transformers >= 5.x) or the older ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _shared_prompt_loglik(model: Any, layer: int, vector: torch.Tensor, alpha: float, positions: str, ref: float,
                          pids: torch.Tensor, pmask: torch.Tensor, aids: torch.Tensor,
                          amask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Answer log-likelihoods with the prompt run once per item: a steered forward over the left-padded prompts
    (KV cache kept), the cache repeated for the two answers, then a steered forward over the answers.
    Equal to scoring the full sequences (``positions="response"`` steers the last prompt column and all answers)."""
    b, p = pids.shape
    kw: dict[str, Any] = {"prompt_lengths": [p] * b} if positions == "response" else {}
    with torch.no_grad():
        with steer(model, layer, vector, alpha=alpha, positions=positions, reference_norm=ref, **kw):
            out = model(input_ids=pids, attention_mask=pmask, position_ids=chat.position_ids(pmask), use_cache=True)
        cache = getattr(out, "cache", None)
        cache = cache if cache is not None else out.past_key_values
        cache.batch_repeat_interleave(2)
        first = out.logits[:, -1].float().log_softmax(-1).repeat_interleave(2, dim=0)  # predicts answer token 0
        plen = pmask.sum(dim=1).repeat_interleave(2)
        full_mask = torch.cat([pmask.repeat_interleave(2, dim=0), amask], dim=1)
        pos = plen[:, None] + torch.arange(aids.shape[1])[None, :]
        with steer(model, layer, vector, alpha=alpha, positions="all", reference_norm=ref):
            logits = model(input_ids=aids, attention_mask=full_mask, position_ids=pos, use_cache=True,
                           **{_cache_kwarg(model): cache}).logits
    lp = torch.cat([first.gather(1, aids[:, :1]),
                    logits[:, :-1].float().log_softmax(-1).gather(2, aids[:, 1:, None])[..., 0]], dim=1)
    real = amask.bool()
    return (lp.double() * real).sum(dim=1), real.sum(dim=1).double()


def _curve(model: Any, prep: _Prepared, layer: int, vector: torch.Tensor, alphas: Sequence[float], positions: str,
           ref: float, length_normalize: bool,
           unsteered: dict[str, tuple[float, float, float]] | None = None) -> tuple[list[float], list[float], list[float]]:
    """Per alpha: mean P(matching), coherence value (A/B mass or per-token logL), mean matching-minus-other score.

    ``unsteered``: a memo of the alpha = 0 point, shared by curves of the same ``prep`` along other directions
    (adding ``0 * vector`` leaves every forward unchanged, so that point does not depend on the vector)."""
    p_out, coh_out, diff_out = [], [], []
    for alpha in alphas:
        if float(alpha) == 0.0 and unsteered is not None and "point" in unsteered:
            p0, c0, d0 = unsteered["point"]
            p_out.append(p0)
            coh_out.append(c0)
            diff_out.append(d0)
            continue
        per_batch: list[tuple[torch.Tensor, ...]] = []
        for ids, mask, plens, extra in prep.batches:
            if prep.readout == "text" and extra is not None:
                per_batch.append(_shared_prompt_loglik(model, layer, vector, float(alpha), positions, ref, *extra))
                continue
            kw: dict[str, Any] = {}
            if positions == "response":
                kw = {"prompt_lengths": plens, "attention_mask": mask}
            with torch.no_grad(), steer(model, layer, vector, alpha=float(alpha), positions=positions,
                                        reference_norm=ref, **kw):
                logits = model(input_ids=ids, attention_mask=mask, position_ids=chat.position_ids(mask),
                               use_cache=False).logits
            if prep.readout == "letter":
                rows = torch.arange(ids.shape[0])
                last = logits[rows, chat.last_token_index(mask)].float().softmax(-1)
                per_batch.append((last[rows, extra[0]].double(), last[rows, extra[1]].double()))
            else:
                per_batch.append(_answer_loglik(logits, ids, mask, plens))
        a, b = torch.cat([x[0] for x in per_batch]), torch.cat([x[1] for x in per_batch])
        if prep.readout == "letter":
            p_out.append(float((a / (a + b).clamp_min(1e-12)).mean()))
            coh_out.append(float((a + b).mean()))
            diff_out.append(float((a.clamp_min(1e-30).log() - b.clamp_min(1e-30).log()).mean()))
        else:  # a = logL per sequence, b = n tokens; rows alternate matching / non-matching
            score = a / b.clamp_min(1) if length_normalize else a
            d = score[0::2] - score[1::2]
            p_out.append(float(torch.sigmoid(d).mean()))
            coh_out.append(float(a.sum() / b.sum().clamp_min(1)))
            diff_out.append(float(d.mean()))
        if float(alpha) == 0.0 and unsteered is not None:
            unsteered["point"] = (p_out[-1], coh_out[-1], diff_out[-1])
    return p_out, coh_out, diff_out


def dose_summary(alphas: list[float], p: list[float], coherence: list[float], ref: float, n: int, *,
                 readout: str = "letter", coherence_min: float = 0.5,
                 max_nll_increase: float = DEFAULT_MAX_NLL_INCREASE, tol: float = 0.005) -> DoseResponseCurve:
    """Monotonicity, effect and Spearman rho over the coherent points of one dose-response curve."""
    zero = alphas.index(0.0) if 0.0 in alphas else None
    if readout == "letter":
        base = coherence[zero] if zero is not None else max(coherence)
        coherent = [m >= coherence_min * base for m in coherence]
    else:
        base = coherence[zero] if zero is not None else max(coherence)
        coherent = [c >= base - max_nll_increase for c in coherence]
    idx = [i for i in range(len(alphas)) if coherent[i]]
    ps = [p[i] for i in idx]
    monotone = len(ps) >= 3 and all(b >= a - tol for a, b in zip(ps, ps[1:], strict=False)) and ps[-1] > ps[0]
    from scipy.stats import spearmanr

    rho = float(spearmanr([alphas[i] for i in idx], ps).statistic) if len(ps) >= 3 else float("nan")
    return DoseResponseCurve(
        readout=readout, alphas=tuple(alphas), p_matching=tuple(p), coherence=tuple(coherence),
        coherent=tuple(bool(c) for c in coherent), reference_norm=ref, n_items=n, monotone=bool(monotone),
        spearman=rho if math.isfinite(rho) else None, effect=ps[-1] - ps[0] if ps else 0.0)


def _check(readout: str, positions: str, alphas: Sequence[float]) -> None:
    if readout not in READOUTS:
        raise ConfigError(bad_value("readout", readout, READOUTS,
                                    "'text' scores the answers' texts; 'letter' the (A)/(B) letter token."))
    if positions not in STEER_POSITIONS:
        raise ConfigError(bad_value("positions", positions, STEER_POSITIONS))
    if len(alphas) < 3 or sorted(alphas) != list(alphas):
        raise ConfigError(bad_value("alphas", list(alphas), "at least 3 increasing values, e.g. -1, 0, 1"))


def _items(trait: Trait, split: str, max_items: int | None) -> list[ABItem]:
    items = trait.split_ab(split)[: max_items or None]
    if not items:
        raise ConfigError(bad_value("trait", trait.id, "a trait with ab_items in the split", "Steering needs A/B items."))
    return items


def _reference_norm(model: Any, prep: _Prepared, layer: int) -> float:
    """Median residual norm at ``blocks.layer`` over the real (non-BOS) tokens of the readout contexts."""
    return float(np.median([median_residual_norm(model, ids, mask, layer) for ids, mask, _, _ in prep.batches]))


def steering_dose_response(loaded: Any, trait: Trait, layer: int, vector: torch.Tensor, *,
                           alphas: Sequence[float] = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0), batch_size: int = 8,
                           max_items: int | None = None, readout: str = "letter", positions: str = "all",
                           length_normalize: bool = True, split: str = "evaluation",
                           max_nll_increase: float = DEFAULT_MAX_NLL_INCREASE,
                           reference_norm: float | None = None) -> DoseResponseCurve:
    """Mean P(matching answer) and the coherence proxy for each alpha (units: median residual norm), as a typed
    :class:`~difflib_models.persona.contracts.DoseResponseCurve`."""
    return _dose_responses(loaded, trait, layer, [vector], alphas=alphas, batch_size=batch_size,
                           max_items=max_items, readout=readout, positions=positions,
                           length_normalize=length_normalize, split=split, max_nll_increase=max_nll_increase,
                           reference_norm=reference_norm)[0]


def _dose_responses(loaded: Any, trait: Trait, layer: int, vectors: Sequence[torch.Tensor], *,
                    alphas: Sequence[float] = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0), batch_size: int = 8,
                    max_items: int | None = None, readout: str = "letter", positions: str = "all",
                    length_normalize: bool = True, split: str = "evaluation",
                    max_nll_increase: float = DEFAULT_MAX_NLL_INCREASE,
                    reference_norm: float | None = None) -> list[DoseResponseCurve]:
    """:func:`steering_dose_response` along each of ``vectors``: the items are prepared, the reference norm
    measured and the unsteered (alpha = 0) point scored once for all of them (equal to separate calls)."""
    _check(readout, positions, alphas)
    items = _items(trait, split, max_items)
    model = loaded.model
    prep = _prepare(loaded.tokenizer, items, readout, batch_size)
    unsteered: dict[str, tuple[float, float, float]] = {}
    outs = []
    with probe_mode(model):  # eval + no grad; every module's own training flag restored
        ref = reference_norm if reference_norm is not None else _reference_norm(model, prep, layer)
        for vector in vectors:
            p, coh, diff = _curve(model, prep, layer, vector, alphas, positions, ref, length_normalize, unsteered)
            curve = dose_summary(list(map(float, alphas)), p, coh, ref, len(items), readout=readout,
                                 max_nll_increase=max_nll_increase)
            outs.append(replace(curve, positions=positions, split=split, mean_score_diff=tuple(diff),
                                length_normalize=length_normalize if readout == "text" else None))
    return outs


def random_direction_control(loaded: Any, trait: Trait, layer: int, acts: torch.Tensor, *, n_dirs: int = 3,
                             seed: int = 0, shrinkage: float = 0.1, span: tuple[float, float] | None = None,
                             **dose_kwargs: Any) -> RandomDirectionControl:
    """The same dose-response along ``n_dirs`` random unit directions from N(0, Sigma_hat) of ``acts`` [N, d]
    (shrinkage covariance; pass within-class centred extraction activations). Norm-matched by construction:
    the step is ``alpha * r`` whatever the direction. ``effects``: P(matching) at ``span[1]`` minus at ``span[0]``
    (two of the alphas; pass the real curve's first and last coherent alpha so both effects cover the same
    alphas), or each control curve's own coherent effect (``own_effects``) when ``span`` is None."""
    if n_dirs < 1:
        raise ConfigError(bad_value("n_dirs", n_dirs, ">= 1"))
    alphas = [float(a) for a in dose_kwargs.get("alphas", ())]
    if span is not None and not (span[0] in alphas and span[1] in alphas):
        raise ConfigError(bad_value("span", span, "two of the alphas", "Use the real curve's coherent alphas."))
    dirs = covariance_null_directions(acts, n_dirs, norm=1.0, seed=seed, shrinkage=shrinkage)
    curves = _dose_responses(loaded, trait, layer, list(dirs), **dose_kwargs)  # the alpha = 0 point scored once
    own = [c.effect for c in curves]
    if span is None:
        effects = own
    else:
        lo, hi = alphas.index(float(span[0])), alphas.index(float(span[1]))
        effects = [c.p_matching[hi] - c.p_matching[lo] for c in curves]
    return RandomDirectionControl(
        n_dirs=n_dirs, seed=seed, shrinkage=shrinkage, kind="covariance-realistic random unit directions "
        "(within-class extraction covariance), same layer, alphas, positions and readout",
        span=(float(span[0]), float(span[1])) if span is not None else None, effects=tuple(effects),
        own_effects=tuple(own), monotone=tuple(c.monotone for c in curves),
        p_matching=tuple(c.p_matching for c in curves), mean_abs_effect=float(np.mean(np.abs(effects))),
        max_abs_effect=float(np.max(np.abs(effects))))


def answer_text_scores(model: Any, tokenizer: Any, items: Sequence[ABItem], *, batch_size: int = 8,
                       length_normalize: bool = True) -> list[float]:
    """Unsteered ``readout="text"`` score of every item: ``logL(matching) - logL(non-matching)`` of the two answer
    texts teacher-forced as the response to :func:`answer_texts`' stem (per-token means with
    ``length_normalize``). The same tokenisation and log-likelihood as the steering readout; used by the gate's
    behavioural eval. ``model`` is run as given (no steering, no grad)."""
    device = next(model.parameters()).device
    prep = _prepare(tokenizer, items, "text", batch_size)
    out: list[float] = []
    with torch.no_grad():
        for ids, mask, plens, _ in prep.batches:
            ids, mask = ids.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=chat.position_ids(mask),
                           use_cache=False).logits
            total, n = _answer_loglik(logits.cpu(), ids.cpu(), mask.cpu(), plens)  # its sums live on the CPU
            score = total / n.clamp_min(1) if length_normalize else total
            out.extend(float(x) for x in (score[0::2] - score[1::2]).cpu())
    return out
