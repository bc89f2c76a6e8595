"""The demo's persona-vector stage extracts through persona's public extract-and-validate (no private copy of the
gate's extraction or of an AUROC): the files it writes load for the base, at the policy's layer, and the AUROC it
reports is the held-out separation of those vectors (checked here with sklearn on the evaluation features)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_extract_vectors_reports_the_held_out_auroc_of_the_saved_vectors(stories260k: Path, tmp_path: Path) -> None:
    import dataclasses

    from sklearn.metrics import roc_auc_score

    from difflib_models.demo import steps
    from difflib_models.demo.config import PROFILES
    from difflib_models.models.loading import load_model
    from difflib_models.persona.extraction import PersonaExtractor
    from difflib_models.persona.extraction.vectors import PersonaVectorSet
    from difflib_models.persona.traits import load_trait

    base = load_model(stories260k)
    profile = dataclasses.replace(PROFILES["quick"], vector_instructions=2, vector_questions=4,
                                  vector_eval_questions=8)
    out = steps.extract_vectors(base, tmp_path, profile)
    layer = out["layer"]
    assert layer == base.n_layers // 2 and set(out["files"]) == set(steps.gate_traits())
    for trait_id, path in out["files"].items():
        vs = PersonaVectorSet.load(path, expect_model=base)
        assert vs.selected_layer == layer and vs.layers == [layer] and vs.mode == out["mode"][trait_id]
        trait = load_trait(trait_id)
        small = dataclasses.replace(trait, instructions=trait.instructions[:2],
                                    questions={"extraction": trait.questions["extraction"][:4],
                                               "evaluation": trait.questions["evaluation"][:8]})
        pos, neg = PersonaExtractor(mode=vs.mode, layers=[layer], show_progress=False).features(base, small,
                                                                                                 "evaluation")
        unit = vs.unit(layer)
        scores = [float(x) for x in pos[layer] @ unit] + [float(x) for x in neg[layer] @ unit]
        labels = [1] * pos[layer].shape[0] + [0] * neg[layer].shape[0]
        assert out["auroc"][trait_id] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)


def test_behaviour_memo_scores_each_model_view_once_and_restores_the_scorer(monkeypatch) -> None:
    """The demo's two gates share the behavioural scores of the same weights: a peft model's base view is keyed by
    the base weights (the same for both fine-tunes), the model view by weights + adapter; a hit returns a copy of
    the first call's result; leaving the ``with`` block puts the real scorer back."""
    from types import SimpleNamespace

    from difflib_models.demo import steps
    from difflib_models.gate import behavioural
    from difflib_models.gate.ab_scoring import ItemScores
    from difflib_models.models.identity import ModelIdentity

    calls: list[tuple[str, str, int]] = []

    def fake_scorer(loaded, items, *, side="model", batch_size=8, name=None):
        calls.append((loaded.identity.name, side, batch_size))
        return ItemScores([float(len(calls))] * len(items), [0.0] * len(items), [0.5] * len(items))

    monkeypatch.setattr(behavioural, "item_scores", fake_scorer)
    base = ModelIdentity(name="base", source="hf_dir", path=None, weight_hash="w0")

    def peft(name: str, adapter: str) -> SimpleNamespace:
        return SimpleNamespace(is_peft=True, identity=ModelIdentity(name=name, source="peft", path=None,
                                                                    weight_hash="w0", adapter_hash=adapter, base=base))

    inducing, neutral, neutral_again = peft("inducing", "a1"), peft("neutral", "a2"), peft("neutral2", "a2")
    items, other = ["i1", "i2"], ["i3"]
    with steps.BehaviourMemo() as memo:
        first = behavioural.item_scores(inducing, items, side="base", batch_size=16, name="base")
        assert behavioural.item_scores(neutral, items, side="base", batch_size=16, name="base") == first
        behavioural.item_scores(inducing, items, side="model", batch_size=16)
        control = behavioural.item_scores(neutral, items, side="model", batch_size=16, name="control")
        again = behavioural.item_scores(neutral_again, items, side="model", batch_size=16, name="candidate")
        assert again == control and again is not control  # a copy: a caller cannot change the memo
        again.first[0] = -1.0
        assert behavioural.item_scores(neutral, items, side="model", batch_size=16).first[0] != -1.0
        behavioural.item_scores(neutral, other, side="model", batch_size=16)  # other items: scored
        behavioural.item_scores(neutral, items, side="model", batch_size=8)  # other batch size: scored
    assert calls == [("inducing", "base", 16), ("inducing", "model", 16), ("neutral", "model", 16),
                     ("neutral", "model", 16), ("neutral", "model", 8)]
    assert (memo.hits, memo.misses) == (3, 5)
    assert behavioural.item_scores is fake_scorer
