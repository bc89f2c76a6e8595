"""The trait scale of :mod:`difflib_models.persona.shift.headroom` on a config-built tiny Llama: the scale's own
trait-showing answers sit at exactly 1 and its neutral answers at 0 (any direction that orders them; the ratio does
not depend on the norm), a direction that does not order them gives no scale (NaN), ``headroom`` by polarity, and
:func:`scale_pairs` reads the held-out splits only."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.shift.headroom import (
    TraitScale,
    encode_pairs,
    headroom,
    mean_projection,
    measure_scale,
    scale_pairs,
)
from difflib_models.persona.shift.response import response_activations
from difflib_models.persona.traits import chat
from difflib_models.persona.traits.loading import load_trait
from tests.persona.shift.test_response import tiny  # noqa: F401 - the shared fixture

LAYER = 1


def _acts(model, tok, pairs):
    prompts, t_ans, n_ans = encode_pairs(tok, pairs)
    pad = chat.pad_id(tok)
    return (response_activations(model, prompts, t_ans, pad, [LAYER], batch_size=4)[LAYER],
            response_activations(model, prompts, n_ans, pad, [LAYER], batch_size=4)[LAYER])


def test_scale_answers_sit_at_zero_and_one(tiny) -> None:  # noqa: F811
    model, tok = tiny
    pairs = scale_pairs(load_trait("hallucination"))
    acts_t, acts_n = _acts(model, tok, pairs)
    v = acts_t.mean(0) - acts_n.mean(0)  # orders the pairs by construction
    for scale_v in (v, 7.5 * v):  # the position does not depend on the direction's norm
        scale = measure_scale(model, tok, pairs, trait="hallucination", layer=LAYER, vector=scale_v, batch_size=3)
        assert scale.n_pairs == len(pairs) and scale.gap > 0
        assert scale.position(mean_projection(acts_t, scale_v)) == pytest.approx(1.0, abs=1e-6)
        assert scale.position(mean_projection(acts_n, scale_v)) == pytest.approx(0.0, abs=1e-6)
        mixed = torch.cat([acts_t[:4], acts_n[4:]])
        expect = (mean_projection(mixed, v) - mean_projection(acts_n, v)) / (mean_projection(acts_t, v)
                                                                            - mean_projection(acts_n, v))
        assert scale.position(mean_projection(mixed, scale_v)) == pytest.approx(expect, rel=1e-6)
        # place / room: the same position read from the activations, and the room left on either pole
        assert scale.place(mixed, scale_v) == pytest.approx(expect, rel=1e-6)
        assert scale.room(mixed, scale_v, "undesirable") == pytest.approx(1 - expect, rel=1e-6)
        assert scale.room(mixed, scale_v, "desirable") == pytest.approx(expect, rel=1e-6)
    flipped = measure_scale(model, tok, pairs, trait="hallucination", layer=LAYER, vector=-v, batch_size=3)
    assert flipped.gap < 0 and math.isnan(flipped.position(0.0))  # a direction that does not order them: no scale
    assert math.isnan(flipped.room(acts_t, -v, "undesirable"))  # no scale, no room (not an error)


def test_headroom_by_polarity_and_bad_input() -> None:
    assert headroom(0.89, "undesirable") == pytest.approx(0.11)
    assert headroom(0.89, "desirable") == pytest.approx(0.89)
    assert headroom(-0.6, "undesirable") == pytest.approx(1.6)
    with pytest.raises(ConfigError, match="polarity"):
        headroom(0.5, "sideways")
    scale = TraitScale(trait="t", layer=0, trait_mean=2.0, neutral_mean=2.0, n_pairs=4)
    assert math.isnan(scale.position(1.0)) and scale.to_dict()["n_pairs"] == 4


def test_scale_pairs_are_held_out(tiny) -> None:  # noqa: F811
    trait = load_trait("hallucination")
    held = scale_pairs(trait)
    extraction = {p.prompt for p in trait.split_paired("extraction")}
    assert len(held) >= 4 and not extraction & {p.prompt for p in held}
    few = dataclasses.replace(trait, paired_responses={"extraction": tuple(trait.split_paired("extraction")),
                                                       "evaluation": tuple(trait.split_paired("evaluation")[:2])})
    assert len(scale_pairs(few)) == len(trait.split_paired("extraction")) + 2  # too few held out: every split
    assert scale_pairs(dataclasses.replace(trait, paired_responses={})) == []
    model, tok = tiny
    with pytest.raises(ConfigError, match="pairs"):
        measure_scale(model, tok, held[:1], trait="hallucination", layer=LAYER, vector=torch.ones(48))
