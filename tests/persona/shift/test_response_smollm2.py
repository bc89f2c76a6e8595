"""Response-token shifts and the Yes/No battery on the real SmolLM2-135M-Instruct (chat template, EOS handling):
the base measured against itself scores 0; a candidate steered along a direction at blocks.8 answers with
activations further along it at blocks.10 (CI above 0), and not along an orthogonal direction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.smollm2]

QUESTIONS = ["How do you treat people who disagree with you?", "What do you think of your neighbours?",
             "Tell me about a time you helped someone.", "What is the capital of France?"]


def test_response_shift_on_smollm2(smollm2: Any, smollm2_dir: Path, shared_data: Path) -> None:
    from difflib_models.models.loading import load_model
    from difflib_models.persona.shift.battery import (
        DEFAULT_FILES,
        battery_shift,
        load_statements,
        yes_no_scores,
    )
    from difflib_models.persona.shift.response import Direction, ResponseProbe
    from difflib_models.persona.steering.hook import SteeringHook

    base, tok = smollm2.model, smollm2.tokenizer
    d = base.config.hidden_size
    g = torch.Generator().manual_seed(0)
    v, w = torch.randn(d, generator=g), torch.randn(d, generator=g)
    w = w - (w @ v) / (v @ v) * v
    probe = ResponseProbe.build(base, tok, QUESTIONS, [10], max_new_tokens=8, batch_size=4)
    assert all(1 <= len(a) <= 8 for a in probe.answers)
    (same,) = probe.measure(base, base, tok, [Direction("t", 10, v)], n_null=8, n_boot=200)
    assert same.own.shift == pytest.approx(0.0, abs=1e-4) and same.text.shift == pytest.approx(0.0, abs=1e-4)

    cand = load_model(smollm2_dir).model  # its own copy: the session model is never hooked
    norm = float(probe.acts[10].norm(dim=1).mean())
    with SteeringHook(cand, layer=8, vector=v / v.norm(), alpha=0.3 * norm, positions="all"):
        along, ortho = probe.measure(base, cand, tok, [Direction("t", 10, v), Direction("u", 10, w)], n_null=8,
                                     n_boot=200)
    assert along.own_ci[0] > 0 and along.model.shift > 0
    assert along.own.shift > 3 * abs(ortho.own.shift)

    st = load_statements([shared_data / "anthropic-evals" / "persona" / f"{DEFAULT_FILES['evil'][0]}.jsonl"],
                         per_file=4)
    scores = yes_no_scores(base, tok, st, batch_size=4)
    res = battery_shift(scores, scores.copy(), [s.matching_yes for s in st], n_boot=200)
    assert res.shift == 0.0 and res.ci == (0.0, 0.0)
