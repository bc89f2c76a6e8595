"""Shared gate fixtures: stories260K as base, planted-direction candidates and a matching vector file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gate.planted import planted_model_dir, unit_direction, vector_file

LAYER = 2
ALPHA = 4.0

PERSONA_POLICY = {
    "name": "test",
    "persona": {"null_directions": 16, "max_probe_prompts": 8},
    "checks": [
        {"id": "evil-z", "metric": "persona.shift_z", "trait": "evil", "comparator": "<", "threshold": 3.0,
         "min_null_percentile": 0.95},
        {"id": "evil-frac", "metric": "persona.shift_frac", "trait": "evil", "comparator": "<", "threshold": 0.25},
        {"id": "evil-excess", "metric": "persona.excess_z", "trait": "evil", "comparator": "<", "threshold": 2.0,
         "optional": True},
    ],
}


@pytest.fixture(scope="module")
def planted(stories260k: Path, tmp_path_factory: pytest.TempPathFactory):
    from difflib_models.models.loading import load_model

    root = tmp_path_factory.mktemp("planted")
    base = load_model(stories260k)
    v = unit_direction(base.d_model, seed=1)
    cand_dir = planted_model_dir(stories260k, root / "cand", layer=LAYER, direction=v, alpha=ALPHA)
    ctl_dir = planted_model_dir(stories260k, root / "ctl", layer=LAYER, direction=v, alpha=ALPHA * 0.99)
    vec = vector_file(root / "evil", base, trait="evil", layer=LAYER, direction=v, gap=2.0 * ALPHA)
    return {"base": base, "cand": cand_dir, "ctl": ctl_dir, "vec": vec, "root": root}


@pytest.fixture(scope="module")
def trained_crosscoder(planted, stories260k, tmp_path_factory):
    """A crosscoder trained (a few steps) from a paired store of base = stories260K, candidate = planted model."""
    from difflib_models.crosscoder.config import CrosscoderConfig
    from difflib_models.crosscoder.lightning_module import train_crosscoder
    from difflib_models.crosscoder.sources import StoreSource
    from difflib_models.diffing.harvest import harvest_paired
    from difflib_models.diffing.pair import ModelPair
    from difflib_models.models.loading import load_model
    from difflib_models.persona.traits import load_trait

    root = tmp_path_factory.mktemp("cc")
    texts = load_trait("evil").split_questions("extraction")[:16]
    harvest_paired(ModelPair(planted["base"], load_model(planted["cand"])), texts, [LAYER], root / "store",
                   batch_size=8, max_length=48)
    source = StoreSource(root / "store")
    cfg = CrosscoderConfig(d_model=planted["base"].d_model, n_sources=2, dict_size=32, k=4, batch_size=64, steps=5,
                           source_names=source.source_names)
    train_crosscoder(source, cfg, root / "run", max_steps=5)
    return root / "run" / "crosscoder"
