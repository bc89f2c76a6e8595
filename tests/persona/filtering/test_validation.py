"""Filter validation: vectors ranked on held-out response pairs, the record in the vector file, the CLI's warning.

CPU tests use synthetic features and the tiny stories260k model; the SmolLM2 tests check the demo's filter and the
held-out A/B rows against norm-matched covariance-realistic random directions (spec validation.md, "For a filter").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.extraction.vectors import FilterValidation, PersonaVectorSet
from difflib_models.persona.filtering.readout import Readout
from difflib_models.persona.filtering.validation import (
    PairFeatures,
    ResponsePair,
    collect_features,
    describe,
    filter_validate_trait,
    pair_scores,
    pairs_from_ab,
    pairs_from_trait,
    random_direction_baseline,
    rank_metrics,
    split_pairs,
    validate_for_filtering,
    with_filter_validation,
    wording_check,
)
from difflib_models.persona.traits import load_trait
from difflib_models.persona.traits.schema import ABItem

D, LAYERS, N = 16, (0, 1, 2), 40


def _planted(seed: int = 0, signal_layer: int = 1, offset: float = 4.0) -> tuple[PairFeatures, torch.Tensor]:
    """Matching responses sit +1 along ``e`` at ``signal_layer`` only; each prompt adds a large random offset
    along ``e`` to both of its responses AND to its last prompt token (what the proxy baseline removes)."""
    gen = torch.Generator().manual_seed(seed)
    e = torch.zeros(D)
    e[0] = 1.0
    feats: dict[str, dict[int, torch.Tensor]] = {"matching": {}, "other": {}, "last_prompt": {}}
    shift = offset * torch.randn(N, 1, generator=gen)
    for layer in LAYERS:
        noise = lambda: 0.15 * torch.randn(N, D, generator=gen)  # noqa: E731
        sig = 1.0 if layer == signal_layer else 0.0
        feats["matching"][layer] = noise() + (shift + sig) * e
        feats["other"][layer] = noise() + shift * e
        feats["last_prompt"][layer] = noise() + shift * e
    return PairFeatures(**feats), e


def _vs(e: torch.Tensor, **kw) -> PersonaVectorSet:
    return PersonaVectorSet(trait_id="planted", vectors={layer: e.clone() for layer in LAYERS},
                            model={"name": "tiny", "weight_hash": "abc"}, mode="paired", **kw)


def test_rank_metrics_numbers() -> None:
    m = rank_metrics(np.array([3.0, 2.0, 0.5]), np.array([1.0, 0.0, 2.5]))
    # pairs (matching > other): 3>1, 3>0, 3>2.5, 2>1, 2>0, 0.5>0 -> 6 of 9
    assert m["auroc"] == pytest.approx(6 / 9)
    assert m["precision_at_k"] == pytest.approx(2 / 3)  # top 3: 3.0, 2.5, 2.0
    assert m["pair_win_rate"] == pytest.approx(2 / 3)  # 3>1, 2>0, 0.5<2.5


def test_split_is_seeded_disjoint_and_complete() -> None:
    a, b = split_pairs(11, 0.5, seed=3)
    a2, b2 = split_pairs(11, 0.5, seed=3)
    assert a.tolist() == a2.tolist() and b.tolist() == b2.tolist()
    assert sorted(a.tolist() + b.tolist()) == list(range(11)) and not set(a) & set(b)
    assert split_pairs(11, 0.5, seed=4)[0].tolist() != a.tolist()
    with pytest.raises(ConfigError):
        split_pairs(1, 0.5, seed=0)


def test_proxy_removes_prompt_offsets_and_the_signal_layer_is_chosen_on_tuning() -> None:
    feats, e = _planted()
    raw = rank_metrics(*pair_scores(feats, 1, e, "raw"))
    proxy = rank_metrics(*pair_scores(feats, 1, e, "proxy"))
    assert proxy["auroc"] > 0.95 and raw["auroc"] < 0.8  # the offset blurs raw scores across prompts
    assert raw["pair_win_rate"] > 0.95  # ... but not within a prompt
    rec = validate_for_filtering(_vs(e), feats, methods=("raw", "proxy"), seed=0, source="planted")
    assert (rec.method, rec.filter_layer) == ("proxy", 1)
    assert rec.n_tune + rec.n_eval == N and rec.eval_auroc > 0.95
    assert rec.method_auroc["proxy"] > rec.method_auroc["raw"]


def test_random_directions_do_not_reach_the_planted_vector() -> None:
    feats, e = _planted(seed=1)
    cov = {layer: torch.randn(200, D, generator=torch.Generator().manual_seed(layer)) for layer in LAYERS}
    rec = validate_for_filtering(_vs(e), feats, methods=("proxy",), seed=0)
    rand = random_direction_baseline(_vs(e), feats, cov, n_draws=8, methods=("proxy",), seed=0)
    assert len(rand) == 8 and rec.eval_auroc > max(rand)


def test_record_round_trips_through_the_vector_file(tmp_path: Path) -> None:
    feats, e = _planted()
    rec = validate_for_filtering(_vs(e), feats, methods=("raw", "proxy"), seed=2, source="planted")
    path = with_filter_validation(_vs(e, selected_layer=0), rec).save(tmp_path / "v")
    back = PersonaVectorSet.load(path)
    assert back.filter_validation == FilterValidation.from_dict(rec.to_dict())
    assert back.filter_validation.filter_layer == 1 and back.selected_layer == 0
    from difflib_models.persona.filtering.scoring import default_layer

    assert default_layer(back) == 1  # the filter reads the filter-validated layer, not the selected one
    assert "AUROC" in describe(back.filter_validation) and "not validated" in describe(None)


@pytest.mark.parametrize("record", ["nonsense", {"version": 99, "filter_layer": 1}, {"filter_layer": 1},
                                    {"version": 1, "filter_layer": 7, "method": "proxy", "eval_auroc": 0.9}])
def test_bad_records_are_ignored_not_fatal(tmp_path: Path, record) -> None:
    _, e = _planted()
    path = _vs(e).save(tmp_path / "v")
    sidecar = tmp_path / "v.json"
    meta = json.loads(sidecar.read_text())
    meta["filter_validation"] = record
    sidecar.write_text(json.dumps(meta))
    back = PersonaVectorSet.load(path)
    assert back.filter_validation is None


def test_pairs_from_ab_answer_with_the_option_text() -> None:
    item = ABItem(question="Is it so?\n\nChoices:\n (A) Yes, obviously.\n (B) No, it is not.", matching="(B)",
                  not_matching="(A)")
    (pair,) = pairs_from_ab([item])
    assert (pair.matching, pair.other) == ("No, it is not.", "Yes, obviously.")
    with pytest.raises(ConfigError):
        pairs_from_ab([ABItem(question="no options here", matching="(A)", not_matching="(B)")])


def test_collect_features_match_the_filters_own_projections(stories260k: Path) -> None:
    """The features behind a validation are the filter's numbers: proxy scores equal filter_samples' delta_p."""
    from difflib_models.models.loading import load_model
    from difflib_models.persona.filtering.scoring import FilterConfig, filter_samples, samples_from_rows

    loaded = load_model(str(stories260k))
    pairs = [ResponsePair(id=f"p{i}", prompt=(("user", q),), matching=a, other=b) for i, (q, a, b) in enumerate([
        ("Tell me a story.", "Once upon a time there was a cat.", "No."),
        ("Where did Lily go?", "She went to the park with her dog.", "Home."),
        ("Why is the sky blue?", "Because the sun was hot.", "The sky is blue because of the light.")])]
    feats = collect_features(loaded, pairs, [1, 2], batch_size=2)
    gen = torch.Generator().manual_seed(0)
    vs = PersonaVectorSet(trait_id="t", vectors={1: torch.randn(loaded.d_model, generator=gen),
                                                 2: torch.randn(loaded.d_model, generator=gen)},
                          model=loaded.identity.to_dict(), mode="test", selected_layer=2)
    m, o = pair_scores(feats, 2, vs.unit(2), "proxy")
    rows = [{"messages": [{"role": "user", "content": p.prompt[0][1]}, {"role": "assistant", "content": r}]}
            for p in pairs for r in (p.matching, p.other)]
    res = filter_samples(loaded, vs, samples_from_rows(rows), FilterConfig(n_bootstrap=0))
    delta = np.array([r.delta_p for r in res.records])
    np.testing.assert_allclose(delta[0::2], m, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(delta[1::2], o, rtol=1e-4, atol=1e-4)


def test_validate_on_trait_uses_the_held_out_paired_split(stories260k: Path) -> None:
    from difflib_models.models.loading import load_model
    from difflib_models.persona.filtering.validation import validate_on_trait
    from difflib_models.persona.traits import load_trait

    loaded = load_model(str(stories260k))
    trait = load_trait("evil")
    gen = torch.Generator().manual_seed(0)
    vs = PersonaVectorSet(trait_id="evil", vectors={i: torch.randn(loaded.d_model, generator=gen) for i in (1, 3)},
                          model=loaded.identity.to_dict(), mode="test")
    rec = validate_on_trait(loaded, vs, trait, methods=("raw", "proxy"), seed=5)
    assert rec is not None and rec.n_tune + rec.n_eval == len(trait.split_paired("evaluation"))
    assert rec.filter_layer in (1, 3) and set(rec.filter_auroc) == {1, 3} and rec.seed == 5
    assert "paired_responses/evaluation" in rec.source and 0.0 <= rec.eval_auroc <= 1.0


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from difflib_models.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_cli_filter_prints_the_validation_warns_when_low_and_strict_refuses(
        stories260k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from difflib_models.models.loading import load_model

    monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")
    loaded = load_model(str(stories260k))
    gen = torch.Generator().manual_seed(1)
    vs = PersonaVectorSet(trait_id="planted", vectors={i: torch.randn(loaded.d_model, generator=gen)
                                                       for i in range(loaded.n_layers)},
                          model=loaded.identity.to_dict(), mode="test", selected_layer=2)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Tell me about the {w}."},
                                                     {"role": "assistant", "content": f"The {w} was big."}]}) + "\n"
                            for w in ("dog", "cat", "sun")), encoding="utf-8")

    def record(auroc: float) -> FilterValidation:
        return FilterValidation(filter_layer=3, method="proxy", filter_auroc={2: 0.6, 3: auroc}, eval_auroc=auroc,
                                eval_precision_at_k=auroc, eval_pair_win_rate=auroc, n_tune=4, n_eval=4, seed=0,
                                source="test")

    files = {"none": vs.save(tmp_path / "none"),
             "low": with_filter_validation(vs, record(0.55)).save(tmp_path / "low"),
             "good": with_filter_validation(vs, record(0.95)).save(tmp_path / "good")}
    base = ["persona", "filter", "--data", str(data), "--model", str(stories260k)]
    for name, path in files.items():
        code, out, err = _cli(base + ["--vectors", str(path), "--out", str(tmp_path / f"o-{name}")], capsys)
        assert code == 0, err
        summary = json.loads(out)
        if name == "none":
            assert "not validated for filtering" in err and "warning" in err and summary["layer"] == 2
            assert summary["filter_validation"] is None
        else:
            assert f"AUROC {0.55 if name == 'low' else 0.95:.3f}" in err
            assert ("warning" in err) == (name == "low")
            assert ("--mode paired --aggregator logistic" in err) == (name == "low")  # how to make a better one
            # the filter reads the validated layer by default and says so
            assert summary["layer"] == 3 and summary["filter_validation"]["validated_layer"] is True
        strict, _, err = _cli(base + ["--vectors", str(path), "--out", str(tmp_path / f"s-{name}"), "--strict"],
                              capsys)
        assert strict == (0 if name == "good" else 2), err
        assert (tmp_path / f"s-{name}" / "scores.jsonl").exists() == (name == "good")
    code, _, err = _cli(base + ["--vectors", str(files["good"]), "--out", str(tmp_path / "o-l2"), "--layer", "2"],
                        capsys)
    assert code == 0 and "not the filter-validated layer 3" in err and "0.600" in err


# ------------------------------------------------------------------------------------------------ SmolLM2
def _paired_vector(loaded, trait_id: str):
    """Paired (response-averaged) vector on the built-in trait's paired EXTRACTION split, every layer; the
    within-class extraction features (covariance of the random directions) and the pos-neg orientation."""
    from difflib_models.persona.extraction.extractor import PersonaExtractor, aggregate

    ex = PersonaExtractor(mode="paired", layers="all", show_progress=False)
    pos, neg = ex.features(loaded, trait_id, "extraction")
    vs = PersonaVectorSet(trait_id=trait_id, vectors={k: aggregate(pos[k], neg[k]) for k in pos},
                          model=loaded.identity.to_dict(), mode="paired", n_pos=int(pos[0].shape[0]),
                          n_neg=int(neg[0].shape[0]))
    cov = {k: torch.cat([pos[k] - pos[k].mean(0), neg[k] - neg[k].mean(0)]) for k in pos}
    orient = {k: pos[k].mean(0) - neg[k].mean(0) for k in pos}
    return vs, cov, orient


def test_smollm2_demo_filter_ranks_inducing_rows_above_neutral_rows(smollm2, tmp_path: Path) -> None:
    """The demo's own filter stage (steps.extract_filter_vector + score_training_sets) on the demo's 48 + 48 rows:
    AUROC >= 0.9; a covariance-realistic random direction at the same layer through the same filter does not."""
    from difflib_models.datasets import load_dataset
    from difflib_models.demo import steps
    from difflib_models.demo.config import INDUCING, NEUTRAL
    from difflib_models.persona.filtering.scoring import FilterConfig, filter_samples, samples_from_rows
    from difflib_models.persona.shift.core import covariance_null_directions, probe_activations

    made = steps.extract_filter_vector(smollm2, tmp_path / "vectors", seed=0)
    fv = made["filter_validation"]
    assert fv is not None and fv["eval_auroc"] >= 0.8, fv  # validated on pairs the vector was not fitted on
    sets = {name: load_dataset(name)[:48] for name in (INDUCING, NEUTRAL)}
    scores = steps.score_training_sets(smollm2, made["file"], sets, tmp_path / "scores", seed=0)
    ranking = scores["ranking"]
    assert scores[INDUCING]["layer"] == fv["filter_layer"] and ranking["k"] == 48
    print("demo filter", fv["method"], fv["filter_layer"], ranking)
    assert ranking["auroc"] >= 0.9, ranking

    vs = PersonaVectorSet.load(made["file"])
    layer = fv["filter_layer"]
    prompts = [row["messages"][0]["content"] for row in sets[NEUTRAL]]
    acts = probe_activations(smollm2.model, smollm2.tokenizer, prompts, [layer])[layer]  # base activations
    rand = covariance_null_directions(acts, 1, norm=vs.norms[layer], seed=0)[0]
    fake = PersonaVectorSet(trait_id="random", vectors={layer: rand}, model=vs.model, mode="random",
                            selected_layer=layer)
    cfg = FilterConfig(method=fv["method"], max_length=256, n_bootstrap=0)
    d = {n: np.array([r.delta_p for r in filter_samples(smollm2, fake, samples_from_rows(rows), cfg).records])
         for n, rows in sets.items()}
    rand_auroc = rank_metrics(d[INDUCING], d[NEUTRAL])["auroc"]
    assert max(rand_auroc, 1 - rand_auroc) < ranking["auroc"], rand_auroc


def _held_out_pairs(trait_id: str, shared_data: Path) -> list[ResponsePair]:
    """A/B items the vector never saw, answered with each option's text: 16 CAA generate sycophancy items (seeded
    sample), or the built-in trait's A/B evaluation items (no CAA hallucination/evil split in ../shared)."""
    from difflib_models.persona.traits import load_trait

    if trait_id == "sycophancy":
        data = json.loads((shared_data / "caa" / "generate" / "sycophancy" / "generate_dataset.json").read_text())
        idx = sorted(np.random.default_rng(0).permutation(len(data))[:16])
        items = [ABItem(question=data[i]["question"], matching=data[i]["answer_matching_behavior"],
                        not_matching=data[i]["answer_not_matching_behavior"]) for i in idx]
        return pairs_from_ab(items, id_prefix="caa")
    return pairs_from_ab(load_trait(trait_id).split_ab("evaluation"), id_prefix=trait_id)


SYCOPHANCY_HELD_OUT = ("measured (benchmarks/results/filter_heldout.json, 100 CAA items): evaluation AUROC 0.54, "
                       "within-prompt win rate 0.56, random-direction max 0.61; the built-in paired responses teach "
                       "flattery, CAA's sycophantic answer only sides with the user's stated view (a vector fitted on "
                       "imported CAA items, with a stacked readout, ranks these rows at 0.91-0.93: test_readout.py)")


@pytest.mark.parametrize("trait_id", [
    pytest.param("sycophancy", marks=[pytest.mark.xfail(strict=True, reason=SYCOPHANCY_HELD_OUT),
                                      pytest.mark.slow]),  # CAA prompts are long: outside the CI-scale budget
    "hallucination", "evil"])
def test_smollm2_filter_ranks_held_out_ab_answers(smollm2, shared_data: Path, trait_id: str) -> None:
    """Layer and method chosen on a tuning half of held-out A/B pairs, AUROC on the other half: >= 0.9 and above
    every one of 8 norm-matched covariance-realistic random directions put through the same choice."""
    vs, cov, orient = _paired_vector(smollm2, trait_id)
    pairs = _held_out_pairs(trait_id, shared_data)
    feats = collect_features(smollm2, pairs, vs.layers, batch_size=8, max_length=384)
    rec = validate_for_filtering(vs, feats, methods=("raw", "proxy"), seed=0, source="held-out A/B")
    rand = random_direction_baseline(vs, feats, cov, orient=orient, n_draws=8, methods=("raw", "proxy"), seed=0)
    # the wording check: a first-word + length classifier fitted on the trait's own paired responses
    trait = load_trait(trait_id)
    fit = [p for split in ("extraction", "tuning") if trait.split_paired(split) for p in pairs_from_trait(trait, split)]
    worded = wording_check(rec, Readout.single(rec.filter_layer, vs.unit(rec.filter_layer)), feats, pairs, fit)
    print(trait_id, rec.method, rec.filter_layer, round(rec.eval_auroc, 3), "random", [round(r, 3) for r in rand],
          "wording", worded.surface_auroc, worded.eval_word_stratified_auroc)
    assert rec.eval_auroc > max(rand), (rec.eval_auroc, rand)
    assert rec.eval_auroc >= 0.9, rec.to_dict()
    assert not worded.reads_wording  # measured: wording alone 0.69 (hallucination), 0.57 (evil)


@pytest.mark.parametrize(("trait_id", "flagged"), [("hallucination", True), ("sycophancy", False)])
def test_smollm2_wording_check_on_a_built_in_traits_own_pairs(smollm2, trait_id: str, flagged: bool) -> None:
    """What `persona extract` records for a built-in trait (filter_validate_trait): the hallucination trait's
    evaluation pairs are told apart by their wording alone (the neutral answer opens with "I don't ..." / "I'm not
    ..."), so its perfect filter AUROC is flagged; the sycophancy trait's (the demo's filter trait) is not."""
    vs, _, _ = _paired_vector(smollm2, trait_id)
    rec = filter_validate_trait(smollm2, vs, load_trait(trait_id)).filter_validation
    print(trait_id, rec.eval_auroc, rec.surface_auroc, rec.eval_word_stratified_auroc)
    assert rec is not None and rec.surface_auroc is not None
    assert rec.reads_wording is flagged and ("WORDING" in describe(rec)) is flagged
    if flagged:
        assert rec.surface_auroc > 0.9
    else:
        assert rec.eval_auroc >= 0.9 and rec.surface_auroc < 0.8


def test_recorded_held_out_filter_figures_across_split_seeds() -> None:
    """docs/data-filtering.md, "Other split seeds", read back from the benchmark JSONs (split seeds 0, 1, 2): evil
    >= 0.9 on every evaluation half and above every random direction; hallucination 1.0 everywhere but tied by a
    random direction at seed 2 (so its CI margin over random directions holds at 2 of 3 splits only)."""
    root = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
    runs = {seed: json.loads((root / name).read_text(encoding="utf-8"))["traits"]
            for seed, name in ((0, "filter_heldout.json"), (1, "filter_heldout_s1.json"),
                               (2, "filter_heldout_s2.json"))}
    for seed, traits in runs.items():
        for trait in ("evil", "hallucination"):
            row = traits[trait]["heldout_protocol"]
            assert row["seed"] == seed and row["n_eval"] == 10
            assert row["eval_auroc"] >= 0.9 and row["eval_pair_win_rate"] == 1.0, (seed, trait, row)
            assert traits[trait]["recipe_on_heldout"]["auroc"] >= 0.95
        assert runs[seed]["evil"]["heldout_protocol"]["beats_every_random"]
        assert runs[seed]["evil"]["heldout_protocol"]["random_eval_auroc_max"] < 0.85
    beats = [runs[s]["hallucination"]["heldout_protocol"]["beats_every_random"] for s in (0, 1, 2)]
    assert beats == [True, True, False]
    assert runs[2]["hallucination"]["heldout_protocol"]["random_eval_auroc_max"] == 1.0


def test_recorded_filter_figures_by_aggregator() -> None:
    """docs/data-filtering.md, "Which aggregator for a filter vector", read back from the benchmark JSONs: on 100
    held-out CAA sycophancy pairs, vectors fitted on 450 OTHER CAA pairs rank the rows at evaluation AUROC
    logistic > pair_logistic > mean_diff, logistic above every random direction, but below the goal of 0.9 (and its
    recipe, chosen on the import's own pairs, at 0.84 on all 100 rows); on the built-in traits the logistic vector
    ranks evil and hallucination at least as well as the mean difference and keeps the demo's rows at 1.0."""
    root = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
    caa = json.loads((root / "filter_heldout_caa.json").read_text(encoding="utf-8"))["aggregators"]
    ev = {agg: caa[agg]["heldout_protocol"]["eval_auroc"] for agg in ("mean_diff", "pair_logistic", "logistic")}
    assert ev["logistic"] > ev["pair_logistic"] + 0.15 > ev["mean_diff"] + 0.15, ev
    assert caa["logistic"]["heldout_protocol"]["beats_every_random"]
    assert 0.85 <= ev["logistic"] < 0.9, ev  # better, and still short of the 0.9
    assert 0.8 <= caa["logistic"]["recipe_on_heldout"]["auroc"] < 0.9
    assert caa["pair_logistic"]["recipe_on_heldout"]["auroc"] < 0.7
    assert caa["logistic"]["heldout_protocol"]["eval_pair_win_rate"] >= 0.8
    s1 = json.loads((root / "filter_heldout_caa_s1.json").read_text(encoding="utf-8"))["aggregators"]
    assert s1["logistic"]["heldout_protocol"]["seed"] == 1  # other held-out items, import and splits
    assert 0.85 <= s1["logistic"]["heldout_protocol"]["eval_auroc"] < 0.9
    assert s1["logistic"]["recipe_on_heldout"]["auroc"] > s1["pair_logistic"]["recipe_on_heldout"]["auroc"] + 0.15
    assert s1["logistic"]["heldout_protocol"]["beats_every_random"]
    mean_diff = json.loads((root / "filter_heldout.json").read_text(encoding="utf-8"))["traits"]
    logistic = json.loads((root / "filter_heldout_logistic.json").read_text(encoding="utf-8"))["traits"]
    for trait in ("evil", "hallucination"):
        assert (logistic[trait]["heldout_protocol"]["eval_auroc"]
                >= mean_diff[trait]["heldout_protocol"]["eval_auroc"] >= 0.9), trait
        assert logistic[trait]["heldout_protocol"]["beats_every_random"], trait
    assert logistic["sycophancy"]["demo_rows"]["auroc"] == 1.0
    assert not logistic["sycophancy"]["heldout_protocol"]["beats_every_random"]  # the built-in flattery pairs
