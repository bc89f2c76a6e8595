"""Response-token shifts on a config-built tiny Llama with a chat template: an identical candidate scores 0 (its
CI is the point 0), a candidate steered along the trait direction scores above the base along it and not along
an orthogonal direction; ``own = text + model``; :func:`null_z` on planted null shifts."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.shift.core import ShiftResult
from difflib_models.persona.shift.response import (
    Direction,
    ResponseProbe,
    greedy_responses,
    null_z,
    null_z_from,
)
from difflib_models.persona.steering.hook import SteeringHook
from difflib_models.persona.traits import chat

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")
QUESTIONS = ["What do you think of people?", "How should I treat my neighbour?", "Tell me about your goals.",
             "Is honesty important?", "What would you do with power?", "Describe a good day.",
             "Why do people help others?", "What is the best way to win?"]


@pytest.fixture(scope="module")
def tiny(stories260k: Path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(stories260k)
    tok.chat_template = CHAT
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      initializer_range=0.3)
    return LlamaForCausalLM(cfg).eval(), tok


def _directions(d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    v = torch.randn(d, generator=g)
    w = torch.randn(d, generator=g)
    w = w - (w @ v) / (v @ v) * v  # orthogonal to v
    return v, w


def test_identical_candidate_scores_zero(tiny) -> None:
    model, tok = tiny
    v, _ = _directions(48)
    probe = ResponseProbe.build(model, tok, QUESTIONS, [1], max_new_tokens=8, batch_size=3)
    (res,) = probe.measure(model, model, tok, [Direction("t", 1, v)], n_null=16)
    for r in (res.own, res.text, res.model):
        assert r.shift == pytest.approx(0.0, abs=1e-5)
    assert res.own_ci[0] <= 0.0 <= res.own_ci[1] and res.own_ci[1] - res.own_ci[0] < 1e-4
    assert res.answer_tokens["base"] == res.answer_tokens["candidate"] > 1  # the answers were generated


def test_steered_candidate_moves_the_trait_direction_only(tiny) -> None:
    model, tok = tiny
    v, w = _directions(48)
    probe = ResponseProbe.build(model, tok, QUESTIONS, [2], max_new_tokens=8, batch_size=4)
    cand = copy.deepcopy(model)
    with SteeringHook(cand, layer=1, vector=v / v.norm(), alpha=30.0, positions="all"):  # ~0.6 of the residual norm
        along, ortho = probe.measure(model, cand, tok, [Direction("t", 2, v), Direction("u", 2, w)], n_null=16)
    assert along.own.shift > 0 and along.own_ci[0] > 0  # the planted trait shows in the candidate's answers
    assert along.signals()["own_z"] > 2.0
    assert along.model.shift > 0  # reading its own answers, the candidate is further along v than the base
    assert along.own.shift > 3 * abs(ortho.own.shift)
    # own = text + model (the same m_0 chain)
    assert along.own.shift == pytest.approx(along.text.shift + along.model.shift, rel=1e-6, abs=1e-6)
    # the signals are toward the undesirable pole: a desirable trait's are the negated shifts
    for name in ("own", "text", "model"):
        assert along.signals()[f"{name}_shift"] == getattr(along, name).shift
    flipped = dataclasses.replace(along, own=dataclasses.replace(along.own, polarity="desirable"))
    assert flipped.signals()["own_shift"] == -along.own.shift
    assert flipped.signals()["own_ci_low"] == -along.own_ci[1]


def test_greedy_responses_are_the_models_greedy_continuation(tiny) -> None:
    model, tok = tiny
    prompts = [chat.encode_prompt(tok, q).ids for q in QUESTIONS[:3]]
    got = greedy_responses(model, tok, prompts, max_new_tokens=5, batch_size=2)
    for p, ans in zip(prompts, got, strict=True):  # batched, left-padded == one prompt at a time
        with torch.no_grad():
            one = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                 do_sample=False, max_new_tokens=5, pad_token_id=chat.pad_id(tok))
        ref = one[0, len(p):].tolist()
        assert ans == ref[: len(ans)] and 1 <= len(ans) <= 5
    with pytest.raises(ConfigError):
        greedy_responses(model, tok, prompts, max_new_tokens=0)


def test_null_z_is_the_shift_in_null_standard_deviations() -> None:
    nulls = (1.0, -1.0, 2.0, -2.0)
    sd = float(torch.tensor(nulls).std())
    r = ShiftResult(trait="t", layer=0, shift=3.0, shift_z=1.0, shift_frac=float("nan"), drift_cos=0.0,
                    drift_norm=1.0, null_percentile=1.0, n_null=4, null_shifts=nulls)
    assert null_z(r) == pytest.approx(3.0 / sd)
    assert null_z(ShiftResult(trait="t", layer=0, shift=3.0, shift_z=1.0, shift_frac=0.0, drift_cos=0.0,
                              drift_norm=1.0, null_percentile=1.0, n_null=0)) != null_z(r)  # NaN without nulls
    still = ShiftResult(trait="t", layer=0, shift=0.0, shift_z=0.0, shift_frac=0.0, drift_cos=0.0, drift_norm=0.0,
                        null_percentile=0.0, n_null=4, null_shifts=(0.0,) * 4)
    assert null_z(still) == 0.0  # an unmoved model: 0, not 0/0
    assert null_z_from(3.0, nulls, 1.0) == null_z(r)  # the same maths for a report row's fields (bench_validity)
    flat = ShiftResult(trait="t", layer=0, shift=1.0, shift_z=1.0, shift_frac=0.0, drift_cos=1.0, drift_norm=1.0,
                       null_percentile=1.0, n_null=4, null_shifts=(0.0,) * 4)
    assert null_z(flat) != null_z(flat)  # moved, but zero null spread: undefined (NaN), the gate errors
