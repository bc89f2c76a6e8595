from __future__ import annotations

import pytest
import torch

from difflib_models.crosscoder.analysis import classify_latents, relative_decoder_norm
from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.latent_scaling import latent_scaling
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.crosscoder.sources import TensorSource
from difflib_models.errors import ConfigError


def test_betas_closed_form():
    """One ft-only latent along e0; the base activation holds 0.4 x the same direction, never reconstructed."""
    d = 4
    cc = Crosscoder(CrosscoderConfig(d_model=d, dict_size=2, activation="l1"))
    with torch.no_grad():
        cc.W_enc.zero_()
        cc.W_dec.zero_()
        cc.W_enc[1, 0, 0] = 1.0  # latent 0 reads ft e0
        cc.W_dec[0, 1, 0] = 1.0  # and writes ft e0 only
    c = torch.rand(300) + 0.5
    x = torch.zeros(300, 2, d)
    x[:, 1, 0] = c
    x[:, 0, 0] = 0.4 * c
    res = latent_scaling(cc, TensorSource(x), [0])["latents"][0]
    assert res["beta_recon_ft"] == pytest.approx(1.0) and res["beta_recon_base"] == pytest.approx(0.0)
    assert res["beta_err_ft"] == pytest.approx(1.0) and res["beta_err_base"] == pytest.approx(0.4)
    assert res["nu_err"] == pytest.approx(0.4) and res["nu_act"] == pytest.approx(0.4)
    assert res["artifact"] is True  # complete shrinkage: the base model carries the direction
    assert latent_scaling(cc, TensorSource(x), [0], artifact_threshold=0.5)["latents"][0]["artifact"] is False
    with pytest.raises(ConfigError, match="latents"):
        latent_scaling(cc, TensorSource(x), [5])


def test_separates_planted_artifact_from_true_ft_only(l1_cc, synthetic):
    """The L1 crosscoder shows the decoupled artifact as fine-tune-only latents (r ~ 1); Latent Scaling flags
    them, and leaves the truly fine-tune-only latents unflagged."""
    cc = l1_cc
    classes = classify_latents(relative_decoder_norm(cc))
    ft_only = [j for j, c in enumerate(classes) if c == "ft_only"]
    res = latent_scaling(cc, TensorSource(synthetic.acts), max_tokens=20_000)
    assert sorted(res["latents"]) == ft_only  # default: every ft-only latent
    w_ft = cc.W_dec.detach()[:, 1]
    cos = (w_ft / w_ft.norm(dim=-1, keepdim=True).clamp_min(1e-9)) @ synthetic.ft_dirs.T  # [n, planted]
    owner = cos.argmax(-1)
    art = synthetic.indices("artifact")
    true_ft = synthetic.indices("ft_only")
    art_latents = [j for j in ft_only if int(owner[j]) in art and cos[j, owner[j]] > 0.9]
    true_latents = [j for j in ft_only if int(owner[j]) in true_ft and cos[j, owner[j]] > 0.9]
    assert art_latents and len({int(owner[j]) for j in true_latents}) == len(true_ft)
    for j in art_latents:
        assert res["latents"][j]["artifact"] and res["latents"][j]["nu_recon"] > 0.4, res["latents"][j]
    for j in true_latents:
        e = res["latents"][j]
        assert not e["artifact"] and abs(e["nu_recon"]) < 0.15 and abs(e["nu_err"]) < 0.15, e
