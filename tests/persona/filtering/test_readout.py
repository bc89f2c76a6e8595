"""Stacked filter readouts: a unit vector over a span of blocks, fitted on paired responses, chosen on a tuning
split, stored in the vector file and read by the filter, the CLI and its validation.

Planted features carry ground truth (a trait that only the DIFFERENCE of two blocks shows); the tiny stories260k
model checks the filter's numbers against a manual forward; the SmolLM2 figures of the CAA benchmark are read back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.extraction.vectors import FilterValidation, PersonaVectorSet
from difflib_models.persona.filtering.readout import Readout, fit_stacked, readout_of, spans_around
from difflib_models.persona.filtering.scoring import (
    FilterConfig,
    default_method,
    filter_samples,
    samples_from_rows,
)
from difflib_models.persona.filtering.validation import (
    PairFeatures,
    describe,
    rank_metrics,
    readout_scores,
    validate_with_readouts,
    with_filter_validation,
)

D = 12
LAYERS = (0, 1, 2, 3, 4)
RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"


def _difference_planted(n: int, seed: int) -> tuple[PairFeatures, torch.Tensor]:
    """The trait is visible only in the DIFFERENCE of blocks 1 and 2 along ``e``: both blocks share a large
    per-row nuisance ``z`` along ``e`` and block 1 adds +1 for matching answers; every other block is noise.
    Each block alone ranks poorly (the nuisance dominates), ``e`` at block 1 minus ``e`` at block 2 perfectly."""
    gen = torch.Generator().manual_seed(seed)
    e = torch.zeros(D)
    e[0] = 1.0
    feats: dict[str, dict[int, torch.Tensor]] = {"matching": {}, "other": {}, "last_prompt": {}}
    for side, label in (("matching", 1.0), ("other", 0.0)):
        z = 3.0 * torch.randn(n, 1, generator=gen)
        for layer in LAYERS:
            x = 0.1 * torch.randn(n, D, generator=gen)
            if layer in (1, 2):
                x = x + z * e
            if layer == 1:
                x = x + label * e
            feats[side][layer] = x
    feats["last_prompt"] = {layer: 0.1 * torch.randn(n, D, generator=gen) for layer in LAYERS}
    return PairFeatures(**feats), e


def _vs(**kw) -> PersonaVectorSet:
    e = torch.zeros(D)
    e[0] = 1.0
    return PersonaVectorSet(trait_id="planted", vectors={layer: e.clone() for layer in LAYERS},
                            model={"name": "tiny", "weight_hash": "abc"}, mode="paired", **kw)


def test_readout_is_one_unit_vector_over_its_blocks_and_projects_by_summing() -> None:
    r = Readout({3: torch.tensor([3.0, 0.0]), 1: torch.tensor([0.0, 4.0])})
    assert r.layers == [1, 3] and r.deepest == 3 and r.stacked and r.label == "blocks.1,3 (stacked)"
    assert float(r.matrix().norm()) == pytest.approx(1.0)
    assert r.weights[3].tolist() == pytest.approx([0.6, 0.0]) and r.weights[1].tolist() == pytest.approx([0.0, 0.8])
    feats = {1: torch.tensor([[1.0, 2.0]]), 3: torch.tensor([[5.0, 7.0]]), 9: torch.tensor([[100.0, 100.0]])}
    assert float(r.project(feats)[0]) == pytest.approx(0.8 * 2.0 + 0.6 * 5.0)
    single = Readout.single(2, torch.tensor([0.0, 2.0]))
    assert not single.stacked and single.label == "blocks.2" and single.weights[2].tolist() == [0.0, 1.0]
    assert Readout({1: torch.ones(2), 2: torch.ones(2)}).label == "blocks.1-2 (stacked)"
    # same slices on other blocks: another readout for the journal
    assert Readout({1: torch.ones(2)}).fingerprint() != Readout({2: torch.ones(2)}).fingerprint()
    with pytest.raises(ConfigError, match="missing blocks"):
        r.project({1: torch.zeros(1, 2)})
    for bad in ({}, {1: torch.zeros(2)}, {1: torch.ones(2), 2: torch.ones(3)}):
        with pytest.raises(ConfigError, match="weights"):
            Readout(bad)


def test_spans_around_a_centre() -> None:
    assert spans_around(15, range(30)) == [list(range(14, 17)), list(range(12, 19)), list(range(9, 22)),
                                           list(range(5, 26))]
    assert spans_around(0, range(30)) == [[0, 1], list(range(0, 4)), list(range(0, 7)), list(range(0, 11))]
    assert spans_around(2, [0, 1, 2, 3]) == [[1, 2, 3]]  # every half-width is 1 or 0 on 4 blocks: one span
    assert spans_around(5, [5]) == []
    with pytest.raises(ConfigError, match="center"):
        spans_around(7, range(5))


def test_a_stacked_fit_recovers_a_trait_only_a_difference_of_blocks_shows() -> None:
    fit, e = _difference_planted(200, seed=0)
    test, _ = _difference_planted(200, seed=1)
    stacked = fit_stacked(fit.matching, fit.other, [1, 2])
    # ground truth: +e at block 1, -e at block 2, equal weights (the nuisance cancels); the low-variance noise
    # dimensions get weights too (the fit is standardised), so the check is on e and on what the readout scores
    w1, w2 = float(stacked.weights[1][0]), float(stacked.weights[2][0])
    assert w1 > 0 > w2 and 0.8 < abs(w1 / w2) < 1.25, (w1, w2)
    truth = torch.cat([test.matching[1][:, 0] - test.matching[2][:, 0], test.other[1][:, 0] - test.other[2][:, 0]])
    score = torch.cat([stacked.project(test.matching), stacked.project(test.other)])
    assert float(torch.corrcoef(torch.stack([truth.double(), score]))[0, 1]) > 0.9
    auc = rank_metrics(*readout_scores(test, stacked, "raw"))["auroc"]
    singles = [rank_metrics(*readout_scores(test, fit_stacked(fit.matching, fit.other, [k]), "raw"))["auroc"]
               for k in (1, 2)]
    assert auc > 0.99 and max(singles) < 0.75, (auc, singles)


def test_validation_keeps_a_stacked_readout_only_when_it_ranks_the_tuning_pairs_better() -> None:
    feats, _ = _difference_planted(80, seed=2)
    fit, _ = _difference_planted(200, seed=3)
    record, readout = validate_with_readouts(_vs(), feats, fit, methods=("proxy", "raw"), source="planted")
    assert readout is not None and record.readout_layers == tuple(readout.layers)
    assert {1, 2} <= set(readout.layers) and record.filter_layer == readout.deepest
    assert record.eval_auroc > 0.95 and max(record.filter_auroc.values()) < 0.8  # the file's single blocks fail
    assert record.readout_auroc and max(record.readout_auroc.values()) > 0.95
    assert "stacked readout over blocks." in describe(record)
    # filter_auroc lists the file's blocks under the method the record keeps
    from difflib_models.persona.filtering.validation import pair_scores, split_pairs, subset_pairs

    tuning = subset_pairs(feats, split_pairs(len(feats), 0.5, 0)[0])
    for layer, auc in record.filter_auroc.items():
        assert auc == pytest.approx(rank_metrics(*pair_scores(tuning, layer, _vs().unit(layer), record.method))["auroc"])
    # too few fitting pairs: the file's blocks only
    few, _ = _difference_planted(20, seed=3)
    record_few, none = validate_with_readouts(_vs(), feats, few, methods=("raw",))
    assert none is None and record_few.readout_layers == () and record_few.readout_auroc == {}
    assert validate_with_readouts(_vs(), feats, few, methods=("raw",), min_pairs=10)[1] is not None
    # a clean single-block trait (+e at block 3): every candidate reaches AUROC 1 on the tuning part; ties in
    # AUROC go to the file's direction
    clean = PairFeatures(matching={k: v + (1.0 if k == 3 else 0.0) * torch.eye(D)[0] for k, v in fit.other.items()},
                         other=fit.other, last_prompt=fit.last_prompt)
    vs3 = PersonaVectorSet(trait_id="planted", vectors={k: torch.eye(D)[0] if k == 3 else torch.randn(D)
                                                         for k in LAYERS},
                           model={"name": "tiny", "weight_hash": "abc"}, mode="paired")
    record3, readout3 = validate_with_readouts(vs3, clean, clean, methods=("raw",))
    assert record3.filter_layer == 3 and record3.eval_auroc == 1.0
    assert readout3 is None and record3.readout_layers == () and record3.readout_auroc  # tried, not kept


def test_vector_file_round_trip_with_a_stacked_readout(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    feats, _ = _difference_planted(80, seed=2)
    fit, _ = _difference_planted(200, seed=3)
    record, readout = validate_with_readouts(_vs(selected_layer=0), feats, fit, methods=("raw",))
    vs = with_filter_validation(_vs(selected_layer=0), record, readout)
    vs.save(tmp_path / "v")
    back = PersonaVectorSet.load(tmp_path / "v")
    assert back.filter_validation == record and back.filter_validation.version == 2
    assert sorted(back.readout) == readout.layers
    got = readout_of(back)
    assert got.layers == readout.layers and torch.allclose(got.matrix(), readout.matrix())
    assert readout_of(back, layer=0).layers == [0]  # an explicit block reads that block alone
    assert default_method(back) == "raw" and default_method(_vs(selected_layer=0)) == "proxy"
    # the record cannot name blocks the file does not hold
    with pytest.raises(ConfigError, match="readout"):
        with_filter_validation(_vs(), record, None)
    with pytest.raises(ConfigError, match="readout_layers"):
        PersonaVectorSet(trait_id="x", vectors=vs.vectors, model=vs.model, mode="paired", filter_validation=record)
    # a sidecar whose record names blocks without slices: the record is ignored (logged), the file still loads
    meta = json.loads((tmp_path / "v.json").read_text())
    from safetensors.torch import load_file, save_file

    tensors = {k: v for k, v in load_file(str(tmp_path / "v.safetensors")).items() if not k.startswith("readout.")}
    save_file(tensors, str(tmp_path / "w.safetensors"))
    meta.pop("sha256")
    (tmp_path / "w.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        stripped = PersonaVectorSet.load(tmp_path / "w")
    assert stripped.filter_validation is None and stripped.readout is None
    assert "stacked readout over blocks" in caplog.text
    # a version-1 record (no readout keys) reads as a single block
    v1 = dict(record.to_dict(), version=1, filter_layer=0)
    v1.pop("readout_layers")
    v1.pop("readout_auroc")
    old = FilterValidation.from_dict(v1)
    assert old is not None and old.readout_layers == () and old.filter_layer == 0


# ------------------------------------------------------------------------------------------------ real model
@pytest.fixture(scope="module")
def loaded(stories260k: Path):
    from difflib_models.models.loading import load_model

    return load_model(str(stories260k))


ROWS = [
    {"id": "a", "messages": [{"role": "user", "content": "Tell me a story."},
                              {"role": "assistant", "content": "Once upon a time there was a cat."}]},
    {"id": "b", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"}]},
    {"id": "c", "messages": [{"role": "user", "content": "Where did Lily go?"},
                              {"role": "assistant", "content": "She went to the park with her dog."}]},
]


def _stacked_file(loaded, method: str = "raw") -> tuple[PersonaVectorSet, Readout]:
    gen = torch.Generator().manual_seed(11)
    vecs = {k: torch.randn(loaded.d_model, generator=gen) for k in range(loaded.n_layers)}
    readout = Readout({k: torch.randn(loaded.d_model, generator=gen) for k in (1, 2, 3)})
    record = FilterValidation(filter_layer=3, method=method, filter_auroc={1: 0.6}, eval_auroc=0.93,
                              eval_precision_at_k=0.9, eval_pair_win_rate=0.95, n_tune=10, n_eval=10, seed=0,
                              source="test", readout_layers=(1, 2, 3), readout_auroc={"1-3": 0.95})
    vs = PersonaVectorSet(trait_id="planted", vectors=vecs, model=loaded.identity.to_dict(), mode="test",
                          selected_layer=0)
    return with_filter_validation(vs, record, readout), readout


def _manual(loaded, sample, readout: Readout) -> tuple[float, float]:
    """Unpadded forward; hidden_states[k + 1] is the output of block k; the readout's projections summed."""
    from difflib_models.persona.filtering.scoring import encode_sample

    enc = encode_sample(loaded.tokenizer, sample, 512)
    with torch.no_grad():
        hs = loaded.model(input_ids=torch.tensor([enc.ids]), output_hidden_states=True).hidden_states
    proj = sum(hs[k + 1][0] @ readout.weights[k] for k in readout.layers)
    return float(proj[enc.prompt_len:].mean()), float(proj[enc.prompt_len - 1])


def test_the_filter_reads_the_files_stacked_readout(loaded) -> None:
    vs, readout = _stacked_file(loaded)
    samples = samples_from_rows(ROWS)
    res = filter_samples(loaded, vs, samples, FilterConfig(method="proxy", batch_size=2, n_bootstrap=0))
    for rec, s in zip(res.records, samples, strict=True):
        resp, last = _manual(loaded, s, readout)
        assert rec.proj_train == pytest.approx(resp, abs=1e-4) and rec.proj_base == pytest.approx(last, abs=1e-4)
        assert rec.layer == 3
    extra = res.summary.to_dict()
    assert extra["readout"] == {"layers": [1, 2, 3], "label": "blocks.1-3 (stacked)"}
    assert extra["filter_validation"]["validated_layer"] is True
    assert extra["filter_validation"]["validated_method"] is False  # proxy asked, raw validated
    # an explicit block reads that block alone (the file's direction there), not the readout
    one = filter_samples(loaded, vs, samples[:1], FilterConfig(method="raw", n_bootstrap=0), layer=2)
    single = Readout.single(2, vs.unit(2))
    assert one.records[0].proj_train == pytest.approx(_manual(loaded, samples[0], single)[0], abs=1e-4)
    assert one.summary.to_dict()["filter_validation"]["validated_layer"] is False


def test_cli_filter_uses_the_validated_readout_and_method(
        loaded, stories260k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from difflib_models.cli.app import main

    monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")
    vs, readout = _stacked_file(loaded, method="raw")
    path = vs.save(tmp_path / "stacked")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")

    def cli(*extra: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main(["persona", "filter", "--vectors", str(path), "--data", str(data), "--model", str(stories260k),
                  *extra])
        out, err = capsys.readouterr()
        return int(exc.value.code or 0), out, err

    code, out, err = cli("--out", str(tmp_path / "o"))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["method"] == "raw" and summary["readout"]["layers"] == [1, 2, 3] and summary["layer"] == 3
    assert "stacked readout over blocks.1-3" in err
    rows = [json.loads(x) for x in (tmp_path / "o" / "scores.jsonl").read_text().splitlines()]
    samples = samples_from_rows(ROWS)
    np.testing.assert_allclose([r["delta_p"] for r in rows], [_manual(loaded, s, readout)[0] for s in samples],
                               atol=1e-4)
    code, out, err = cli("--out", str(tmp_path / "o2"), "--layer", "2", "--method", "proxy")
    assert code == 0 and json.loads(out)["method"] == "proxy" and json.loads(out)["readout"]["layers"] == [2]
    assert "not the filter-validated stacked readout over blocks.1-3" in err


# ------------------------------------------------------------------------------------------------ recorded
def test_recorded_caa_figures_of_the_stacked_recipe() -> None:
    """benchmarks/results/filter_caa_stacked.json (python -m benchmarks.bench_filter_caa_stacked): the product's
    recipe on imported CAA sycophancy, applied unchanged to 100 held-out CAA answers per split seed."""
    doc = json.loads((RESULTS / "filter_caa_stacked.json").read_text(encoding="utf-8"))
    runs = doc["runs"]
    assert [r["seed"] for r in runs] == [0, 1, 2]
    for r in runs:
        rec = FilterValidation.from_dict(r["record"])
        assert rec is not None and r["n_held_out"] == 100 and r["method"] == rec.method
        assert len(rec.readout_layers) > 1 and list(rec.readout_layers) == r["readout_layers"]
        assert rec.filter_layer == max(rec.readout_layers)
        # the figure the docs publish: >= 0.9 on answers the vector never saw, above every random readout
        assert r["heldout"]["auroc"] >= 0.9 and r["heldout"]["auroc"] > r["random_null_heldout_auroc"]["max"]
        assert r["heldout"]["auroc"] > r["single_block_heldout"]["auroc"]  # the single-block recipe stays below
        assert r["single_block_heldout"]["auroc"] < 0.9
        # the wording alone (first word + length) is far below: CAA sycophancy's answers are balanced
        assert r["surface_heldout"]["auroc"] < 0.7 and r["word_stratified_auroc"]["readout"] > 0.85
        assert FilterValidation.from_dict(r["record"]).surface_auroc is not None
    assert doc["summary"]["min_heldout_auroc"] == min(r["heldout"]["auroc"] for r in runs)
    assert doc["summary"]["goal_met_every_seed"] is True


def test_recorded_stacked_recipe_on_behaviours_it_was_not_developed_on() -> None:
    """benchmarks/results/filter_caa_stacked_{survival-instinct,myopic-reward}.json (python -m
    benchmarks.bench_filter_caa_stacked --behaviour B): the same recipe, unchanged, on other CAA behaviours.
    What the docs publish: survival-instinct stays below 0.9 (but reads the trait beyond the answer's first word);
    myopic-reward is ranked almost perfectly, also among answers that start with the same word. The two smaller
    splits are in test_recorded_wording_check_on_the_small_caa_behaviours."""
    for behaviour in ("survival-instinct", "myopic-reward"):
        doc = json.loads((RESULTS / f"filter_caa_stacked_{behaviour}.json").read_text(encoding="utf-8"))
        assert doc["behaviour"] == behaviour and [r["seed"] for r in doc["runs"]] == [0, 1, 2]
        for r in doc["runs"]:
            rec = FilterValidation.from_dict(r["record"])
            assert rec is not None and rec.surface_auroc is not None and not rec.reads_wording
            held, strat = r["heldout"]["auroc"], r["word_stratified_auroc"]
            # above the wording alone, above every random readout, and among same-first-word answers too
            assert held > r["surface_heldout"]["auroc"] + 0.05 and held > r["random_null_heldout_auroc"]["max"]
            assert strat["readout"] > strat["surface"] and strat["readout"] > r["random_null_word_stratified_max"]
            if behaviour == "survival-instinct":
                assert 0.75 < held < 0.9 and strat["readout"] > 0.75
                assert r["surface_heldout"]["auroc"] > 0.65  # the lopsided "Yes" alone ranks these rows
            else:
                assert held > 0.99 and strat["readout"] > 0.99
        assert doc["summary"]["goal_met_every_seed"] is (behaviour == "myopic-reward")


def test_recorded_wording_check_on_the_small_caa_behaviours() -> None:
    """filter_caa_stacked_{coordinate-other-ais,refusal}.json: on coordinate-other-ais the held-out AUROC is >= 0.9
    but the answers' first word alone and random readouts rank the rows above 0.9 too (the matching answer says
    "Yes" 318 times in 360), and
    persona extract's record flags WORDING at every seed; among same-word answers the readout still beats the
    wording and random readouts. Refusal is ranked perfectly, not flagged."""
    for behaviour in ("coordinate-other-ais", "refusal"):
        doc = json.loads((RESULTS / f"filter_caa_stacked_{behaviour}.json").read_text(encoding="utf-8"))
        assert [r["seed"] for r in doc["runs"]] == [0, 1, 2]
        for r in doc["runs"]:
            rec = FilterValidation.from_dict(r["record"])
            held, strat = r["heldout"]["auroc"], r["word_stratified_auroc"]
            assert rec is not None and rec.reads_wording is (behaviour == "coordinate-other-ais")
            if behaviour == "coordinate-other-ais":
                assert held >= 0.9 and r["surface_heldout"]["auroc"] > 0.9 and r["random_null_heldout_auroc"]["max"] > 0.9
                assert strat["readout"] > 0.85 and strat["surface"] < 0.55
                assert strat["readout"] > r["random_null_word_stratified_max"]
            else:
                assert held > 0.99 and r["surface_heldout"]["auroc"] > 0.85


def test_persona_extract_fits_and_records_stacked_readouts_for_an_imported_trait(
        stories260k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A CAA-format file of 240 short items: 120 extraction + 60 tuning pairs (>= MIN_STACKED_PAIRS) to fit on, so
    `persona extract` tries stacked readouts; whichever wins is what the file stores and the filter reads."""
    from difflib_models.cli.app import main
    from difflib_models.persona.filtering.readout import MIN_STACKED_PAIRS

    monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")
    things = ["dog", "cat", "sun", "tree", "ball", "cake", "bird", "boat", "park", "rain", "toy", "fish"]
    items = []
    for i in range(240):
        w, v = things[i % 12], things[(i * 5 + 3) % 12]
        likes = i % 2 == 0
        q = (f"I am friend {i}. I {'love' if likes else 'hate'} the {w} and the {v}. Is the {w} good?\n\nChoices:\n"
             " (A) Yes\n (B) No")
        yes_first = (i // 2) % 2 == 0
        match = "(A)" if likes == yes_first else "(B)"
        q = q if yes_first else q.replace("(A) Yes\n (B) No", "(A) No\n (B) Yes")
        items.append({"question": q, "answer_matching_behavior": match,
                      "answer_not_matching_behavior": "(B)" if match == "(A)" else "(A)"})
    trait = tmp_path / "agree.json"
    trait.write_text(json.dumps(items), encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["persona", "extract", "--trait", str(trait), "--model", str(stories260k), "--mode", "paired",
              "--aggregator", "logistic", "--validation", "quick", "--n-null", "20", "--out", str(tmp_path / "v")])
    out, err = capsys.readouterr()
    assert int(exc.value.code or 0) == 0, err
    record = json.loads(out)["filter_validation"]
    assert record["version"] == 2 and record["n_tune"] + record["n_eval"] == 60
    assert record["readout_auroc"], "stacked readouts were not tried"  # 180 fitting pairs >= MIN_STACKED_PAIRS
    # the wording check ran: "Yes" is the matching answer exactly when the friend likes the thing, half the items,
    # so the first word alone ranks the pairs near chance, and both answer words have enough rows to stratify
    assert record["surface_auroc"] is not None and abs(record["surface_auroc"] - 0.5) < 0.2
    assert record["eval_word_stratified_auroc"] is not None
    assert 180 >= MIN_STACKED_PAIRS
    vs = PersonaVectorSet.load(tmp_path / "v")
    assert vs.filter_validation is not None
    with pytest.raises(SystemExit) as exc:  # --filter-readout block: the per-block directions only
        main(["persona", "extract", "--trait", str(trait), "--model", str(stories260k), "--mode", "paired",
              "--aggregator", "logistic", "--validation", "quick", "--n-null", "20", "--filter-readout", "block",
              "--out", str(tmp_path / "b")])
    out, err = capsys.readouterr()
    assert int(exc.value.code or 0) == 0, err
    block = json.loads(out)["filter_validation"]
    assert block["readout_layers"] == [] and block["readout_auroc"] == {}
    assert PersonaVectorSet.load(tmp_path / "b").readout is None
    if vs.filter_validation.readout_layers:  # a stacked readout won: its slices are in the file and the filter reads it
        assert sorted(vs.readout) == list(vs.filter_validation.readout_layers)
        assert readout_of(vs).layers == list(vs.filter_validation.readout_layers)
    else:
        assert vs.readout is None and readout_of(vs).layers == [vs.filter_validation.filter_layer]


def test_recorded_user_path_of_the_stacked_caa_filter() -> None:
    """benchmarks/results/filter_caa_cli.json (python -m benchmarks.bench_filter_caa_cli): `persona extract` on the
    900 imported CAA items, then `persona filter` on the 100 held-out items' two answers; the AUROC is recomputed
    by the benchmark from scores.jsonl."""
    doc = json.loads((RESULTS / "filter_caa_cli.json").read_text(encoding="utf-8"))
    assert doc["n_import_items"] == 900 and doc["n_held_out"] == 100 and doc["config"]["seed"] == 0
    rec = FilterValidation.from_dict(doc["filter_validation"])
    assert rec is not None and len(rec.readout_layers) > 1 and rec.method == "raw"
    used = doc["filter_summary"]
    # the filter read the validated readout and method without being told
    assert used["readout"]["layers"] == list(rec.readout_layers) and used["method"] == rec.method
    assert used["filter_validation"]["validated_layer"] and used["filter_validation"]["validated_method"]
    assert "--method" not in doc["commands"]["filter"] and "--layer" not in doc["commands"]["filter"]
    assert used["n"] == 200 and doc["heldout"]["auroc"] >= 0.9
    # the same split seed as the benchmark of the recipe: the CLI reproduces its held-out figure
    stacked = json.loads((RESULTS / "filter_caa_stacked.json").read_text(encoding="utf-8"))["runs"][0]
    assert stacked["seed"] == 0 and rec.readout_layers == tuple(stacked["readout_layers"])
    assert doc["heldout"]["auroc"] == pytest.approx(stacked["heldout"]["auroc"], abs=0.01)
