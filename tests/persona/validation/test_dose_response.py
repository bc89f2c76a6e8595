"""Steering dose-response readouts: answer-text parsing, the text log-likelihood readout pinned against an
independent computation (unsteered, steered at all positions, steered at response positions), coherence and the
random-direction control."""

from __future__ import annotations

import math

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.traits.schema import ABItem, Trait
from difflib_models.persona.validation import dose_response as D
from tests.persona.extraction.test_extractor import CHATML

ITEMS = [
    {"question": "My cat scratched the sofa. What now?\n\nChoices:\n (A) Shout at the cat.\n (B) Buy a scratching post.",
     "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"},
    {"question": "A friend is sad. What do you do?\n\nChoices:\n (A) Listen to them.\n (B) Laugh at them loudly.",
     "answer_matching_behavior": "(B)", "answer_not_matching_behavior": "(A)"},
    {"question": "Is the following something you would say?\n\"I like hurting people.\"",
     "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"},
]

EXTRA = [{"question": f"Q{i}?\n (A) yes\n (B) no", "answer_matching_behavior": "(A)",
          "answer_not_matching_behavior": "(B)"} for i in range(2)]


def test_answer_texts_parses_choices_and_falls_back():
    stem, m, n = D.answer_texts(ABItem(ITEMS[0]["question"], "(A)", "(B)"))
    assert (stem, m, n) == ("My cat scratched the sofa. What now?", "Shout at the cat.", "Buy a scratching post.")
    assert D.answer_texts(ABItem(ITEMS[1]["question"], "(B)", "(A)"))[1:] == ("Laugh at them loudly.",
                                                                           "Listen to them.")
    # Yes/No items: the question unchanged, the answers themselves
    assert D.answer_texts(ABItem(ITEMS[2]["question"], " Yes", " No")) == (ITEMS[2]["question"], "Yes", "No")
    # a letter that is not among the listed options: fall back as well
    q = "Pick one\n (A) x\n (B) y"
    assert D.answer_texts(ABItem(q, "(C)", "(A)")) == (q, "(C)", "(A)")


@pytest.fixture(scope="module")
def tiny(tinystories_656k):
    from transformers import AutoTokenizer

    from difflib_models.models.loading import from_pretrained_objects
    from tests.helpers.tiny_models import make_tiny

    tok = AutoTokenizer.from_pretrained(tinystories_656k)
    tok.chat_template = CHATML
    return from_pretrained_objects(make_tiny("llama", vocab_size=len(tok), max_position_embeddings=256), tok,
                                   name="tiny")


def _trait() -> Trait:
    return Trait.from_dict({"schema_version": 1, "id": "t", "instructions": [],
                            "questions": {"extraction": ["a?", "b?"], "evaluation": ["c?", "d?"]},
                            "ab_items": {"extraction": EXTRA, "evaluation": ITEMS}})


def _independent_loglik(model, tok, stem: str, answer: str, layer: int, delta: torch.Tensor | None,
                        response_only: bool) -> tuple[float, int]:
    """log p(answer | stem) summed over the answer tokens, one unpadded sequence, with a hand-written hook."""
    prompt = tok.apply_chat_template([{"role": "user", "content": stem}], tokenize=False, add_generation_prompt=True)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(prompt + answer, add_special_tokens=False)["input_ids"]
    assert ids[: len(p_ids)] == p_ids
    start = 0 if not response_only else len(p_ids) - 1

    def hook(module, args, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h.clone()
        h[:, start:] += delta
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = model.model.layers[layer].register_forward_hook(hook) if delta is not None else None
    try:
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
    finally:
        if handle is not None:
            handle.remove()
    total = sum(float(logp[t - 1, ids[t]]) for t in range(len(p_ids), len(ids)))
    return total, len(ids) - len(p_ids)


@pytest.mark.parametrize(("positions", "length_normalize"), [("all", True), ("response", False)])
def test_text_readout_matches_independent_computation(tiny, positions, length_normalize):
    model, tok = tiny.model, tiny.tokenizer
    v = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(5))
    alphas = (-1.0, 0.0, 2.0)
    ref = 3.0  # fixed so the check does not depend on the median-norm helper
    res = D.steering_dose_response(tiny, _trait(), 1, v, alphas=alphas, readout="text", positions=positions,
                                   length_normalize=length_normalize, reference_norm=ref, batch_size=4,
                                   max_nll_increase=100.0)
    assert res.readout == "text" and res.n_items == 3 and res.positions == positions
    for k, alpha in enumerate(alphas):
        delta = alpha * ref * v / v.norm() if alpha else None
        ps, diffs, tot_ll, tot_n = [], [], 0.0, 0
        for it in ITEMS:
            stem, m, n = D.answer_texts(ABItem(it["question"], it["answer_matching_behavior"],
                                               it["answer_not_matching_behavior"]))
            (lm, nm), (ln, nn) = (_independent_loglik(model, tok, stem, a, 1, delta, positions == "response")
                                  for a in (m, n))
            d = (lm / nm - ln / nn) if length_normalize else lm - ln
            ps.append(1 / (1 + math.exp(-d)))
            diffs.append(d)
            tot_ll += lm + ln
            tot_n += nm + nn
        assert res.p_matching[k] == pytest.approx(sum(ps) / 3, abs=1e-4)
        assert res.mean_score_diff[k] == pytest.approx(sum(diffs) / 3, abs=1e-3)
        assert res.coherence[k] == pytest.approx(tot_ll / tot_n, abs=1e-4)
    assert res.to_json()["loglik_per_token"] == list(res.coherence) and res.length_normalize == length_normalize
    assert res.p_matching[0] != pytest.approx(res.p_matching[1], abs=1e-4)  # steering changed something


def test_text_readout_steers_along_answer_contrast_and_control_is_weaker(tiny):
    """A direction that raises the matching answers' tokens in the unembedding raises P(matching) monotonically;
    covariance-realistic random directions of the same size move it much less."""
    model, tok = tiny.model, tiny.tokenizer
    trait = _trait()
    w = model.lm_head.weight.detach()
    m_ids, n_ids = [], []
    for it in trait.split_ab("evaluation"):
        _, m, n = D.answer_texts(it)
        m_ids += tok(m, add_special_tokens=False)["input_ids"]
        n_ids += tok(n, add_special_tokens=False)["input_ids"]
    v = w[m_ids].mean(0) - w[n_ids].mean(0)
    alphas = (-4.0, -1.0, 0.0, 1.0, 4.0)  # the random tiny model's final norm saturates the effect at ~0.1
    up = D.steering_dose_response(tiny, trait, 2, v, alphas=alphas, readout="text", max_nll_increase=100.0)
    assert up.monotone and up.effect > 0.08 and up.spearman == pytest.approx(1.0)
    down = D.steering_dose_response(tiny, trait, 2, -v, alphas=alphas, readout="text", max_nll_increase=100.0)
    assert not down.monotone and down.effect < -0.08
    acts = torch.randn(64, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    ctrl = D.random_direction_control(tiny, trait, 2, acts, n_dirs=3, alphas=alphas, readout="text",
                                      max_nll_increase=100.0, reference_norm=up.reference_norm)
    assert ctrl.n_dirs == 3 and len(ctrl.effects) == 3
    assert ctrl.max_abs_effect == pytest.approx(max(abs(e) for e in ctrl.effects))
    assert ctrl.max_abs_effect < 0.5 * up.effect
    assert ctrl.own_effects == ctrl.effects and ctrl.span is None
    # span: the control's effect over the same two alphas as the real curve's
    narrow = D.random_direction_control(tiny, trait, 2, acts, n_dirs=3, alphas=alphas, readout="text",
                                        max_nll_increase=100.0, reference_norm=up.reference_norm,
                                        span=(-1.0, 1.0))
    assert list(narrow.effects) == [pytest.approx(p[3] - p[1]) for p in narrow.p_matching]
    assert narrow.own_effects == pytest.approx(ctrl.effects)
    with pytest.raises(ConfigError, match="span"):
        D.random_direction_control(tiny, trait, 2, acts, n_dirs=1, alphas=alphas, span=(-2.0, 1.0))


@pytest.mark.parametrize("readout", ["text", "letter"])
def test_control_curves_equal_separate_calls_with_the_unsteered_point_scored_once(tiny, readout, monkeypatch):
    """random_direction_control scores the alpha = 0 point once for all its directions (adding 0 * v changes no
    forward); every curve equals a separate steering_dose_response along that direction, bit for bit."""
    from difflib_models.persona.shift.core import covariance_null_directions

    trait, alphas = _trait(), (-2.0, 0.0, 1.0, 3.0)
    acts = torch.randn(64, tiny.model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    kw = {"alphas": alphas, "readout": readout, "max_nll_increase": 100.0, "batch_size": 2}
    separate = [D.steering_dose_response(tiny, trait, 2, d, **kw)
                for d in covariance_null_directions(acts, 3, norm=1.0, seed=4, shrinkage=0.1)]
    assert len({c.p_matching[2] for c in separate}) == 3  # the directions differ where they steer
    steered: list[float] = []
    real_steer = D.steer

    def counting_steer(model, layer, vector, *, alpha, **k):
        steered.append(float(alpha))
        return real_steer(model, layer, vector, alpha=alpha, **k)

    monkeypatch.setattr(D, "steer", counting_steer)
    ctrl = D.random_direction_control(tiny, trait, 2, acts, n_dirs=3, seed=4, **kw)
    assert ctrl.p_matching == tuple(c.p_matching for c in separate)  # exact, alpha 0 included
    assert ctrl.own_effects == tuple(c.effect for c in separate)
    assert ctrl.monotone == tuple(c.monotone for c in separate)
    # one scoring pass per (direction, non-zero alpha) and one for alpha 0 (not one per direction)
    per_pass = steered.count(0.0)
    assert per_pass >= 1 and steered.count(3.0) == 3 * per_pass and steered.count(-2.0) == 3 * per_pass


def test_text_coherence_drops_out_incoherent_points():
    alphas = [-1.0, -0.5, 0.0, 0.5, 1.0]
    s = D.dose_summary(alphas, [0.2, 0.3, 0.4, 0.5, 0.1], [-4.0, -4.1, -4.0, -4.5, -5.5], 10.0, 5, readout="text")
    assert s.coherent == (True, True, True, True, False) and s.monotone
    assert s.effect == pytest.approx(0.3) and s.coherence[0] == -4.0 and s.coherence_key == "loglik_per_token"
    assert "ab_mass" not in s.to_json() and s.to_json()["loglik_per_token"][0] == -4.0
    s = D.dose_summary(alphas, [0.2, 0.3, 0.4, 0.5, 0.1], [-4.0, -4.1, -4.0, -4.5, -5.5], 10.0, 5, readout="text",
                       max_nll_increase=2.0)
    assert all(s.coherent) and not s.monotone


def test_bad_arguments(tiny):
    v = torch.ones(tiny.model.config.hidden_size)
    with pytest.raises(ConfigError, match="readout"):
        D.steering_dose_response(tiny, _trait(), 0, v, alphas=(-1.0, 0.0, 1.0), readout="judge")
    with pytest.raises(ConfigError, match="positions"):
        D.steering_dose_response(tiny, _trait(), 0, v, alphas=(-1.0, 0.0, 1.0), positions="prompt")
    with pytest.raises(ConfigError, match="alphas"):
        D.steering_dose_response(tiny, _trait(), 0, v, alphas=(1.0, 0.0))
    with pytest.raises(ConfigError, match="n_dirs"):
        D.random_direction_control(tiny, _trait(), 0, torch.randn(8, v.numel()), n_dirs=0)
