"""Response-token shifts (persona-vectors paper style): what a candidate SAYS to a trait's evaluation questions.

The last-prompt-token shift of :mod:`difflib_models.persona.shift.core` reads the model before it answers; on a
small model any fine-tune moves that position about as much as a trait-inducing one. Here each model answers the
trait's evaluation questions greedily (``max_new_tokens`` new tokens, batched, KV cache through ``generate``), the
answers are teacher-forced after their prompt, and the residual at ``blocks.L`` is averaged over the answer's
tokens (the response mask: every token after the prompt, i.e. exactly the generated ones). Three shifts per
trait direction, each a :class:`~difflib_models.persona.shift.core.ShiftResult` measured against one
:class:`~difflib_models.persona.shift.core.ShiftBaseline` built from the base's own answers (so ``shift_z``
divides by the base's per-prompt spread and ``null_percentile`` compares with norm-matched, covariance-realistic
null directions drawn from the base's response activations):

- ``own``   candidate on its own answers minus base on its own answers (the paper's monitoring signal);
- ``text``  base on the candidate's answers minus base on its own answers: what the answers say, read by a fixed
  model (the fine-tune's general activation drift cannot enter: the reading model is the base);
- ``model`` candidate minus base, both on the candidate's answers: the same text, the model's change.

``own = text + model`` (up to float rounding). :func:`null_z` is the drift-normalised form of any of them: the
shift in standard deviations of the shifts along the null directions (a signed, continuous ``null_percentile``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.hooks import EarlyStop, probe_mode
from difflib_models.persona.shift.core import ShiftBaseline, ShiftResult, read_residuals
from difflib_models.persona.traits import chat
from difflib_models.stats import bootstrap_mean_ci

__all__ = ["GENERATION_BATCH_MAX", "Direction", "ResponseProbe", "ResponseShift", "generation_batch_size",
           "greedy_responses", "null_z", "null_z_from", "response_activations"]

GENERATION_BATCH_MAX = 32
"""The greedy answers of up to this many questions are generated in one batch (the probe set is small: one batch of
20 takes about half the time of three batches of 8 on SmolLM2, with the same answers); the reads keep their
``batch_size``."""


def generation_batch_size(batch_size: int, n_questions: int) -> int:
    """The generation batch of a probe set: every question in one batch up to :data:`GENERATION_BATCH_MAX`, never
    below the read ``batch_size`` (the gate and the PersonaMonitor use this, so their answers are identical)."""
    return min(max(int(batch_size), int(n_questions)), GENERATION_BATCH_MAX)


def null_z(result: ShiftResult) -> float:
    """:func:`null_z_from` of a :class:`ShiftResult` (its ``shift``, ``null_shifts`` and ``drift_norm``)."""
    return null_z_from(result.shift, result.null_shifts, result.drift_norm)


def null_z_from(shift: float, null_shifts: Sequence[float], drift_norm: float) -> float:
    """The shift in units of the null shifts: (S - mean(null)) / std(null) over the signed shifts along the null
    directions (NaN without at least 2 nulls or with zero spread). A candidate whose mean activation did not move
    at all (``drift_norm == 0``, e.g. a fresh LoRA or the base itself) reads 0: no direction moved, so the trait's
    did not stand out (without this an unchanged model would be an error for the gate, not a pass). A fine-tune
    that moves every direction alike gives |null_z| ~ 1 whatever its size; only a shift that stands out along the
    trait direction gives a large one. Toward the trait's pos pole, like ``shift`` (multiply by the polarity sign
    for toward-undesirable)."""
    if drift_norm == 0.0:
        return 0.0
    nulls = torch.tensor(list(null_shifts), dtype=torch.float64)
    if nulls.numel() < 2:
        return float("nan")
    sd = float(nulls.std())
    return (shift - float(nulls.mean())) / sd if sd > 0 and math.isfinite(sd) else float("nan")


@dataclass(frozen=True)
class Direction:
    """One trait direction to measure along: the raw vector at ``layer`` (``blocks.layer``)."""

    trait: str
    layer: int
    vector: torch.Tensor
    polarity: str = "undesirable"


def greedy_responses(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], *, max_new_tokens: int = 32,
                     batch_size: int = 8, synced_gpus: bool = False) -> list[list[int]]:
    """The model's greedy answer ids to each tokenised prompt: left-padded batches through ``generate`` (KV cache),
    cut after the first EOS (kept); an answer is never empty (a model that stops at once answers its EOS). Eval
    mode and no grad; the train/eval state is restored. ``synced_gpus``: every rank of a process group keeps
    stepping until all are done (``generate``'s option for sharded models, e.g. FSDP, where each forward is a
    collective)."""
    if max_new_tokens < 1:
        raise ConfigError(bad_value("max_new_tokens", max_new_tokens, ">= 1"))
    if batch_size < 1:
        raise ConfigError(bad_value("batch_size", batch_size, ">= 1"))
    device = next(model.parameters()).device
    pad = chat.pad_id(tokenizer)
    eos = getattr(tokenizer, "eos_token_id", None)
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    out: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with probe_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids, mask = chat.pad_batch([list(prompts[i]) for i in idx], pad_token_id=pad, padding_side="left")
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, min_new_tokens=1, pad_token_id=pad,
                                 eos_token_id=sorted(eos_ids) or None, **({"synced_gpus": True} if synced_gpus else {}))
            for row, i in enumerate(idx):
                toks = gen[row, ids.shape[1]:].tolist()
                cut = next((k for k, t in enumerate(toks) if t in eos_ids), None)
                toks = toks[: cut + 1] if cut is not None else toks
                out[i] = toks or [pad]
    return out


def response_activations(model: Any, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]],
                         pad_token_id: int, layers: Sequence[int], *, batch_size: int = 8) -> dict[int, torch.Tensor]:
    """Mean residual over each answer's tokens, with ``prompts[i] + answers[i]`` teacher-forced: {layer: [P, d]}
    (float32, CPU). Response mask :func:`chat.response_mask` (the tokens after the prompt); read in one forward per
    batch through :func:`~difflib_models.persona.shift.core.read_residuals` (the hooks layer's reader)."""
    if len(prompts) != len(answers) or not prompts:
        raise ConfigError(bad_value("answers", len(answers), f"one non-empty answer per prompt ({len(prompts)})"))
    if any(not a for a in answers):
        raise ConfigError(bad_value("answers", "an empty answer", "at least one token per answer"))
    chunks: dict[int, list[torch.Tensor]] = {int(layer): [] for layer in layers}
    with probe_mode(model):
        stop = EarlyStop.decide(model, None)
        for start in range(0, len(prompts), batch_size):
            ps, ans = prompts[start:start + batch_size], answers[start:start + batch_size]
            ids, mask = chat.pad_batch([list(p) + list(a) for p, a in zip(ps, ans, strict=True)],
                                       pad_token_id=pad_token_id, padding_side="right")
            rmask = chat.response_mask(mask, [len(p) for p in ps])
            acts = read_residuals(model, ids, mask, list(chunks), token_mask=rmask, stop_early=stop)
            for layer, t in acts.items():
                chunks[layer].append(t)
    return {layer: torch.cat(ts) for layer, ts in chunks.items()}


@dataclass(frozen=True)
class ResponseShift:
    """One trait direction's response-token shifts of one candidate (see the module docstring).

    ``own`` / ``text`` / ``model`` are :class:`ShiftResult` records against the base's own answers (``shift_z`` in
    units of the base's per-prompt spread; ``null_percentile`` and :func:`null_z` against the null directions).
    ``own_ci`` is the bootstrap CI of the mean per-prompt paired difference (candidate on its answer minus base on
    its answer to the same question), in units of ``shift``. ``answer_tokens`` is the mean answer length per side;
    ``candidate_answers`` the candidate's answer ids (not in :meth:`to_dict`).
    """

    trait: str
    layer: int
    polarity: str
    n_prompts: int
    max_new_tokens: int
    own: ShiftResult
    text: ShiftResult
    model: ShiftResult
    own_ci: tuple[float, float]
    answer_tokens: dict[str, float] = field(default_factory=dict)
    candidate_answers: tuple[tuple[int, ...], ...] = field(default=(), repr=False)

    @property
    def sign(self) -> float:
        return self.own.sign

    def signals(self) -> dict[str, float]:
        """The scalar signals, each TOWARD THE UNDESIRABLE pole (the sign a gate threshold compares)."""
        s = self.sign
        out: dict[str, float] = {}
        for name in ("own", "text", "model"):
            r: ShiftResult = getattr(self, name)
            out[f"{name}_shift"] = s * r.shift
            out[f"{name}_z"] = s * r.shift_z
            out[f"{name}_null_z"] = s * null_z(r)
            out[f"{name}_null_percentile"] = r.null_percentile
        out["own_ci_low"] = s * (self.own_ci[0] if s > 0 else self.own_ci[1])
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("own", "text", "model"):
            d[name].pop("null_shifts", None)
            d[name].pop("projections", None)
        d.pop("candidate_answers", None)
        d["signals"] = self.signals()
        return d


@dataclass(frozen=True, eq=False)
class ResponseProbe:
    """The base's side of the response-token shifts, built once (:meth:`build`): the tokenised questions, the base's
    greedy answers and its response-mean activations at the needed layers. :meth:`measure` measures a candidate."""

    prompts: tuple[tuple[int, ...], ...]
    answers: tuple[tuple[int, ...], ...]
    acts: dict[int, torch.Tensor]
    pad_token_id: int
    max_new_tokens: int
    batch_size: int

    @classmethod
    def build(cls, base: Any, tokenizer: Any, questions: Sequence[str], layers: Sequence[int], *,
              max_new_tokens: int = 32, batch_size: int = 8, system: str | None = None,
              generation_batch_size: int | None = None) -> ResponseProbe:
        """``generation_batch_size`` (default ``batch_size``) batches the greedy answers only; the teacher-forced
        reads use ``batch_size``."""
        prompts = cls.encode(tokenizer, questions, system=system)
        answers = greedy_responses(base, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                   batch_size=generation_batch_size or batch_size)
        pad = chat.pad_id(tokenizer)
        acts = response_activations(base, prompts, answers, pad, sorted(set(int(x) for x in layers)),
                                    batch_size=batch_size)
        return cls(prompts=tuple(tuple(p) for p in prompts), answers=tuple(tuple(a) for a in answers), acts=acts,
                   pad_token_id=pad, max_new_tokens=int(max_new_tokens), batch_size=int(batch_size))

    @staticmethod
    def encode(tokenizer: Any, questions: Sequence[str], *, system: str | None = None) -> list[list[int]]:
        """The chat-formatted prompt ids of ``questions`` (at least 2), as :meth:`build` tokenises them."""
        if len(questions) < 2:
            raise ConfigError(bad_value("questions", len(questions), ">= 2 evaluation questions"))
        return [list(chat.encode_prompt(tokenizer, q, system=system).ids) for q in questions]

    def baseline(self, direction: Direction, *, n_null: int = 32, seed: int = 0) -> ShiftBaseline:
        """The :class:`ShiftBaseline` of the base's own-answer activations along ``direction``."""
        if direction.layer not in self.acts:
            raise ConfigError(bad_value("direction.layer", direction.layer, sorted(self.acts),
                                        "build the probe with every layer you measure"))
        return ShiftBaseline.from_activations(self.acts[direction.layer], direction.vector, gap=None, n_null=n_null,
                                              seed=seed, trait=direction.trait, layer=direction.layer,
                                              polarity=direction.polarity)

    def measure(self, base: Any, candidate: Any, tokenizer: Any, directions: Sequence[Direction], *,
                n_null: int = 32, seed: int = 0, n_boot: int = 1000) -> list[ResponseShift]:
        """The candidate's response-token shifts along every direction: it answers greedily once; its answers are
        read by the candidate and by ``base`` (the model this probe was built on)."""
        if not directions:
            raise ConfigError(bad_value("directions", [], "at least one trait direction"))
        layers = sorted({int(d.layer) for d in directions})
        cand_answers = greedy_responses(candidate, tokenizer, self.prompts, max_new_tokens=self.max_new_tokens,
                                        batch_size=self.batch_size)
        cand_own = self.read(candidate, cand_answers, layers)
        base_on_cand = self.read(base, cand_answers, layers)
        return self.shifts(directions, cand_answers, cand_own, base_on_cand, n_null=n_null, seed=seed,
                           n_boot=n_boot)

    def read(self, model: Any, answers: Sequence[Sequence[int]], layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """``model``'s response-mean activations on ``answers`` to this probe's questions: {layer: [P, d]}."""
        return response_activations(model, self.prompts, answers, self.pad_token_id, layers,
                                    batch_size=self.batch_size)

    def shifts(self, directions: Sequence[Direction], cand_answers: Sequence[Sequence[int]],
               cand_own: dict[int, torch.Tensor], base_on_cand: dict[int, torch.Tensor], *, n_null: int = 32,
               seed: int = 0, n_boot: int = 1000) -> list[ResponseShift]:
        """The shifts from already read activations (:meth:`measure` in steps, for callers that cannot hold the
        base and the candidate at once): ``cand_own`` the candidate on its answers, ``base_on_cand`` the base on
        them (both from :meth:`read`)."""
        lengths = {"base": sum(map(len, self.answers)) / len(self.answers),
                   "candidate": sum(map(len, cand_answers)) / len(cand_answers)}
        out = []
        for d in directions:
            bl = self.baseline(d, n_null=n_null, seed=seed)
            own = bl.measure(cand_own[d.layer])
            text = bl.measure(base_on_cand[d.layer])
            # same text, the model's change: the shift's m_0 is the base on the candidate's answers
            same_text = ShiftBaseline(trait=d.trait, layer=d.layer, polarity=d.polarity, unit=bl.unit,
                                      m0=base_on_cand[d.layer].double().mean(dim=0), projections=bl.projections,
                                      sigma0=bl.sigma0, null_dirs=bl.null_dirs, null_seed=bl.null_seed, gap=None,
                                      n_prompts=bl.n_prompts)
            model = same_text.measure(cand_own[d.layer])
            diffs = [c - b for c, b in zip(own.projections, bl.projections.tolist(), strict=True)]
            out.append(ResponseShift(trait=d.trait, layer=d.layer, polarity=d.polarity, n_prompts=len(self.prompts),
                                     max_new_tokens=self.max_new_tokens, own=own, text=text, model=model,
                                     own_ci=bootstrap_mean_ci(diffs, n_boot=n_boot, seed=seed),
                                     answer_tokens=lengths,
                                     candidate_answers=tuple(tuple(a) for a in cand_answers)))
        return out
