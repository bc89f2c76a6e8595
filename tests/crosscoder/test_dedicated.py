"""Dedicated feature crosscoder (``exclusive_latents``): masks hold, config errors, save/load, planted features."""

from __future__ import annotations

import json

import pytest
import torch

from difflib_models.crosscoder.analysis import analyze_crosscoder
from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.latent_scaling import latent_scaling
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.crosscoder.sources import TensorSource
from difflib_models.errors import ConfigError, IdentityMismatchError

from .conftest import _train


def _cfg(**kw) -> CrosscoderConfig:
    base = dict(d_model=8, dict_size=32, activation="l1", k=4, exclusive_latents=3, steps=10)
    base.update(kw)
    return CrosscoderConfig(**base)


def _other_model_weights(cc: Crosscoder) -> list[torch.Tensor]:
    """Weights that must stay zero: base-dedicated latents 0-2 into/from the fine-tuned source, and back."""
    return [w.detach() for w in (cc.W_dec[0:3, 1], cc.W_enc[1, :, 0:3], cc.W_dec[3:6, 0], cc.W_enc[0, :, 3:6])]


@pytest.mark.parametrize("activation", ["l1", "topk", "batchtopk"])
@pytest.mark.parametrize("sparse", [True, False])
def test_dedicated_latents_never_touch_the_other_model(activation, sparse):
    cc = Crosscoder(_cfg(activation=activation), sparse=sparse)
    assert all(float(w.abs().max()) == 0.0 for w in _other_model_weights(cc))
    assert float(cc.W_dec[0:3, 0].detach().norm(dim=-1).min()) > 0  # own-model part initialised as usual
    opt = torch.optim.Adam(cc.parameters(), lr=1e-2)
    x = torch.randn(64, 2, 8)
    for _ in range(5):
        out = cc.training_step_output(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert all(float(w.abs().max()) == 0.0 for w in _other_model_weights(cc))
    assert float(cc.W_dec[6:, 0].detach().abs().max()) > 0  # shared latents keep both sides
    # a dedicated latent's output lands in its own model only, whatever it is fed
    f = torch.zeros(1, 32)
    f[0, 4] = 2.0  # fine-tuned-dedicated
    with torch.no_grad():
        delta = cc.decode(f) - cc.decode(torch.zeros(1, 32))
    assert float(delta[0, 0].abs().max()) == 0.0 and float(delta[0, 1].abs().max()) > 0


def test_dense_and_sparse_paths_agree_with_masks():
    torch.manual_seed(0)
    x = torch.randn(128, 2, 8)
    grads = []
    for sparse in (True, False):
        cc = Crosscoder(_cfg(activation="batchtopk", exclusive_latents=4, exclusive_penalty=2.0), sparse=sparse)
        out = cc.training_step_output(x)
        out.loss.backward()
        grads.append((float(out.loss.detach()), cc.W_enc.grad.clone(), cc.W_dec.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-5) and torch.allclose(grads[0][2], grads[1][2], atol=1e-5)


def test_exclusive_penalty_prices_dedicated_latents():
    cc = Crosscoder(_cfg(exclusive_penalty=3.0))
    assert cc.latent_price[:6].tolist() == [3.0] * 6 and cc.latent_price[6:].eq(1.0).all()
    with torch.no_grad():
        cc.W_enc.zero_()
        cc.b_enc.zero_()
        cc.b_enc[[0, 10]] = 1.0  # one base-dedicated latent, one shared latent, both active with value 1
    out = cc.training_step_output(torch.zeros(4, 2, 8))
    norms = cc.decoder_norms().sum(-1).detach()
    assert float(out.penalty) == pytest.approx(float(3.0 * norms[0] + norms[10]), rel=1e-5)


def test_config_errors_name_the_argument():
    with pytest.raises(ConfigError, match="exclusive_latents"):
        _cfg(exclusive_latents=-1)
    with pytest.raises(ConfigError, match="exclusive_latents.*fewer than"):
        _cfg(exclusive_latents=16)  # 2 x 16 = dict_size: nothing left to share
    with pytest.raises(ConfigError, match="exclusive_penalty"):
        _cfg(exclusive_penalty=0)
    cfg = _cfg(n_sources=4, exclusive_latents=2)  # 2 models x 2 layers
    assert [cfg.exclusive_model(j) for j in (0, 1, 2, 3, 4)] == [0, 0, 1, 1, None]
    assert _cfg(exclusive_latents=0).exclusive_model(0) is None


def test_save_load_keeps_the_masks_and_refuses_another_partition(tmp_path):
    cc = Crosscoder(_cfg())
    cc.save(tmp_path / "cc")
    loaded = Crosscoder.load(tmp_path / "cc", expected=_cfg())
    assert torch.equal(loaded.source_mask, cc.source_mask) and torch.equal(loaded.W_dec, cc.W_dec)
    with pytest.raises(IdentityMismatchError, match="exclusive_latents"):
        Crosscoder.load(tmp_path / "cc", expected=_cfg(exclusive_latents=2))
    meta = json.loads((tmp_path / "cc" / "crosscoder.json").read_text())
    del meta["config"]["exclusive_latents"]  # a checkpoint written before the option existed: a plain crosscoder
    (tmp_path / "cc" / "crosscoder.json").write_text(json.dumps(meta))
    assert Crosscoder.load(tmp_path / "cc").config.exclusive_latents == 0


def test_planted_ft_only_features_land_in_dedicated_latents(synthetic, tmp_path):
    """Ground truth: every live fine-tune-dedicated latent either recovers a planted fine-tune-only feature
    (cos > 0.95) and passes Latent Scaling, or duplicates a feature the base model has and is flagged."""
    cc = _train(synthetic, tmp_path, activation="l1", dict_size=128, l1_coeff=0.5, steps=800, exclusive_latents=6)
    source = TensorSource(synthetic.acts)
    analysis = analyze_crosscoder(cc, source, max_tokens=20_000)
    rows = analysis["latents"]
    assert [rows[j]["dedicated"] for j in (0, 5, 6, 11, 12)] == [0, 0, 1, 1, None]
    dedicated = [j for j in range(6, 12) if rows[j]["fires"] > 20]
    assert all(rows[j]["class"] == "ft_only" and rows[j]["r"] == 1.0 for j in dedicated)
    w = cc.W_dec.detach()[dedicated, 1]
    cos = (w / w.norm(dim=-1, keepdim=True)) @ synthetic.ft_dirs.T  # planted rows are unit (or zero) vectors
    scaling = latent_scaling(cc, source, dedicated, max_tokens=20_000)["latents"]
    ft_only = set(synthetic.indices("ft_only"))
    recovered = set()
    for i, j in enumerate(dedicated):
        best = int(cos[i].abs().argmax())
        entry = scaling[j]
        if best in ft_only and float(cos[i, best]) > 0.95:
            recovered.add(best)
            assert not entry["artifact"] and abs(entry["nu_recon"]) < 0.1, (j, entry)
        else:
            assert entry["artifact"] and entry["nu_recon"] > 0.5, (j, synthetic.kinds[best], entry)
    assert len(recovered) >= 2, (recovered, cos.abs().max(-1))
