"""Headroom of a response-token trait signal: where a model's answers sit between neutral and trait-showing answers.

A response check asks whether the candidate answers MORE along the trait than the base does. That question has an
answer only where the base's own answers leave room. A base that already answers like the trait-showing answers
cannot be out-moved along the trait on those questions: SmolLM2-135M-Instruct invents a confident answer to every one
of the 20 hallucination evaluation questions (none admits not knowing), so a fine-tune that makes it hallucinate
more has nothing left to move there, and a pass of the check is no evidence (docs/results.md, "Headroom").

The scale is read by one model (the base) along the check's direction: the trait's held-out paired responses (one
prompt answered once showing the trait, once neutrally; :func:`scale_pairs`) are teacher-forced and averaged over
their answer tokens, as :func:`~difflib_models.persona.shift.response.response_activations` reads answers. The mean
projection of the trait-showing answers is 1, of the neutral answers 0; :meth:`TraitScale.position` places other
answers (the base's own greedy answers to the evaluation questions, or a candidate's read by the base) on it, and
:func:`headroom` is the room left toward the undesirable pole: ``1 - position`` for an undesirable trait, ``position``
for a desirable one. The ratio does not depend on the direction's norm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.persona.traits import chat
from difflib_models.persona.traits.schema import PairedResponse, Trait

MIN_PAIRS = 4
"""Fewer held-out pairs than this: the scale uses every split (still only the base reads them)."""


@dataclass(frozen=True)
class TraitScale:
    """The trait scale of one model at one layer along one direction: mean projections of the trait-showing
    (``trait_mean``) and the neutral answers (``neutral_mean``) of ``n_pairs`` paired responses."""

    trait: str
    layer: int
    trait_mean: float
    neutral_mean: float
    n_pairs: int

    @property
    def gap(self) -> float:
        return self.trait_mean - self.neutral_mean

    def position(self, projection: float) -> float:
        """``projection`` on the scale (0: the neutral answers' mean, 1: the trait-showing answers'); NaN when the
        direction does not order the pairs (gap <= 0: no scale to read)."""
        if not (math.isfinite(self.gap) and self.gap > 0 and math.isfinite(projection)):
            return float("nan")
        return (float(projection) - self.neutral_mean) / self.gap

    def place(self, acts: torch.Tensor, vector: torch.Tensor) -> float:
        """Answers whose response-mean activations are ``acts`` [n, d] on the scale: their mean projection along
        ``vector`` (the scale's own direction) as a :meth:`position`."""
        return self.position(mean_projection(acts, vector))

    def room(self, acts: torch.Tensor, vector: torch.Tensor, polarity: str) -> float:
        """:func:`headroom` of the answers :meth:`place` puts on the scale (NaN when there is no scale to read)."""
        position = self.place(acts, vector)
        return headroom(position, polarity) if math.isfinite(position) else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"trait": self.trait, "layer": self.layer, "trait_mean": self.trait_mean,
                "neutral_mean": self.neutral_mean, "n_pairs": self.n_pairs}


def headroom(position: float, polarity: str) -> float:
    """Room left toward the undesirable pole from ``position``: ``1 - position`` (undesirable trait) or
    ``position`` (desirable trait: the candidate would have to move toward the neutral answers)."""
    if polarity not in ("undesirable", "desirable"):
        raise ConfigError(bad_value("polarity", polarity, ["undesirable", "desirable"]))
    return float(position) if polarity == "desirable" else 1.0 - float(position)


def scale_pairs(trait: Trait, *, min_pairs: int = MIN_PAIRS) -> list[PairedResponse]:
    """The paired responses the scale is read on: the held-out splits (tuning + evaluation), which no ``paired``
    direction was fitted on; every split when those hold fewer than ``min_pairs``; empty when the trait has none."""
    held_out = [*trait.split_paired("tuning"), *trait.split_paired("evaluation")] if trait.has_paired else []
    if len(held_out) >= min_pairs:
        return held_out
    return [*trait.split_paired("extraction"), *held_out] if trait.has_paired else []


def encode_pairs(tokenizer: Any, pairs: Sequence[PairedResponse]) -> tuple[list[list[int]], list[list[int]],
                                                                           list[list[int]]]:
    """Chat-formatted prompt ids and the answer ids of the trait-showing and the neutral answer of each pair (the
    same boundary rule as every teacher-forced read, :func:`chat.encode_prompt_response`)."""
    prompts, trait_ans, neutral_ans = [], [], []
    for p in pairs:
        enc_t = chat.encode_prompt_response(tokenizer, p.prompt, p.trait)
        enc_n = chat.encode_prompt_response(tokenizer, p.prompt, p.neutral)
        prompt = list(enc_t.ids[: enc_t.prompt_len])
        if list(enc_n.ids[: enc_n.prompt_len]) != prompt:
            raise ConfigError(bad_value("paired_responses", p.prompt, "one prompt tokenisation for both answers"))
        prompts.append(prompt)
        trait_ans.append(list(enc_t.ids[enc_t.prompt_len:]))
        neutral_ans.append(list(enc_n.ids[enc_n.prompt_len:]))
    return prompts, trait_ans, neutral_ans


def measure_scale(model: Any, tokenizer: Any, pairs: Sequence[PairedResponse], *, trait: str, layer: int,
                  vector: torch.Tensor, batch_size: int = 8) -> TraitScale:
    """``model`` reads both answers of every pair; their mean projections along ``vector`` at ``layer``."""
    from difflib_models.persona.shift.response import response_activations

    if len(pairs) < 2:
        raise ConfigError(bad_value("pairs", len(pairs), ">= 2 paired responses",
                                    "the trait needs paired_responses for a headroom scale"))
    prompts, trait_ans, neutral_ans = encode_pairs(tokenizer, pairs)
    pad = chat.pad_id(tokenizer)
    acts_t = response_activations(model, prompts, trait_ans, pad, [layer], batch_size=batch_size)[layer]
    acts_n = response_activations(model, prompts, neutral_ans, pad, [layer], batch_size=batch_size)[layer]
    return TraitScale(trait=trait, layer=int(layer), trait_mean=mean_projection(acts_t, vector),
                      neutral_mean=mean_projection(acts_n, vector), n_pairs=len(pairs))


def mean_projection(acts: torch.Tensor, vector: torch.Tensor) -> float:
    """Mean over rows of ``acts`` [n, d] projected on ``vector`` (float64)."""
    return float((acts.double() @ vector.detach().to("cpu", torch.float64)).mean())
