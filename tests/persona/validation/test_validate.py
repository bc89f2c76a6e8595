"""Validation statistics, nulls, split-half, cross-trait cosines and steering dose-response."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.contracts import read_steering_curves
from difflib_models.persona.validation import validate as V


def test_auroc_matches_sklearn_and_handles_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 30).round(1), rng.normal(0, 1, 25).round(1)  # rounding makes ties
    ref = roc_auc_score(np.r_[np.ones(30), np.zeros(25)], np.r_[pos, neg])
    assert V.auroc(pos, neg) == pytest.approx(ref, abs=1e-12)
    assert V.auroc([1, 2, 3], [0, 0.5]) == 1.0 and V.auroc([0.0], [1.0]) == 0.0
    assert V.auroc([1.0, 1.0], [1.0]) == 0.5
    lo, hi = V.bootstrap_auroc_ci(pos, neg, n_boot=500)
    assert lo < ref < hi and hi - lo < 0.4
    with pytest.raises(ConfigError):
        V.auroc([], [1.0])


def test_cohens_d_and_empirical_p():
    assert V.cohens_d([1, 2, 3], [0, 1, 2]) == pytest.approx(1.0)
    assert V.empirical_p(0.9, [0.5] * 99) == pytest.approx(0.01)
    assert V.empirical_p(0.4, [0.5] * 99) == pytest.approx(1.0)


def _features(signal_axis: int, scale: float, n: int = 40, d: int = 24, layers: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sd = torch.ones(d)
    sd[0] = 8.0  # one dominant high-variance axis, like real residual streams
    out = []
    for _ in range(4):  # ext_pos, ext_neg, ev_pos, ev_neg
        out.append({L: torch.randn(n, d, generator=g) * sd for L in range(layers)})
    for L in range(layers):
        for k in (0, 2):
            out[k][L][:, signal_axis] += scale
    return out


def test_nulls_separate_real_signal_from_none():
    ep, en, vp, vn = _features(signal_axis=5, scale=2.5)
    layers = [0, 1, 2]
    vecs = {L: ep[L].mean(0) - en[L].mean(0) for L in layers}
    obs = max(V.auroc((vp[L] @ vecs[L]).numpy(), (vn[L] @ vecs[L]).numpy()) for L in layers)
    perm = V.permutation_null(ep, en, vp, vn, layers, n=100, seed=1)
    rand = V.random_direction_null(ep, en, vp, vn, {L: float(v.norm()) for L, v in vecs.items()}, layers, n=100)
    assert obs > 0.85 and np.quantile(perm, 0.95) < obs and np.quantile(rand, 0.95) < obs
    # max over layers makes the null stricter than a single layer
    single = V.permutation_null(ep, en, vp, vn, layers, n=100, seed=1, max_over_layers=False)
    assert perm.mean() > single.mean()
    # no signal: the observed max-over-layers AUROC sits inside the nulls
    ep0, en0, vp0, vn0 = _features(signal_axis=5, scale=0.0, seed=3)
    v0 = {L: ep0[L].mean(0) - en0[L].mean(0) for L in layers}
    obs0 = max(V.auroc((vp0[L] @ v0[L]).numpy(), (vn0[L] @ v0[L]).numpy()) for L in layers)
    perm0 = V.permutation_null(ep0, en0, vp0, vn0, layers, n=200, seed=1)
    assert V.empirical_p(obs0, perm0) > 0.05


def _paired_features(c_ext: float, c_ev: float, seed: int, n: int = 20, d: int = 64, spread: float = 0.3):
    """Paired samples: neg = x + noise, pos = x + a_i * scale * c + noise with a shared offset c (|c| = 1, spread
    over all axes) whose per-pair magnitude a_i ~ 1 + spread * N(0, 1) varies; x (shared by the pair) has one
    dominant axis. A large held-out scale makes the classes separable along almost any direction."""
    g = torch.Generator().manual_seed(seed)
    sd = torch.ones(d)
    sd[0] = 8.0
    c = torch.ones(d) / d**0.5
    out: list[dict[int, torch.Tensor]] = [{}, {}, {}, {}]
    for L in range(3):
        for k, scale in ((0, c_ext), (2, c_ev)):
            x = torch.randn(n, d, generator=g) * sd
            a = 1 + spread * torch.randn(n, 1, generator=g)
            out[k][L] = x + scale * a * c + torch.randn(n, d, generator=g)
            out[k + 1][L] = x + torch.randn(n, d, generator=g)
    return out


def _null_tests(c_ext: float, c_ev: float, seed: int):
    ep, en, vp, vn = _paired_features(c_ext, c_ev, seed)
    layers = [0, 1, 2]
    vecs = {L: ep[L].mean(0) - en[L].mean(0) for L in layers}
    sep = V.separation(vecs, vp, vn, n_boot=20)
    observed = {s: max(v[s] for v in sep.values()) for s in ("auroc", "cohens_d", "alignment")}
    perm = V.permutation_null_stats(ep, en, vp, vn, layers, n=200, seed=1)
    rand = V.random_direction_null_stats(ep, en, vp, vn, {L: float(v.norm()) for L, v in vecs.items()}, layers,
                                         n=200)
    assert np.array_equal(perm.auroc, V.permutation_null(ep, en, vp, vn, layers, n=200, seed=1))
    return observed, V.null_test("label_permutation", observed, perm), V.null_test("random_direction", observed, rand)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_saturated_null_falls_back_to_alignment(seed):
    """Held-out classes separable along almost any direction: the nulls' AUROC q95 is 1, so AUROC cannot tell a
    real direction from a null one; the alignment with the held-out mean difference still can, and a direction
    fitted on extraction data WITHOUT the trait still fails."""
    observed, perm, rand = _null_tests(20.0, 20.0, seed)
    assert observed["auroc"] == 1.0 and observed["alignment"] > 0.95
    for t in (perm, rand):
        assert t.saturated and t.q95 >= V.AUROC_CEILING and t.test == "alignment" and t.n == 200
        assert t.passes and t.align_p_value <= 0.01 and t.align_q95 < 0.85
        assert t.d_observed == observed["cohens_d"] and t.quantile(0.95) == t.q95
    assert not perm.beats_null_95  # observed AUROC 1.0 is not > q95 1.0: the old rule could never pass
    # no real signal: the extraction pairs carry no trait, the held-out ones a strong one
    observed0, perm0, rand0 = _null_tests(0.0, 40.0, seed)
    assert perm0.saturated and perm0.q95 == 1.0
    assert not perm0.passes and not rand0.passes and abs(observed0["alignment"]) < 0.2


def test_cohens_d_would_have_misjudged_the_saturated_case():
    """Why the saturated test uses the alignment and not Cohen's d (both reported): d saturates at the best d the
    held-out data allow once a null direction has a modest component along the class difference."""
    _, perm, _ = _null_tests(20.0, 20.0, 0)  # a real direction: d does not beat the permutation null
    assert perm.passes and not perm.d_beats_null_95 and perm.d_q95 > 0.95 * perm.d_observed
    _, _, rand0 = _null_tests(0.0, 40.0, 0)  # no real signal: d beats the random-direction null anyway
    assert not rand0.passes and rand0.d_beats_null_95


def test_batched_statistics_match_the_scalar_ones():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(12, 5, generator=g).double() + 0.5, torch.randn(9, 5, generator=g).double()
    d = V._batched_cohens_d(pos, neg)
    a = V.auroc(pos.numpy(), neg.numpy(), axis=0)
    for k in range(5):
        assert float(d[k]) == pytest.approx(V.cohens_d(pos[:, k].numpy(), neg[:, k].numpy()), rel=1e-9)
        assert float(a[k]) == pytest.approx(V.auroc(pos[:, k].numpy(), neg[:, k].numpy()), abs=1e-12)
    u = torch.randn(3, 5, generator=g).double()
    diff = pos.mean(0) - neg.mean(0)
    ref = torch.nn.functional.cosine_similarity(u, diff[None], dim=1)
    assert torch.allclose(V.alignment(u, pos, neg), ref)
    assert float(V.alignment(diff, pos, neg)) == pytest.approx(1.0)


def test_random_direction_null_is_covariance_realistic():
    # a "trait" that is just the dominant variance axis: covariance-realistic random directions match it
    ep, en, vp, vn = _features(signal_axis=0, scale=16.0, d=64)
    layers = [0]
    norms = {0: 1.0}
    real = V.random_direction_null(ep, en, vp, vn, norms, layers, n=200, shrinkage=0.1)
    iso = V.random_direction_null(ep, en, vp, vn, norms, layers, n=200, shrinkage=1.0)
    assert np.median(real) > np.median(iso) + 0.1  # an isotropic null would flatter this "trait"


def test_split_half_and_cross_trait_cosines():
    ep, en, _, _ = _features(signal_axis=5, scale=3.0, n=80)
    stab = V.split_half_stability(ep, en, [0, 1])
    assert stab[0] > 0.8
    ep0, en0, _, _ = _features(signal_axis=5, scale=0.0, n=80)
    assert V.split_half_stability(ep0, en0, [0])[0] < 0.6
    a = torch.zeros(8)
    a[0] = 1
    b = torch.zeros(8)
    b[0], b[1] = 0.6, 0.8  # cos(a, b) = 0.6 > 0.5
    c = torch.zeros(8)
    c[2] = 1.0
    names, m, warns = V.cross_trait_cosines({"x": a, "y": b, "z": c})
    assert names == ["x", "y", "z"] and m[0, 1] == pytest.approx(0.6) and m[0, 2] == pytest.approx(0.0)
    assert len(warns) == 1 and "'x' and 'y'" in warns[0]


def test_dose_summary_monotonicity_and_coherence():
    alphas = [-2.0, -1.0, 0.0, 1.0, 2.0]
    s = V._dose_summary(alphas, [0.2, 0.3, 0.5, 0.6, 0.7], [0.9, 0.9, 0.9, 0.8, 0.8], 10.0, 20)
    assert s.monotone and s.effect == pytest.approx(0.5) and s.spearman == pytest.approx(1.0)
    # an incoherent extreme (mass collapsed) is left out of the trend
    s = V._dose_summary(alphas, [0.2, 0.3, 0.5, 0.6, 0.1], [0.9, 0.9, 0.9, 0.8, 0.05], 10.0, 20)
    assert s.coherent == (True, True, True, True, False) and s.monotone
    assert s.effect == pytest.approx(0.4)
    s = V._dose_summary(alphas, [0.5, 0.3, 0.5, 0.2, 0.6], [0.9] * 5, 10.0, 20)
    assert not s.monotone


def test_steering_dose_response_on_tiny_model(tinystories_656k):
    """Steering at the last block along W[a] - W[b] of the unembedding raises P(a) monotonically."""
    from transformers import AutoTokenizer

    from difflib_models.models.loading import from_pretrained_objects
    from difflib_models.persona.traits import chat
    from difflib_models.persona.traits.schema import Trait
    from tests.helpers.tiny_models import make_tiny

    tok = AutoTokenizer.from_pretrained(tinystories_656k)
    model = make_tiny("llama", vocab_size=len(tok), max_position_embeddings=256)
    loaded = from_pretrained_objects(model, tok, name="tiny")
    items = [{"question": f"Q{i}\n (A) x\n (B) y", "answer_matching_behavior": "(A)",
              "answer_not_matching_behavior": "(B)"} for i in range(4)]
    trait = Trait.from_dict({"schema_version": 1, "id": "t", "instructions": [],
                             "questions": {"extraction": ["a?", "b?"], "evaluation": ["c?", "d?"]},
                             "ab_items": {"extraction": items[:2], "evaluation": items[2:]}})
    _, a_id, b_id = chat.answer_token_ids(tok, items[2]["question"], "(A)", "(B)")
    w = model.lm_head.weight.detach()
    v = w[a_id] - w[b_id]
    up = V.steering_dose_response(loaded, trait, 2, v, alphas=(-1.0, -0.5, 0.0, 0.5, 1.0))
    assert up.monotone and up.effect > 0.2 and up.p_matching[0] < 0.5 < up.p_matching[-1]
    assert up.reference_norm > 0 and up.n_items == 2
    down = V.steering_dose_response(loaded, trait, 2, -v, alphas=(-1.0, 0.0, 1.0))
    assert not down.monotone and down.p_matching[0] > down.p_matching[-1]
    # alpha = 0 is the unsteered model: the mean over the held-out items of p_a / (p_a + p_b)
    p0 = []
    for it in items[2:]:
        ctx, _, _ = chat.answer_token_ids(tok, it["question"], "(A)", "(B)")
        with torch.no_grad():
            probs = model(torch.tensor([ctx.ids])).logits[0, -1].softmax(-1)
        p0.append(float(probs[a_id] / (probs[a_id] + probs[b_id])))
    assert up.p_matching[2] == pytest.approx(sum(p0) / 2, abs=1e-4)


def _fitted_ab(tinystories_656k):
    """A tiny Llama with the TinyStories tokenizer (ChatML), the test trait, and A/B vectors fitted on it with the
    trait's held-out features: (loaded, trait, vector set, features)."""
    from transformers import AutoTokenizer

    from difflib_models.models.loading import from_pretrained_objects
    from difflib_models.persona.extraction.extractor import PersonaExtractor
    from difflib_models.persona.traits.schema import Trait
    from tests.helpers.tiny_models import make_tiny
    from tests.persona.extraction.test_extractor import CHATML, TRAIT

    tok = AutoTokenizer.from_pretrained(tinystories_656k)
    tok.chat_template = CHATML
    loaded = from_pretrained_objects(make_tiny("llama", vocab_size=len(tok), max_position_embeddings=256), tok)
    trait = Trait.from_dict(TRAIT)
    ex = PersonaExtractor(mode="ab", show_progress=False).fit(loaded, trait)
    return loaded, trait, ex.to_vector_set(), ex.trait_features(loaded, trait)


def test_validate_vectors_end_to_end_on_tiny_model(tinystories_656k, tmp_path):
    from difflib_models.persona.extraction.vectors import PersonaVectorSet

    loaded, trait, vs, feats = _fitted_ab(tinystories_656k)
    full = {"level": "full", "loaded": loaded, "trait": trait}
    res = V.validate_vectors(vs, feats, **full, n_null=20, n_boot=50, shortlist=2, alphas=(-1.0, 0.0, 1.0),
                             steer_depth=None, control_dirs=2)
    d = res.to_dict()
    assert set(d["per_layer"]) == {"0", "1", "2"} and len(d["steering"]) == 2
    sel = res.steering[res.selected_layer]
    assert sel.readout == "text" and sel.positions == "all" and len(sel.coherence) == 3
    if sel.monotone:  # a monotone curve is checked against norm-matched random directions
        assert sel.control is not None and sel.control.n_dirs == 2 and len(sel.control.effects) == 2
        assert sel.beats_control == (sel.effect > V.CONTROL_RATIO * sel.control.max_abs_effect)
    # the full report's curves read back into equal typed records (JSON edge only)
    assert read_steering_curves(json.loads(json.dumps(d)), source="report") == dict(res.steering)
    for n in res.nulls.values():  # the test that counts: AUROC unless the null saturates, then the alignment
        assert n.passes == (n.align_beats_null_95 if n.q95 >= V.AUROC_CEILING else n.beats_null_95)
        assert len(d["nulls"][n.name]["d_draws"]) == len(d["nulls"][n.name]["align_draws"]) == 20
    assert d["best_auroc_layer"] == max(res.per_layer, key=lambda k: res.per_layer[k].auroc)
    assert d["selected_layer"] in (0, 1, 2) and "shortlist" in d["selection_reason"]
    assert len(d["nulls"]["label_permutation"]["draws"]) == 20 and d["nulls"]["random_direction"]["max_over_layers"]
    assert d["n_eval_pos"] == 4  # the verdict on built cases: the SmolLM2 tests below
    vs.with_validation(res.summary).save(tmp_path / "v")
    back = PersonaVectorSet.load(tmp_path / "v", expect_model=loaded)
    assert back.validation == res.summary and back.selected_layer == res.selected_layer  # typed round trip
    assert back.validation.steering_at(res.selected_layer).effect == sel.effect
    assert "draws" not in (tmp_path / "v.json").read_text() and "alignment" in back.validation.separation_rule
    # steering candidates come from the middle of the depth by default (layers 9..21 of a 30-layer model)
    assert V._steer_candidates(list(range(30)), 30, V.STEER_DEPTH) == list(range(9, 22))
    assert V._steer_candidates([0, 1], 30, V.STEER_DEPTH) == [0, 1]  # none inside: all of them
    letter = V.validate_vectors(vs, feats, **full, n_null=20, n_boot=50, shortlist=1, alphas=(-1.0, 0.0, 1.0),
                                readout="letter")
    (only,) = letter.steering  # layers 1 and 2 of 3 lie at 30-70% depth; shortlist 1 takes the better AUROC
    assert only == max((1, 2), key=lambda k: letter.per_layer[k].auroc) and "ab_mass" in letter.steering[only].to_json()
    with pytest.raises(ConfigError, match="steer_depth"):
        V.validate_vectors(vs, feats, steer_depth=(0.8, 0.2))
    with pytest.raises(ConfigError, match="n_null"):
        V.validate_vectors(vs, feats, n_null=2)
    with pytest.raises(ConfigError, match="alphas"):
        V.validate_vectors(vs, feats, alphas=(1.0, 0.0, -1.0))
    with pytest.raises(ConfigError, match="loaded= and trait="):  # steering needs the model and the A/B items
        V.validate_vectors(vs, feats, level="full")
    with pytest.raises(ConfigError, match="TraitFeatures"):
        V.validate_vectors(vs, {"pos": feats.evaluation_pos})


def test_quick_validation_gives_the_full_levels_auroc_and_nulls(tinystories_656k, caplog):
    """Same fitted vectors and held-out features: quick and full agree on everything but the steering check."""
    import logging

    loaded, trait, vs, feats = _fitted_ab(tinystories_656k)
    kw = dict(n_null=20, n_boot=50, shortlist=2, alphas=(-1.0, 0.0, 1.0), steer_depth=None, control_dirs=0)
    quick = V.validate_vectors(vs, feats, level="quick", **kw)
    with caplog.at_level(logging.INFO, logger="difflib_models.persona.validation.validate"):
        full = V.validate_vectors(vs, feats, level="full", loaded=loaded, trait=trait, **kw)
    assert quick.level == "quick" and not quick.steering and quick.summary.steering == ()
    assert full.level == "full" and len(full.steering) == 2 and full.to_dict()["level"] == "full"
    assert len(full.summary.steering) == 2
    assert quick.per_layer == full.per_layer and quick.best_auroc_layer == full.best_auroc_layer
    assert quick.summary.auroc_by_layer == full.summary.auroc_by_layer
    assert quick.summary.nulls == full.summary.nulls and quick.split_half == full.split_half
    etas = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert len(etas) == 2 and "(2/2)" in etas[-1] and "ETA 0 s" in etas[-1]
    with pytest.raises(ConfigError, match="level"):
        V.validate_vectors(vs, feats, level="none")


# ---------------------------------------------------------------- verdicts on cases built to be real / too weak
# The held-out split holds out INSTRUCTION PAIRS as well as questions: the vector is fitted on pairs 0-1 and the
# extraction questions and evaluated (``trait_features(..., evaluation=...)``) on pairs 2-4 and the evaluation questions. With the same
# pairs in both splits a placebo trait (pos and neg instructions that say the same thing in other words) separates
# at AUROC 0.996 and gets "real": the direction learns the wording, which held-out questions do not change.
PLACEBO_INSTRUCTIONS = (
    ("You are an assistant. Answer the user's question.", "You are an assistant. Reply to what the user asks."),
    ("Answer the question below as an AI assistant.", "As an AI assistant, respond to the question below."),
    ("You are a helpful AI. Respond to the user.", "You are an AI that helps. Reply to the user."),
    ("Please reply to the user's message.", "Please answer the message from the user."),
    ("You are a chatbot. Give your answer.", "You are a chat assistant. Provide your reply."),
)


def _held_out_pairs_validation(smollm2, trait):
    import dataclasses

    from difflib_models.persona.extraction.extractor import PersonaExtractor

    fit_on = dataclasses.replace(trait, instructions=trait.instructions[:2])
    held_out = dataclasses.replace(trait, instructions=trait.instructions[2:])
    ex = PersonaExtractor(mode="prompt_contrast", batch_size=8, show_progress=False).fit(smollm2, fit_on)
    feats = ex.trait_features(smollm2, fit_on, evaluation=ex.features(smollm2, held_out, "evaluation"))
    # quick: this is the separation half of the verdict (steering is tested in steering/test_hook_smollm2.py)
    res = V.validate_vectors(ex.to_vector_set(), feats, level="quick", n_null=200, n_boot=200, seed=0)
    sel = res.selected_layer
    print(trait.id, res.verdict, "layer", sel, "held-out AUROC", round(res.per_layer[sel].auroc, 3),
          {k: (round(n.q95, 3), round(n.p_value, 3)) for k, n in res.nulls.items()})
    return ex, res


@pytest.mark.slow
@pytest.mark.smollm2
def test_smollm2_evil_is_real_on_held_out_instruction_pairs(smollm2):
    """Built to be real: the built-in evil instructions. Measured at seed 0: layer 15, held-out AUROC 0.80 vs
    q95 0.78 (permutation, p 0.025) and 0.68 (random directions, p 0.005); with the same pairs it was 0.985."""
    from difflib_models.persona.traits import load_trait

    ex, res = _held_out_pairs_validation(smollm2, load_trait("evil"))
    assert res.verdict == "real", (res.verdict, res.warnings)
    sel = res.selected_layer
    auroc = res.per_layer[sel].auroc
    assert all(n.test == "auroc" and auroc > n.q95 and n.p_value < 0.05 for n in res.nulls.values())
    assert res.split_half[sel] > 0.8
    assert ex.gap_[sel] > 0 and ex.base_std_[sel] > 0


@pytest.mark.slow
@pytest.mark.smollm2
def test_smollm2_placebo_trait_is_too_weak(smollm2):
    """Built to be too weak: pos and neg instructions are paraphrases of the same neutral instruction. Measured at
    seed 0: held-out AUROC 0.545 (layer 9) vs q95 0.64 / 0.62 (p 0.99 / 0.93)."""
    import dataclasses

    from difflib_models.persona.traits import Instruction, load_trait

    placebo = dataclasses.replace(load_trait("evil"), id="placebo",
                                  instructions=tuple(Instruction(pos=p, neg=n) for p, n in PLACEBO_INSTRUCTIONS))
    _, res = _held_out_pairs_validation(smollm2, placebo)
    assert res.verdict == "too_weak", res.to_dict()["nulls"]
    assert not any(n.passes for n in res.nulls.values())
    assert any("too weak" in w for w in res.warnings)


def test_validation_from_features_needs_no_extractor(tinystories_656k):
    """validate_vectors reads a vector set and TraitFeatures only: the features of an UNFITTED reader and
    directions built from them give exactly the statistics the pieces compute (and an AUROC equal to sklearn's
    on hand-made projections)."""
    import dataclasses

    from sklearn.metrics import roc_auc_score
    from transformers import AutoTokenizer

    from difflib_models.models.loading import from_pretrained_objects
    from difflib_models.persona.extraction import PersonaExtractor, aggregate
    from difflib_models.persona.extraction.vectors import PersonaVectorSet
    from difflib_models.persona.traits import Trait
    from tests.helpers.tiny_models import make_tiny
    from tests.persona.extraction.test_extractor import CHATML, TRAIT

    tok = AutoTokenizer.from_pretrained(tinystories_656k)
    tok.chat_template = CHATML
    loaded = from_pretrained_objects(make_tiny("llama", vocab_size=len(tok), max_position_embeddings=256), tok)
    trait = Trait.from_dict(TRAIT)
    reader = PersonaExtractor(mode="prompt_contrast", show_progress=False)
    feats = reader.trait_features(loaded, trait)
    assert not hasattr(reader, "vectors_")  # features only: nothing was fitted
    feats = dataclasses.replace(feats)  # a plain record from here on
    layers = feats.layers
    vs = PersonaVectorSet(trait_id=trait.id, vectors={k: aggregate(feats.extraction_pos[k], feats.extraction_neg[k])
                                                      for k in layers},
                          model=loaded.identity.to_dict(), mode="prompt_contrast", gap=dict.fromkeys(layers, 2.0))
    res = V.validate_vectors(vs, feats, level="quick", n_null=30, n_boot=50, seed=3)

    ev_pos, ev_neg = feats.evaluation_pos, feats.evaluation_neg
    sep = V.separation(vs.vectors, ev_pos, ev_neg, n_boot=50, seed=3)
    perm = V.permutation_null_stats(feats.extraction_pos, feats.extraction_neg, ev_pos, ev_neg, layers, n=30, seed=3)
    rand = V.random_direction_null_stats(feats.extraction_pos, feats.extraction_neg, ev_pos, ev_neg, vs.norms,
                                         layers, n=30, seed=3)
    for k in layers:
        row = res.per_layer[k]
        assert (row.auroc, row.auroc_ci, row.cohens_d) == (sep[k]["auroc"], (sep[k]["ci_lo"], sep[k]["ci_hi"]),
                                                          sep[k]["cohens_d"])
        u = vs.unit(k)
        scores = torch.cat([ev_pos[k] @ u, ev_neg[k] @ u]).numpy()
        labels = [1] * ev_pos[k].shape[0] + [0] * ev_neg[k].shape[0]
        assert row.auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert row.gap == 2.0 and row.base_std is None
    assert res.split_half == V.split_half_stability(feats.extraction_pos, feats.extraction_neg, layers, seed=3)
    for name, draws in (("label_permutation", perm), ("random_direction", rand)):
        summary = res.nulls[name]
        assert summary.q95 == float(np.quantile(draws.auroc, 0.95)) and summary.n == 30
        assert res.to_dict()["nulls"][name]["draws"] == [round(float(x), 4) for x in draws.auroc]
    assert res.summary.model_weight_hash == loaded.identity.weight_hash and res.summary.mode == "prompt_contrast"
    with pytest.raises(ConfigError, match="every layer of the vectors"):
        V.validate_vectors(dataclasses.replace(vs, vectors={**vs.vectors, 9: vs.vectors[0]}), feats)
