"""Splice-in CE/KL on a tiny Llama: an exact reconstruction recovers everything, a damaged one less."""

from __future__ import annotations

import pytest
import torch

from difflib_models.errors import ConfigError
from tests.helpers.tiny_models import make_tiny

from .conftest import identity_crosscoder


@pytest.fixture(scope="module")
def models():
    return [make_tiny("llama", seed=0), make_tiny("llama", seed=1)]


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 128, (4, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0  # right padding in one row
    return ids, mask


def test_exact_reconstruction_recovers_all(models, batch):
    from difflib_models.crosscoder.splice import splice_metrics

    ids, mask = batch
    cc = identity_crosscoder(d=32)
    res = splice_metrics(cc, models, ids, mask, layer=1, target_model=1)
    assert res["ce_spliced"] == pytest.approx(res["ce_clean"], abs=1e-5)
    assert res["kl_spliced"] == pytest.approx(0.0, abs=1e-6)
    assert res["ce_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert res["kl_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert res["fve_target"] == pytest.approx(1.0, abs=1e-6)
    assert res["n_tokens"] == int(mask.sum()) - 4  # BOS positions kept
    assert res["kl_ablated"] > 1e-5 and res["ce_ablated"] != res["ce_clean"]


def test_damaged_reconstruction_recovers_less(models, batch):
    from difflib_models.crosscoder.splice import splice_metrics

    ids, mask = batch
    cc = identity_crosscoder(d=32)
    with torch.no_grad():
        cc.W_dec[:, 1].mul_(0.3)  # the fine-tuned reconstruction shrinks to 30 %
    res = splice_metrics(cc, models, ids, mask, layer=1, target_model=1, ablation="zero")
    assert res["kl_spliced"] > 1e-4
    assert res["kl_recovered"] < 1.0
    assert res["fve_target"] < 0.6
    # base side untouched by the damage: still exact
    base = splice_metrics(cc, models, ids, mask, layer=1, target_model=0)
    assert base["kl_spliced"] == pytest.approx(0.0, abs=1e-6)


def test_bad_arguments(models, batch):
    from difflib_models.crosscoder.splice import splice_metrics

    ids, mask = batch
    cc = identity_crosscoder(d=32)
    with pytest.raises(ConfigError, match="ablation"):
        splice_metrics(cc, models, ids, mask, layer=1, ablation="resample")
    with pytest.raises(ConfigError, match="models"):
        splice_metrics(cc, models[:1], ids, mask, layer=1)
    with pytest.raises(ConfigError, match="d_model"):
        splice_metrics(identity_crosscoder(d=16), models, ids, mask, layer=1)


def test_splice_leaves_training_flags_and_hooks_as_they_were(batch):
    from difflib_models.crosscoder.splice import splice_metrics

    ids, mask = batch
    pair = [make_tiny("llama", seed=0), make_tiny("llama", seed=1)]
    for model in pair:
        model.train()
        model.model.layers[0].eval()  # a submodule the user froze in eval mode
    before = [{n: m.training for n, m in model.named_modules()} for model in pair]
    clean = splice_metrics(identity_crosscoder(d=32), [m.eval() for m in
                                                       (make_tiny("llama", seed=0), make_tiny("llama", seed=1))],
                           ids, mask, layer=1)
    res = splice_metrics(identity_crosscoder(d=32), pair, ids, mask, layer=1)
    assert [{n: m.training for n, m in model.named_modules()} for model in pair] == before
    assert all(not m._forward_hooks for model in pair for m in model.modules())
    assert res["ce_clean"] == pytest.approx(clean["ce_clean"], abs=0)  # measured in eval mode all the same
