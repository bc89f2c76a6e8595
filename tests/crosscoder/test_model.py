from __future__ import annotations

import json

import pytest
import torch

from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.model import CONFIG_FILE, WEIGHTS_FILE, Crosscoder
from difflib_models.errors import ConfigError, IdentityMismatchError


def test_init_follows_the_recipe():
    cfg = CrosscoderConfig(d_model=16, n_sources=4, n_models=2, dict_size=48, dec_init_norm=0.1)
    cc = Crosscoder(cfg)
    assert cc.W_enc.shape == (4, 16, 48) and cc.W_dec.shape == (48, 4, 16) and cc.b_dec.shape == (4, 16)
    assert torch.allclose(cc.decoder_norms(), torch.full((48, 4), 0.1), atol=1e-6)
    assert torch.equal(cc.W_enc, cc.W_dec.permute(1, 2, 0))  # W_enc = W_dec^T


def test_encode_decode_shapes_and_sparsity():
    cfg = CrosscoderConfig(d_model=8, dict_size=32, activation="topk", k=3)
    cc = Crosscoder(cfg)
    with torch.no_grad():
        cc.b_enc.fill_(1.0)  # every pre-activation positive: exactly k survive
    x = torch.randn(10, 2, 8)
    f = cc.encode(x)
    assert f.shape == (10, 32) and torch.all((f > 0).sum(-1) == 3)
    assert cc(x).shape == x.shape
    with pytest.raises(ConfigError, match="x.shape"):
        cc.encode(torch.randn(10, 3, 8))


def test_batchtopk_threshold_at_inference():
    cfg = CrosscoderConfig(d_model=8, dict_size=32, activation="batchtopk", k=2, theta_momentum=0.5)
    cc = Crosscoder(cfg)
    x = torch.randn(64, 2, 8)
    out = cc.training_step_output(x)
    cc.update_state(out.fired, out.min_kept_score)
    assert float(cc.theta) == pytest.approx(float(out.min_kept_score))
    cc.update_state(out.fired, torch.tensor(0.0))
    assert float(cc.theta) == pytest.approx(0.5 * float(out.min_kept_score))
    cc.eval()
    f = cc.encode(x)
    scores = torch.relu(cc.pre_activation(x)) * cc.decoder_norms().sum(-1)
    assert torch.equal(f > 0, scores > cc.theta)
    f_batch = cc.encode(x, use_threshold=False)
    assert int((f_batch > 0).sum()) == 2 * 64


def test_dead_latent_counters():
    cfg = CrosscoderConfig(d_model=8, dict_size=6, activation="topk", k=1, dead_steps=2)
    cc = Crosscoder(cfg)
    fired = torch.tensor([True, False, False, False, False, False])
    for _ in range(2):
        cc.update_state(fired, None)
    assert cc.steps_since_fired.tolist() == [0, 2, 2, 2, 2, 2]
    assert cc.dead_mask().tolist() == [False] + [True] * 5


def test_save_load_round_trip(tmp_path):
    cfg = CrosscoderConfig(d_model=8, dict_size=32, activation="batchtopk", k=2, source_names=["b", "f"])
    cc = Crosscoder(cfg)
    with torch.no_grad():
        cc.W_dec.add_(torch.randn_like(cc.W_dec))
        cc.theta.fill_(0.25)
        cc.norm_scale.copy_(torch.tensor([2.0, 3.0]))
        cc.steps_since_fired[3] = 7
    cc.save(tmp_path)
    back = Crosscoder.load(tmp_path, expected=cfg)
    assert back.config == cfg
    for (name, a), (_, b) in zip(cc.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    x = torch.randn(5, 2, 8)
    assert torch.equal(cc.eval()(x), back.eval()(x))


def test_load_refuses_other_config(tmp_path):
    Crosscoder(CrosscoderConfig(d_model=8, dict_size=32)).save(tmp_path)
    with pytest.raises(IdentityMismatchError, match="`dict_size=32`.*64"):
        Crosscoder.load(tmp_path, expected=CrosscoderConfig(d_model=8, dict_size=64))
    with pytest.raises(IdentityMismatchError, match="activation"):
        Crosscoder.load(tmp_path, expected=CrosscoderConfig(d_model=8, dict_size=32, activation="l1"))
    # a weights file that disagrees with its own JSON config
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    meta["config"]["dict_size"] = 48
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(IdentityMismatchError, match="shape"):
        Crosscoder.load(tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(ConfigError, match="directory"):
        Crosscoder.load(tmp_path)
