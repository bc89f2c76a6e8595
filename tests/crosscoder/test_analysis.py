from __future__ import annotations

import json

import pytest
import torch

from difflib_models.crosscoder.analysis import (
    ClassThresholds,
    analyze_crosscoder,
    classify_latents,
    decoder_cosine,
    evaluate,
    relative_decoder_norm,
)
from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.crosscoder.sources import TensorSource
from difflib_models.errors import ConfigError

from .conftest import identity_crosscoder


def _handmade():
    cc = Crosscoder(CrosscoderConfig(d_model=4, dict_size=4, activation="l1"))
    with torch.no_grad():
        cc.W_dec.zero_()
        cc.W_dec[0, 0, 0] = 1.0  # base-only
        cc.W_dec[1, 1, 1] = 2.0  # ft-only
        cc.W_dec[2, 0, 2], cc.W_dec[2, 1, 2] = 1.0, 1.0  # shared, same direction
        cc.W_dec[3, 0, 3], cc.W_dec[3, 1, 0] = 1.0, 3.0  # r = 0.75, orthogonal
    return cc


def test_relative_norm_classes_and_cosine():
    cc = _handmade()
    r = relative_decoder_norm(cc)
    assert torch.allclose(r, torch.tensor([0.0, 1.0, 0.5, 0.75]))
    assert classify_latents(r) == ["base_only", "ft_only", "shared", "other"]
    assert classify_latents(r, ClassThresholds(ft_only=0.7)) == ["base_only", "ft_only", "shared", "ft_only"]
    assert classify_latents(r, dead=torch.tensor([False, True, False, False]))[1] == "dead"
    cos = decoder_cosine(cc)
    assert cos[2] == pytest.approx(1.0) and cos[3] == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="thresholds"):
        ClassThresholds(base_only=0.5, shared_low=0.4)


def test_multi_layer_relative_norm_uses_all_layers_of_a_model():
    cc = Crosscoder(CrosscoderConfig(d_model=2, n_sources=4, n_models=2, dict_size=2, activation="l1"))
    with torch.no_grad():
        cc.W_dec.zero_()
        cc.W_dec[0, 0, 0] = 3.0  # base layer 0
        cc.W_dec[0, 1, 0] = 4.0  # base layer 1 -> base norm 5
        cc.W_dec[0, 3, 1] = 5.0  # ft layer 1 -> ft norm 5
    assert float(relative_decoder_norm(cc)[0]) == pytest.approx(0.5)


def test_evaluate_fve_l0_dead():
    cc = identity_crosscoder(d=8)
    x = torch.randn(500, 2, 8)
    res = evaluate(cc, TensorSource(x), batch_size=128)
    assert res["fve"] == pytest.approx(1.0, abs=1e-6)
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in res["fve_per_source"].values())
    # each coordinate fires exactly one of its +-pair: L0 = M * d
    assert res["l0"] == pytest.approx(16.0)
    assert res["dead_frac"] == 0.0
    with torch.no_grad():
        cc.W_dec[:, 1].mul_(0.5)  # halve the fine-tuned reconstruction: FVE of source 1 drops to 1 - 1/4
    res = evaluate(cc, TensorSource(x), batch_size=128)
    fve1 = list(res["fve_per_source"].values())[1]
    expected = 1 - (0.25 * x[:, 1].pow(2).sum() / (x[:, 1] - x[:, 1].mean(0)).pow(2).sum())
    assert fve1 == pytest.approx(float(expected), abs=1e-4)


def test_analyze_on_trained_crosscoder(batchtopk_cc, synthetic):
    res = analyze_crosscoder(batchtopk_cc, TensorSource(synthetic.acts), max_tokens=8192)
    json.dumps(res)  # JSON-able
    counts = res["class_counts"]
    assert counts["ft_only"] == len(synthetic.indices("ft_only"))
    assert counts["base_only"] == len(synthetic.indices("base_only"))
    assert res["metrics"]["fve"] > 0.95
    assert sum(res["r_histogram"]["counts"]) == batchtopk_cc.n_latents - counts["dead"]
    assert len(res["latents"]) == batchtopk_cc.n_latents
