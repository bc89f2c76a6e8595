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
    assert layer == base.n_layers // 2 and set(out["files"]) == set(steps.GATE_TRAITS)
    for trait_id, path in out["files"].items():
        vs = PersonaVectorSet.load(path, expect_model=base)
        assert vs.selected_layer == layer and vs.layers == [layer] and vs.mode == out["mode"]
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
