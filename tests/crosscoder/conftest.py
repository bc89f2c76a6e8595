"""Shared fixtures of the crosscoder tests: one thread (tiny tensors), synthetic data, trained crosscoders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("DIFFLIB_MODELS_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny matrices: thread start-up costs more than it saves, and CI shares 2 cores
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic():
    from difflib_models.crosscoder.synthetic import make_synthetic_pairs

    return make_synthetic_pairs(32, n_tokens=20_000, seed=0)


def _train(synthetic, tmp: Path, **overrides):
    from difflib_models.crosscoder.config import CrosscoderConfig
    from difflib_models.crosscoder.lightning_module import train_crosscoder
    from difflib_models.crosscoder.sources import TensorSource

    kwargs = dict(d_model=32, n_sources=2, dict_size=64, activation="batchtopk", k=2, lr=3e-3, steps=1200,
                  batch_size=512, dead_steps=50, seed=0)
    kwargs.update(overrides)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_crosscoder(TensorSource(synthetic.acts), CrosscoderConfig(**kwargs), tmp, resume=False)
    finally:
        torch.set_num_threads(before)  # a session fixture: later tests keep the session's thread count


@pytest.fixture(scope="session")
def batchtopk_cc(synthetic, tmp_path_factory):
    return _train(synthetic, tmp_path_factory.mktemp("btk"))


@pytest.fixture(scope="session")
def l1_cc(synthetic, tmp_path_factory):
    return _train(synthetic, tmp_path_factory.mktemp("l1"), activation="l1", dict_size=128, l1_coeff=0.5,
                  steps=800)


def identity_crosscoder(d: int = 32, n_models: int = 2):
    """An L1 crosscoder that reconstructs its input exactly: latents +-e_i of each source (ReLU pairs)."""
    from difflib_models.crosscoder.config import CrosscoderConfig
    from difflib_models.crosscoder.model import Crosscoder

    m = n_models
    cfg = CrosscoderConfig(d_model=d, n_sources=m, dict_size=2 * m * d, activation="l1", n_models=n_models)
    cc = Crosscoder(cfg)
    with torch.no_grad():
        cc.W_enc.zero_()
        cc.W_dec.zero_()
        cc.b_enc.zero_()
        cc.b_dec.zero_()
        for src in range(m):
            for i in range(d):
                for s, sign in enumerate((1.0, -1.0)):
                    j = (src * d + i) * 2 + s
                    cc.W_enc[src, i, j] = sign
                    cc.W_dec[j, src, i] = sign
    return cc.eval()
