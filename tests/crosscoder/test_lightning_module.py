"""Training through Lightning: planted-latent recovery, L1 variant, schedules, resume, DDP."""

from __future__ import annotations

import pytest
import torch

from difflib_models.crosscoder.analysis import classify_latents, decoder_cosine, relative_decoder_norm
from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.lightning_module import lr_factor, penalty_factor, train_crosscoder
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.crosscoder.sources import TensorSource
from difflib_models.errors import ConfigError


def _match(cc, synthetic, i):
    """Best latent for planted latent i by cosine of the concatenated [base; ft] decoder vectors."""
    true = torch.cat([synthetic.base_dirs[i], synthetic.ft_dirs[i]])
    w = cc.W_dec.detach().reshape(cc.n_latents, -1)
    cos = (w @ true) / (w.norm(dim=-1) * true.norm()).clamp_min(1e-9)
    j = int(cos.abs().argmax())
    return j, float(cos[j].abs())


def _recovery(cc, synthetic):
    planted = [i for i, k in enumerate(synthetic.kinds) if k != "artifact"]
    r = relative_decoder_norm(cc)
    classes = classify_latents(r)
    dcos = decoder_cosine(cc)
    recovered, correct = 0, 0
    for i in planted:
        j, cos = _match(cc, synthetic, i)
        recovered += cos >= 0.9
        kind = synthetic.kinds[i]
        if kind == "changed":  # shared by norm, but its decoder directions disagree
            correct += classes[j] == "shared" and float(dcos[j]) < 0.6
        else:
            correct += classes[j] == kind and (kind != "shared" or float(dcos[j]) > 0.9)
    return recovered / len(planted), correct / len(planted)


def test_batchtopk_recovers_and_classifies_planted_latents(batchtopk_cc, synthetic):
    rec, cls = _recovery(batchtopk_cc, synthetic)
    assert rec >= 0.9, rec
    assert cls >= 0.9, cls
    # the inference threshold was learned and gives about k active latents per token
    x = batchtopk_cc.normalize(synthetic.acts[:2000])
    l0 = float((batchtopk_cc.eval().encode(x) > 0).sum(-1).float().mean())
    assert float(batchtopk_cc.theta) > 0 and 1.0 < l0 < 3.0


def test_l1_variant_trains(l1_cc, synthetic):
    rec, cls = _recovery(l1_cc, synthetic)
    assert rec >= 0.9 and cls >= 0.9, (rec, cls)
    fresh = Crosscoder(l1_cc.config)
    fresh.norm_scale.copy_(l1_cc.norm_scale)
    x = l1_cc.normalize(synthetic.acts[:4000])

    def loss(cc):
        with torch.no_grad():
            return float(cc.eval().training_step_output(x).loss)

    def fve(cc):
        with torch.no_grad():
            err = x - cc.eval()(x)
        return 1 - float(err.pow(2).sum() / (x - x.mean(0)).pow(2).sum())

    assert loss(l1_cc) < 0.2 * loss(fresh)
    assert fve(l1_cc) > 0.95 and fve(fresh) < 0.5


def test_schedules():
    # 100 steps, 10% warm-up, 20% decay
    assert lr_factor(0, 100, 0.1, 0.2) == pytest.approx(0.1)
    assert lr_factor(9, 100, 0.1, 0.2) == pytest.approx(1.0)
    assert lr_factor(50, 100, 0.1, 0.2) == 1.0
    assert lr_factor(80, 100, 0.1, 0.2) == pytest.approx(1.0)
    assert lr_factor(90, 100, 0.1, 0.2) == pytest.approx(0.5)
    assert lr_factor(99, 100, 0.1, 0.2) == pytest.approx(0.05)
    assert penalty_factor(0, 100, 0.05) == pytest.approx(0.2)
    assert penalty_factor(10, 100, 0.05) == 1.0
    assert penalty_factor(3, 100, 0.0) == 1.0


def test_resume_from_last_checkpoint(tmp_path, synthetic):
    cfg = CrosscoderConfig(d_model=32, dict_size=32, activation="topk", k=2, lr=3e-3, steps=40, batch_size=128)
    src = TensorSource(synthetic.acts[:4000])
    first = train_crosscoder(src, cfg, tmp_path / "a", max_steps=20, checkpoint_every=10)
    assert (tmp_path / "a" / "checkpoints" / "last.ckpt").is_file()
    resumed = train_crosscoder(src, cfg, tmp_path / "a", max_steps=40)
    straight = train_crosscoder(src, cfg, tmp_path / "b", max_steps=40)
    assert not torch.equal(first.W_dec, resumed.W_dec)
    # resuming continues the same run: identical to training 40 steps in one go
    for name, a in resumed.state_dict().items():
        assert torch.allclose(a, straight.state_dict()[name], atol=1e-6), name
    saved = Crosscoder.load(tmp_path / "a" / "crosscoder", expected=cfg)
    assert torch.equal(saved.W_dec, resumed.W_dec)


def test_source_config_mismatch(tmp_path, synthetic):
    cfg = CrosscoderConfig(d_model=16, dict_size=32, steps=2)
    with pytest.raises(ConfigError, match="d_model"):
        train_crosscoder(TensorSource(synthetic.acts[:100]), cfg, tmp_path)


@pytest.mark.slow
def test_ddp_spawn_two_cpu_ranks(tmp_path, synthetic):
    # with 4 dedicated latents per model, so the masks are exercised under DDP too
    cfg = CrosscoderConfig(d_model=32, dict_size=64, activation="batchtopk", k=2, lr=3e-3, steps=80,
                           batch_size=512, dead_steps=50, exclusive_latents=4, exclusive_penalty=0.5)
    src = TensorSource(synthetic.acts[:8000])
    cc = train_crosscoder(src, cfg, tmp_path, trainer_kwargs={"strategy": "ddp_spawn", "devices": 2})
    saved = Crosscoder.load(tmp_path / "crosscoder", expected=cfg)
    assert torch.equal(saved.W_dec, cc.W_dec)
    assert float(saved.theta) > 0
    assert float(saved.W_dec[0:4, 1].abs().max()) == 0.0 and float(saved.W_dec[4:8, 0].abs().max()) == 0.0
    assert float(saved.W_enc[1, :, 0:4].abs().max()) == 0.0 and float(saved.W_enc[0, :, 4:8].abs().max()) == 0.0
    x = saved.normalize(synthetic.acts[8000:12000])
    with torch.no_grad():
        err = x - saved.eval()(x)
    fve = 1 - float(err.pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert fve > 0.6, fve


@pytest.mark.parametrize(("total", "warmup_frac", "decay_frac"), [(1000, 0.01, 0.2), (37, 0.1, 0.3), (50, 0.0, 0.2)])
def test_lr_factor_versus_transformers_wsd(total, warmup_frac, decay_frac):
    """transformers' linear WSD schedule equals ours after warm-up; in warm-up it lags one step (0 at step 0)."""
    from transformers.optimization import get_wsd_schedule

    warm, decay = round(warmup_frac * total), round(decay_frac * total)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_wsd_schedule(opt, num_warmup_steps=warm, num_decay_steps=decay, num_training_steps=total,
                             warmup_type="linear", decay_type="linear")
    theirs = [sched.lr_lambdas[0](s) for s in range(total)]
    ours = [lr_factor(s, total, warmup_frac, decay_frac) for s in range(total)]
    assert ours[warm:] == pytest.approx(theirs[warm:], abs=1e-12)
    assert ours[:warm] == pytest.approx([(s + 1) / warm for s in range(warm)])
    assert theirs[:warm] == pytest.approx([s / warm for s in range(warm)])
    if warm:
        assert theirs[0] == 0.0 and ours[0] > 0  # the difference that keeps ours
