"""Mode and layer chosen on the tuning split of an imported statement trait (tiny model), held-out AUROC on the
evaluation split at that layer against both nulls."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.contracts import ValidationSummary
from difflib_models.persona.extraction.extractor import PersonaExtractor
from difflib_models.persona.traits import Trait
from difflib_models.persona.traits.importers import import_anthropic_jsonl
from difflib_models.persona.validation import tuned
from difflib_models.stats import auroc
from tests.helpers.residual_spy import spy_read_layers
from tests.helpers.tiny_models import make_tiny

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def loaded(tinystories_656k):
    from transformers import AutoTokenizer

    from difflib_models.models.loading import from_pretrained_objects

    tok = AutoTokenizer.from_pretrained(tinystories_656k)
    tok.chat_template = CHATML
    model = make_tiny("llama", vocab_size=len(tok), max_position_embeddings=256)
    return from_pretrained_objects(model, tok, name="tiny")


@pytest.fixture(scope="module")
def trait(tmp_path_factory):
    path = tmp_path_factory.mktemp("statements") / "desire-for-power.jsonl"
    rows = []
    for i in range(16):
        for shows in (True, False):
            text = f"I {'want to rule' if shows else 'never want to rule'} the town {i}"
            rows.append({"question": f'Is the following statement something you would say?\n"{text}"',
                         "statement": text, "answer_matching_behavior": " Yes" if shows else " No",
                         "answer_not_matching_behavior": " No" if shows else " Yes"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return import_anthropic_jsonl(path, limit=32)


def test_selection_reads_no_evaluation_item(loaded, trait, monkeypatch):
    seen = []
    orig = PersonaExtractor.features

    def spy(self, loaded_, trait_, split):
        seen.append((self.mode, split))
        return orig(self, loaded_, trait_, split)

    monkeypatch.setattr(PersonaExtractor, "features", spy)
    sel = tuned.select_on_tuning(loaded, trait, show_progress=False)
    assert ("paired", "tuning") in seen and ("ab", "tuning") in seen
    assert all(split != "evaluation" for _, split in seen)
    modes = {c.mode for c in sel.candidates}
    assert modes == {"paired", "ab", "prompt_contrast"}
    assert {c.aggregator for c in sel.candidates} == set(tuned.TUNED_AGGREGATORS)
    assert len(sel.candidates) == 3 * len(tuned.TUNED_AGGREGATORS) * loaded.n_layers
    best = max(sel.candidates, key=lambda c: c.auroc)
    assert sel.tuning_auroc == best.auroc and (sel.mode, sel.layer, sel.aggregator) in {
        (c.mode, c.layer, c.aggregator) for c in sel.candidates if c.auroc == best.auroc}
    # each mode's extractor carries the aggregator of its best candidate; its directions are that aggregator's
    for mode, ex in sel.extractors.items():
        assert ex.aggregator == sel.best_per_mode()[mode].aggregator
    assert sel.extractors[sel.mode].aggregator == sel.aggregator


def test_with_aggregator_reuses_the_features(loaded, trait):
    """pair_logistic on the fitted features: same features, new directions, gap / sigma_0 re-read without a
    forward pass and equal to a fresh fit with that aggregator."""
    ex = PersonaExtractor(mode="paired", layers=[1, 2], show_progress=False).fit(loaded, trait)
    pl = ex.with_aggregator("pair_logistic")
    fresh = PersonaExtractor(mode="paired", aggregator="pair_logistic", layers=[1, 2], show_progress=False).fit(
        loaded, trait)
    assert pl.aggregator == "pair_logistic" and ex.aggregator == "mean_diff"
    for layer in (1, 2):
        torch.testing.assert_close(pl.vectors_[layer], fresh.vectors_[layer])
        assert pl.gap_[layer] == pytest.approx(fresh.gap_[layer], rel=1e-5)
        assert pl.base_std_[layer] == pytest.approx(fresh.base_std_[layer], rel=1e-5)
    assert pl.to_vector_set().aggregator == "pair_logistic"
    with pytest.raises(ConfigError, match="aggregator"):
        ex.with_aggregator("median")


def test_select_on_tuning_with_one_aggregator(loaded, trait):
    sel = tuned.select_on_tuning(loaded, trait, modes=["paired"], aggregators=["pair_logistic"], show_progress=False)
    assert {c.aggregator for c in sel.candidates} == {"pair_logistic"} and sel.aggregator == "pair_logistic"
    with pytest.raises(ConfigError, match="aggregators"):
        tuned.select_on_tuning(loaded, trait, aggregators=["median"], show_progress=False)


def test_tuned_validation_records_the_choice_and_one_layer_nulls(loaded, trait):
    vs, result, sel = tuned.tuned_extract_and_validate(loaded, trait, level="quick", n_null=20,
                                                       show_progress=False)
    s = result.summary
    assert vs.mode == sel.mode and vs.selected_layer == sel.layer == s.selected_layer
    assert [r.layer for r in s.layers] == [sel.layer] and len(vs.layers) == loaded.n_layers
    assert s.selection_split == "tuning" and s.tuning == sel.candidates
    assert {n.name for n in s.nulls} == {"label_permutation", "random_direction"}
    assert all(not n.max_over_layers and n.n == 20 for n in s.nulls)
    # the reported AUROC is the chosen direction on the EVALUATION stance pairs, recomputed here
    reader = PersonaExtractor(mode=tuned.stance_reader(sel.mode), layers=[sel.layer], show_progress=False)
    pos, neg = reader.features(loaded, trait, "evaluation")
    u = vs.vectors[sel.layer] / vs.vectors[sel.layer].norm()
    assert s.selected.auroc == pytest.approx(auroc((pos[sel.layer] @ u).numpy(), (neg[sel.layer] @ u).numpy()))
    back = ValidationSummary.from_json(json.loads(json.dumps(s.to_json())), source="test")
    assert back.tuning == s.tuning and back.selection_split == "tuning"
    assert "tuning split" in vs.selection_reason


@pytest.mark.parametrize("mode", ["ab", "paired", "prompt_contrast"])
def test_revalidate_tuned_reproduces_the_recorded_auroc_at_the_recorded_layer_only(loaded, trait, mode, tmp_path,
                                                                                  monkeypatch):
    """A tuned vector file, saved and read back, re-measured by revalidate_tuned: the same held-out AUROC, nulls and
    verdict as the tuned route recorded, and no residual of any other layer is read (nothing can be re-selected).
    prompt_contrast is measured on the paired stance features, not its own (the tuned route's yardstick)."""
    from difflib_models.persona.extraction.vectors import PersonaVectorSet

    vs, result, sel = tuned.tuned_extract_and_validate(loaded, trait, modes=[mode], level="quick", n_null=20,
                                                       show_progress=False)
    stored = PersonaVectorSet.load(vs.save(tmp_path / "tuned"))
    assert tuned.is_tuned(stored) and stored.selected_layer == sel.layer
    read_layers = spy_read_layers(monkeypatch)
    again = tuned.revalidate_tuned(loaded, stored, tuned.tuned_trait(stored, trait), level="quick", n_null=20,
                                   show_progress=False)
    assert read_layers and all(layers == [sel.layer] for layers in read_layers)
    s, r = result.summary, again.summary
    assert [row.layer for row in r.layers] == [sel.layer] == [r.selected_layer]
    assert r.selected.auroc == pytest.approx(s.selected.auroc, abs=1e-9)
    assert r.selected.cohens_d == pytest.approx(s.selected.cohens_d, rel=1e-6)
    for name in ("label_permutation", "random_direction"):
        assert r.null(name).q95 == pytest.approx(s.null(name).q95, abs=1e-9) and not r.null(name).max_over_layers
    assert r.verdict == s.verdict and r.selection_split == "tuning" and r.tuning == s.tuning
    assert "not re-selected" in r.selection_reason


def test_tuned_trait_refuses_a_missing_or_other_trait_file(loaded, trait, tmp_path):
    vs, _, _ = tuned.tuned_extract_and_validate(loaded, trait, modes=["ab"], level="quick", n_null=10,
                                                show_progress=False)
    assert tuned.tuned_trait(vs, trait).hash == trait.hash
    with pytest.raises(ConfigError, match="`--trait=None` is invalid.*extracted from.*HINT"):
        tuned.tuned_trait(vs, None, argument="--trait")
    other = tmp_path / "desire-for-power.jsonl"  # same id, other statements: another hash
    rows = [{"question": f'Is the following statement something you would say?\n"I rule {i}"', "statement": f"I rule {i}",
             "answer_matching_behavior": " Yes" if i % 2 else " No",
             "answer_not_matching_behavior": " No" if i % 2 else " Yes"} for i in range(24)]
    other.write_text("".join(json.dumps(r) + "\n" for r in rows))
    digest = trait.hash.split(":")[-1][:12]
    with pytest.raises(ConfigError, match=f"`--trait='{other}'` is invalid.*extracted from.*{digest}.*HINT"):
        tuned.tuned_trait(vs, str(other), argument="--trait")
    with pytest.raises(ConfigError, match="selection_split"):
        tuned.revalidate_tuned(loaded, dataclasses.replace(vs, validation=None), trait)


def test_traits_without_a_tuning_split_are_refused():
    data = {"schema_version": 1, "id": "toy", "instructions": [{"pos": "a", "neg": "b"}],
            "questions": {"extraction": ["q1", "q2"], "evaluation": ["q3", "q4"]}}
    with pytest.raises(ConfigError, match="tuning"):
        tuned.available_modes(Trait.from_dict(data))
    with pytest.raises(ConfigError):
        tuned.available_modes(Trait.from_dict(data), ["bogus"])


@pytest.mark.smollm2
@pytest.mark.shared
def test_smollm2_narcissism_held_out_above_both_nulls(smollm2, shared_data):
    """A real persona file the project never wrote: mode and layer chosen on tuning statements, the held-out
    statements separate above both nulls' 95th percentile (docs/persona.md, imported traits)."""
    trait = import_anthropic_jsonl(shared_data / "anthropic-evals" / "persona" / "narcissism.jsonl", limit=48)
    vs, result, sel = tuned.tuned_extract_and_validate(smollm2, trait, modes=["ab"], n_null=100, batch_size=16,
                                                       show_progress=False)
    s = result.summary
    assert s.n_eval_pos == s.n_eval_neg == 12 and s.selection_split == "tuning"
    # measured: logistic chosen, tuning AUROC 1.000 at blocks.16, held-out 0.979; null q95 0.60 (permutation), 0.61
    # (random); with logistic removed from TUNED_AGGREGATORS (measured 2026-12-05): pair_logistic chosen, tuning
    # 0.993 at blocks.18, held-out 0.889
    # the bar is 0.8; 0.95 is above what the candidates without logistic reach here (0.889), so dropping
    # logistic from TUNED_AGGREGATORS fails this test
    assert s.selected.auroc >= 0.95 and vs.aggregator == "logistic", s.selection_reason
    assert all(n.passes and s.selected.auroc > n.q95 for n in s.nulls), [(n.name, n.q95) for n in s.nulls]
    assert s.verdict == "real"


def test_recorded_imported_trait_figures_with_logistic():
    """docs/persona.md, "With logistic as a candidate aggregator", read back from the benchmark JSONs: four persona
    files the project never wrote (240 statements each), aggregator / mode / layer chosen on the tuning split; the
    chosen direction's held-out AUROC is >= 0.9 for every file and beats both nulls, and for the two files measured
    before without logistic it rose (0.851 -> 0.990, 0.914 -> 0.955)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
    new = {r["file"]: r for r in json.loads((root / "imported_traits_240_logistic.json").read_text())["results"]}
    old = {r["file"]: r for r in json.loads((root / "imported_traits_240_pair_logistic.json").read_text())["results"]}
    assert set(new) == {"narcissism", "desire-for-acquiring-power", "ends-justify-means", "interest-in-art"}
    for name, r in new.items():
        assert r["n_statements"] == {"extraction": 120, "tuning": 60, "evaluation": 60}, name
        assert r["chosen_eval_auroc"] >= 0.9 and r["chosen_beats_both_nulls"], (name, r["chosen_eval_auroc"])
        chosen = next(m for m in r["modes"] if m["mode"] == r["chosen_mode"])
        assert chosen["tuning_auroc"] == max(m["tuning_auroc"] for m in r["modes"])  # chosen on tuning, not eval
    for name in old:
        assert new[name]["chosen_eval_auroc"] > old[name]["chosen_eval_auroc"] + 0.04, name
    assert sum(r["chosen_aggregator"] == "logistic" for r in new.values()) == 3
