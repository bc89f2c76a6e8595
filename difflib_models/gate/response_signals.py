"""Response-token persona signals for the gate's optional ``persona.response_*`` metrics.

The default persona metrics read the last prompt token. These read what each model answers to the trait's evaluation
questions (:mod:`difflib_models.persona.shift.response`): the base and the candidate answer greedily
(``persona.response_tokens`` new tokens), the answers are teacher-forced and the residual is averaged over the
answer tokens. Fields added to the trait's persona row (along the trait direction, like ``shift``; the engine flips
them for desirable traits):

- ``response_shift`` / ``response_z``: candidate on its answers minus base on its answers (raw / in base
  per-prompt standard deviations);
- ``response_null_z``: the same in standard deviations of the shifts along the row's null directions (drawn from
  the base's response activations);
- ``response_text_shift`` / ``response_text_z``: the base reading the candidate's answers minus its own (what the
  answers say; ``response_shift - response_text_shift`` is the candidate's change on the same text);
- ``response_base_position`` / ``response_candidate_position`` / ``response_headroom``: the base's and the
  candidate's answers (both read by the base) on the trait scale of the trait's held-out paired responses (0 =
  neutral, 1 = trait-showing answers), and the room the base leaves toward the undesirable pole
  (:mod:`difflib_models.persona.shift.headroom`); None when the trait has no paired responses;
- ``response_position_shift``: candidate position minus base position (toward the trait-showing answers; the
  engine flips it for desirable traits): the share of the neutral-to-trait distance the candidate's answers moved,
  read by the base alone;
- ``response_control_position`` / ``response_position_excess`` (only with a control): the matched control's
  greedy answers on the same scale (read by the base) and the candidate's position minus the control's: how much
  further toward the trait the candidate's answers sit than those of a benign fine-tune of the same recipe (a
  fine-tune toward short direct answers moves both, so it cancels).

Computed only for traits that a ``persona.response_*`` check names. Each model runs on its own (base, candidate,
control, base again), so a candidate that is the base's own peft model with the adapter disabled works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from difflib_models.finite import finite_or_none
from difflib_models.gate import base_cache
from difflib_models.gate.behavioural import model_view
from difflib_models.persona.shift.headroom import TraitScale, measure_scale
from difflib_models.persona.shift.response import (
    Direction,
    ResponseProbe,
    generation_batch_size,
    greedy_responses,
    null_z,
)
from difflib_models.persona.traits.schema import PairedResponse
from difflib_models.report.records import ResponseSignals

RESPONSE_FIELDS = ResponseSignals.FIELDS


def response_fields(sides: Mapping[str, tuple[Any, str]], questions: Sequence[str], layer: int,
                    vector: torch.Tensor, *, trait: str, polarity: str, max_new_tokens: int, n_null: int, seed: int,
                    batch_size: int, use_cache: bool = False,
                    scale_pairs: Sequence[PairedResponse] = ()) -> ResponseSignals:
    """The ``response_*`` fields of one trait's persona row (see the module docstring). ``use_cache``: the base's
    side (its answers and their activations, the trait scale) from / into the per-base cache
    (:mod:`difflib_models.gate.base_cache`). ``scale_pairs``: the paired responses of the headroom scale
    (:func:`~difflib_models.persona.shift.headroom.scale_pairs`; fewer than 2: no headroom fields)."""
    base_loaded, base_side = sides["base"]
    cand_loaded, cand_side = sides["candidate"]
    tok = base_loaded.tokenizer
    gen_batch = generation_batch_size(batch_size, len(questions))
    probe = _base_probe(base_loaded, base_side, questions, layer, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, generation_batch_size=gen_batch, use_cache=use_cache)
    with model_view(cand_loaded, cand_side) as cand:
        answers = greedy_responses(cand, tok, probe.prompts, max_new_tokens=max_new_tokens, batch_size=gen_batch)
        own = probe.read(cand, answers, [layer])
    has_scale = len(scale_pairs) >= 2
    ctl_answers = None
    if has_scale and "control" in sides:  # the control's answers only matter on the trait scale
        ctl_loaded, ctl_side = sides["control"]
        with model_view(ctl_loaded, ctl_side) as ctl:
            ctl_answers = greedy_responses(ctl, tok, probe.prompts, max_new_tokens=max_new_tokens,
                                           batch_size=gen_batch)
    with model_view(base_loaded, base_side) as base:
        text = probe.read(base, answers, [layer])
        ctl_text = probe.read(base, ctl_answers, [layer]) if ctl_answers is not None else None
    (res,) = probe.shifts([Direction(trait, layer, vector, polarity)], answers, own, text, n_null=n_null, seed=seed)
    base_pos = cand_pos = room = moved = ctl_pos = excess = None
    if has_scale:
        scale = _base_scale(base_loaded, base_side, scale_pairs, trait=trait, layer=layer, vector=vector,
                            batch_size=batch_size, use_cache=use_cache)
        base_pos = finite_or_none(scale.place(probe.acts[layer], vector))
        cand_pos = finite_or_none(scale.place(text[layer], vector))
        room = finite_or_none(scale.room(probe.acts[layer], vector, polarity))
        moved = cand_pos - base_pos if cand_pos is not None and base_pos is not None else None
        if ctl_text is not None:
            ctl_pos = finite_or_none(scale.place(ctl_text[layer], vector))
            excess = cand_pos - ctl_pos if cand_pos is not None and ctl_pos is not None else None
    return ResponseSignals(response_shift=res.own.shift, response_z=finite_or_none(res.own.shift_z),
                           response_null_z=finite_or_none(null_z(res.own)), response_text_shift=res.text.shift,
                           response_text_z=finite_or_none(res.text.shift_z), response_base_position=base_pos,
                           response_candidate_position=cand_pos, response_headroom=room,
                           response_position_shift=moved, response_control_position=ctl_pos,
                           response_position_excess=excess)


def _base_scale(loaded: Any, side: str, pairs: Sequence[PairedResponse], *, trait: str, layer: int,
                vector: torch.Tensor, batch_size: int, use_cache: bool) -> TraitScale:
    """The base's :class:`TraitScale` along ``vector``: cached per base like the probe."""
    key = base_cache.key_for(loaded, side, "trait_scale", {
        "pairs": [[p.prompt, p.trait, p.neutral] for p in pairs], "layer": int(layer), "batch_size": int(batch_size),
        "vector": base_cache.vector_digest(vector)}) if use_cache else None
    if key is not None:
        cached = base_cache.load_scale(key, trait=trait, layer=layer)
        if cached is not None:
            return cached
    with model_view(loaded, side) as base:
        scale = measure_scale(base, loaded.tokenizer, pairs, trait=trait, layer=layer, vector=vector,
                              batch_size=batch_size)
    if key is not None:
        base_cache.store_scale(key, scale)
    return scale


def _base_probe(loaded: Any, side: str, questions: Sequence[str], layer: int, *, max_new_tokens: int,
                batch_size: int, generation_batch_size: int, use_cache: bool) -> ResponseProbe:
    """The base's :class:`ResponseProbe`: from the per-base cache when ``use_cache`` and an entry for exactly these
    questions, layer, settings and model exists; else built (and stored when ``use_cache``)."""
    key = base_cache.key_for(loaded, side, "response_probe", {
        "questions": list(questions), "layers": [int(layer)], "max_new_tokens": int(max_new_tokens),
        "batch_size": int(batch_size), "generation_batch_size": int(generation_batch_size)}) if use_cache else None
    if key is not None:
        cached = base_cache.load_probe(key, ResponseProbe.encode(loaded.tokenizer, questions))
        if cached is not None:
            return cached
    with model_view(loaded, side) as base:
        probe = ResponseProbe.build(base, loaded.tokenizer, questions, [layer], max_new_tokens=max_new_tokens,
                                    batch_size=batch_size, generation_batch_size=generation_batch_size)
    if key is not None:
        base_cache.store_probe(key, probe)
    return probe
