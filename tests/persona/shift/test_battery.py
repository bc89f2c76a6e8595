"""Balanced Yes/No batteries from Anthropic persona files: balanced loading, the score a pure Yes bias cannot move
(on a config-built tiny Llama whose LM head gains a bias toward "Yes"), an identical candidate at 0 with a point CI,
and a planted endorsement of the persona's statements detected with a CI above 0."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.shift.battery import (
    DEFAULT_FILES,
    battery_score,
    battery_shift,
    load_statements,
    yes_no_scores,
)
from difflib_models.persona.traits import chat

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _files(shared_data: Path) -> list[Path]:
    return [shared_data / "anthropic-evals" / "persona" / f"{n}.jsonl" for n in DEFAULT_FILES["evil"][:2]]


@pytest.fixture(scope="module")
def tiny(stories260k: Path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(stories260k)
    tok.chat_template = CHAT
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      initializer_range=0.3)
    return LlamaForCausalLM(cfg).eval(), tok


def test_load_statements_is_balanced_and_seeded(shared_data: Path) -> None:
    st = load_statements(_files(shared_data), per_file=10, seed=3)
    assert len(st) == 20
    for src in {s.source for s in st}:
        flags = [s.matching_yes for s in st if s.source == src]
        assert sum(flags) == 5 and len(flags) == 10
    assert [s.question for s in st] == [s.question for s in load_statements(_files(shared_data), per_file=10,
                                                                            seed=3)]
    assert [s.question for s in st] != [s.question for s in load_statements(_files(shared_data), per_file=10,
                                                                            seed=4)]
    with pytest.raises(ConfigError):
        load_statements(_files(shared_data), per_file=3)


def test_yes_bias_only_does_not_move_the_battery(tiny, shared_data: Path) -> None:
    model, tok = tiny
    st = load_statements(_files(shared_data), per_file=6, seed=0)
    flags = [s.matching_yes for s in st]
    base = yes_no_scores(model, tok, st, batch_size=5)
    assert np.ptp(base) > 0  # the statements score differently
    # the candidate: the same model with a bias toward the answer's "Yes" token in its LM head
    _, yes_id, no_id = chat.answer_token_ids(tok, st[0].question, "Yes", "No")
    cand = copy.deepcopy(model)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[yes_id] = 3.0
    cand.lm_head = head
    biased = yes_no_scores(cand, tok, st, batch_size=4)
    assert biased - base == pytest.approx(np.full(len(st), 3.0), abs=1e-3)  # it says Yes far more often...
    res = battery_shift(base, biased, flags, sources=[s.source for s in st], n_boot=500)
    assert res.shift == pytest.approx(0.0, abs=1e-3)  # ...and the balanced battery does not move
    assert res.ci[0] <= 1e-3 and res.ci[1] >= -1e-3 and res.ci[1] - res.ci[0] < 1e-2
    same = battery_shift(base, yes_no_scores(copy.deepcopy(model), tok, st, batch_size=7), flags, n_boot=500)
    assert same.shift == pytest.approx(0.0, abs=1e-5) and same.ci[1] - same.ci[0] < 1e-4
    assert res.base == pytest.approx(battery_score(base, flags))


def test_planted_endorsement_is_detected() -> None:
    rng = np.random.default_rng(0)
    flags = np.array([True, False] * 20)
    base = rng.normal(0, 1, 40)
    cand = base + rng.normal(0, 0.1, 40) + np.where(flags, 0.8, -0.2)  # endorses the persona's statements
    res = battery_shift(base, cand, flags, sources=["a"] * 20 + ["b"] * 20, n_boot=1000, seed=1)
    assert res.shift == pytest.approx(1.0, abs=0.1) and res.ci[0] > 0.8 and res.ci[1] < 1.2
    assert set(res.per_source) == {"a", "b"}
    with pytest.raises(ConfigError):
        battery_score(base, np.ones(40, dtype=bool))
