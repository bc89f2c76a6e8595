from __future__ import annotations

import math

import pytest

from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.errors import ConfigError


def test_defaults_and_round_trip():
    cfg = CrosscoderConfig(d_model=64, dict_size=4096, source_names=["base/blocks.1", "finetuned/blocks.1"])
    assert math.isclose(cfg.effective_lr, 1e-4 / math.sqrt(4096 / 2**14))  # = 2e-4
    assert math.isclose(cfg.effective_lr, 2e-4)
    assert cfg.effective_aux_k == 32 and cfg.n_layers == 1
    again = CrosscoderConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert CrosscoderConfig(d_model=8, lr=1e-3).effective_lr == 1e-3


def test_sources_of_model_multi_layer():
    cfg = CrosscoderConfig(d_model=8, n_sources=6, n_models=2)
    assert cfg.n_layers == 3
    assert cfg.sources_of_model(0) == [0, 1, 2] and cfg.sources_of_model(1) == [3, 4, 5]
    with pytest.raises(ConfigError, match="model"):
        cfg.sources_of_model(2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"activation": "relu"}, "activation"),
        ({"k": 0}, "k"),
        ({"k": 100, "dict_size": 64}, "k"),
        ({"dict_size": 0}, "dict_size"),
        ({"n_sources": 3}, "n_sources"),
        ({"lr": -1.0}, "lr"),
        ({"warmup_frac": 0.5, "decay_frac": 0.6}, "warmup_frac"),
        ({"l1_coeff": float("nan")}, "l1_coeff"),
        ({"source_names": ["a"]}, "source_names"),
        ({"theta_momentum": 1.0}, "theta_momentum"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"`{field}"):
        CrosscoderConfig(d_model=8, **kwargs)


def test_from_dict_rejects_unknown_keys():
    data = CrosscoderConfig(d_model=8).to_dict()
    data["bogus"] = 1
    with pytest.raises(ConfigError, match="bogus"):
        CrosscoderConfig.from_dict(data)
