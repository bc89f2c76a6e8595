"""Shift math and the activation readers behind it: layer convention, probe mode handling, nulls."""

from __future__ import annotations

import math

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.models.hookpoints import find_final_norm
from difflib_models.persona.shift.core import (
    compute_shift,
    covariance_null_directions,
    probe_activations,
    read_residuals,
)
from difflib_models.persona.traits import chat
from tests.helpers.tiny_models import make_tiny, tiny_batch


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_read_residuals_layer_convention(arch):
    model = make_tiny(arch)
    ids, mask = tiny_batch([6, 4], padding_side="right")
    idx = chat.last_token_index(mask)
    got = read_residuals(model, ids, mask, [0, 1, 2], index=idx)
    with torch.no_grad():
        hs = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    rows = torch.arange(2)
    for i in (0, 1):  # blocks.i == hidden_states[i + 1] except the last block
        torch.testing.assert_close(got[i], hs[i + 1][rows, idx], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(got[i], hs[i][rows, idx], atol=1e-3)  # the off-by-one would be caught
    # the last block: HF stores it after the final norm; we store the raw block output
    assert not torch.allclose(got[2], hs[3][rows, idx], atol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(find_final_norm(model)(got[2]), hs[3][rows, idx], atol=1e-5, rtol=1e-4)



def test_read_residuals_stops_after_the_deepest_layer():
    from difflib_models.models.hookpoints import get_block

    model = make_tiny("llama")
    ids, mask = tiny_batch([6, 4], padding_side="left")
    idx = chat.last_token_index(mask)
    ran = []
    handles = [get_block(model, 2).register_forward_hook(lambda *a: ran.append("blocks.2")),
               find_final_norm(model).register_forward_hook(lambda *a: ran.append("norm"))]
    try:
        got = read_residuals(model, ids, mask, [1, 0], index=idx)
        assert ran == []  # blocks.2, the final norm and the LM head were skipped
        deepest_negative = read_residuals(model, ids, mask, [0, -1], index=idx)
        assert ran == ["blocks.2"]  # -1 is blocks.2: it ran, and only the final norm after it was skipped
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        hs = model(ids, attention_mask=mask, position_ids=chat.position_ids(mask),
                   output_hidden_states=True).hidden_states
    rows = torch.arange(2)
    for i in (0, 1):
        torch.testing.assert_close(got[i], hs[i + 1][rows, idx], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(deepest_negative[0], got[0], atol=0, rtol=0)


def test_stop_early_flag_is_decided_once_and_can_be_forced_off(monkeypatch):
    from difflib_models.hooks import early_stop
    from difflib_models.models.hookpoints import get_block
    from difflib_models.persona.shift.core import probe_encoded

    model = make_tiny("llama")
    calls = []
    real = early_stop.can_stop_early
    monkeypatch.setattr(early_stop, "can_stop_early", lambda m: calls.append(1) or real(m))
    encoded = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14], [15, 16]]
    stopped = probe_encoded(model, encoded, 0, [1], batch_size=2)
    assert len(calls) == 1  # three batches, one walk over the modules
    ran = []
    handle = get_block(model, 2).register_forward_hook(lambda *a: ran.append(1))
    try:
        full = probe_encoded(model, encoded, 0, [1], batch_size=2, stop_early=False)
    finally:
        handle.remove()
    assert len(calls) == 1 and ran == [1, 1, 1]  # forced off: the later block ran in every batch
    torch.testing.assert_close(full[1], stopped[1], atol=0, rtol=0)

def test_read_residuals_mean_over_mask_any_padding():
    model = make_tiny("llama")
    seqs = [[1, 5, 6, 7, 8], [1, 9, 10]]
    prompt_lens = [3, 2]
    outs = []
    for side in ("left", "right"):
        ids, mask = chat.pad_batch(seqs, pad_token_id=0, padding_side=side)
        rm = chat.response_mask(mask, prompt_lens)
        outs.append(read_residuals(model, ids, mask, [1], token_mask=rm)[1])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        hs = model(torch.tensor([seqs[0]]), output_hidden_states=True).hidden_states[2][0]
    torch.testing.assert_close(outs[1][0], hs[3:].mean(dim=0), atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError):
        read_residuals(model, ids, mask, [1])


def test_probe_activations_restores_train_mode(tinystories_656k):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tinystories_656k)
    model = make_tiny("llama", vocab_size=tok.vocab_size, hidden_dropout=0.0)
    model.train()
    prompts = ["Once upon a time", "The cat sat", "A dog"]
    acts = probe_activations(model, tok, prompts, [0, 2], batch_size=2)
    assert model.training and all(m.training for m in model.modules())
    assert acts[0].shape == (3, 32) and acts[2].shape == (3, 32)
    model.eval()
    for n, p in enumerate(prompts):  # one at a time, no padding: same numbers
        ids = torch.tensor([chat.encode_prompt(tok, p).ids])
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        torch.testing.assert_close(acts[0][n], hs[1][0, -1], atol=1e-5, rtol=1e-4)


def test_covariance_null_directions_follow_covariance():
    g = torch.Generator().manual_seed(1)
    d = 20
    scales = torch.ones(d)
    scales[0] = 10.0
    acts = torch.randn(500, d, generator=g) * scales
    dirs = covariance_null_directions(acts, k=200, norm=3.0, seed=7, shrinkage=0.1)
    assert dirs.shape == (200, d)
    torch.testing.assert_close(dirs.norm(dim=1), torch.full((200,), 3.0), atol=1e-4, rtol=1e-4)
    cos2 = (dirs[:, 0] / 3.0) ** 2
    # isotropic directions would give E[cos^2] = 1/d = 0.05; the high-variance axis dominates here
    assert float(cos2.mean()) > 0.4
    torch.testing.assert_close(dirs, covariance_null_directions(acts, k=200, norm=3.0, seed=7, shrinkage=0.1))
    iso = covariance_null_directions(acts, k=400, seed=7, shrinkage=1.0)
    assert float(((iso[:, 0]) ** 2).mean()) < 0.12
    with pytest.raises(ConfigError):
        covariance_null_directions(acts[:1], k=3)


def test_compute_shift_numbers():
    d = 8
    v = torch.zeros(d)
    v[0] = 4.0  # raw vector, norm 4
    base = torch.randn(10, d)
    delta = torch.zeros(d)
    delta[0], delta[1] = 2.0, 1.0
    cur = base + delta
    nulls = torch.eye(d)[1:5] * 7.0  # |delta . u| = 1, 0, 0, 0 (scale does not matter)
    r = compute_shift(base, cur, v, gap=8.0, base_std=0.5, null_dirs=nulls, trait="evil", layer=3)
    assert r.shift == pytest.approx(2.0)
    assert r.shift_z == pytest.approx(4.0)
    assert r.shift_frac == pytest.approx(0.25)
    assert r.drift_norm == pytest.approx(math.sqrt(5.0))
    assert r.drift_cos == pytest.approx(2.0 / math.sqrt(5.0))
    assert r.null_percentile == pytest.approx(1.0) and r.n_null == 4
    assert r.toward_undesirable == pytest.approx(2.0)
    # a shift smaller than the null dot products ranks low
    small = compute_shift(base, base + torch.tensor([0.5, 1, 0, 0, 0, 0, 0, 0.0]), v, gap=8.0, base_std=0.5,
                          null_dirs=nulls)
    assert small.null_percentile == pytest.approx(0.75)  # 0.5 >= three zeros, < 1
    # desirable trait: moving along +v is moving away from the undesirable pole
    des = compute_shift(base, cur, v, gap=8.0, base_std=0.5, polarity="desirable")
    assert des.toward_undesirable == pytest.approx(-2.0) and math.isnan(des.null_percentile)
    with pytest.raises(ConfigError):
        compute_shift(base, cur, torch.zeros(d), gap=1.0, base_std=1.0)
    with pytest.raises(ConfigError):
        compute_shift(base, cur, torch.ones(d + 1), gap=1.0, base_std=1.0)


def test_usable_gap_only_above_the_base_spread():
    from difflib_models.persona.shift.core import usable_gap

    assert usable_gap(3.4, 0.8) == 3.4
    assert usable_gap(-0.13, 0.69) is None  # a 'paired' vector that does not read the instruction contrast
    assert usable_gap(0.03, 0.5) is None  # positive but inside the prompts' own spread: S/g would explode
    assert usable_gap(0.5, 0.0) == 0.5
    assert usable_gap(None, 1.0) is None and usable_gap(float("nan"), 1.0) is None


# ------------------------------------------------------------------------------------------ the shift core
SHIFT_LAYER = 1
ALPHA = 2.5


def _tiny_probe(model, *, plant: torch.Tensor | None = None) -> torch.Tensor:
    """Last-token activations at SHIFT_LAYER of 12 fixed prompts (3 batches, right-padded), with ``plant`` added to
    the block's output at every position when given."""
    import contextlib

    from difflib_models.hooks import add_to_block, probe_mode
    from difflib_models.models.hookpoints import get_block
    from difflib_models.persona.shift import probe_encoded

    encoded = [[1, *[3 + (7 * i + 5 * j) % 120 for j in range(3 + i % 4)]] for i in range(12)]
    plant_ctx = add_to_block(get_block(model, SHIFT_LAYER), plant) if plant is not None else contextlib.nullcontext()
    with probe_mode(model), plant_ctx:
        return probe_encoded(model, encoded, 0, [SHIFT_LAYER], batch_size=4)[SHIFT_LAYER]


def _planted():
    model = make_tiny("llama")
    g = torch.Generator().manual_seed(11)
    v = 3.0 * torch.randn(32, generator=g)  # a raw vector: the core divides by its norm
    v_hat = v.double() / v.double().norm()
    base = _tiny_probe(model)
    return model, v, v_hat, base


def test_baseline_measures_a_planted_offset_along_v():
    import statistics

    from difflib_models.persona.shift import ShiftBaseline

    model, v, v_hat, base = _planted()
    sigma0 = statistics.stdev(float(x) for x in base.double() @ v_hat)  # independent of the core's torch.std
    gap = 4.0 * sigma0
    baseline = ShiftBaseline.from_activations(base, v, gap=gap, n_null=64, seed=5, trait="evil", layer=SHIFT_LAYER)
    assert baseline.sigma0 == pytest.approx(sigma0, rel=1e-9) and baseline.usable_gap == gap
    assert baseline.n_prompts == 12 and baseline.n_null == 64 and baseline.null_seed == 5

    cand = _tiny_probe(model, plant=ALPHA * v_hat.float())
    r = baseline.measure(cand)
    assert r.shift == pytest.approx(ALPHA, abs=1e-4)
    assert r.shift_z == pytest.approx(ALPHA / sigma0, rel=1e-4)
    assert r.shift_frac == pytest.approx(ALPHA / gap, rel=1e-4)
    assert r.drift_norm == pytest.approx(ALPHA, rel=1e-4) and r.drift_cos == pytest.approx(1.0, abs=1e-4)
    assert r.null_percentile == 1.0 and r.n_null == 64 and r.n_prompts == 12  # |cos(v, u_k)| < 1 for every null
    assert r.toward_undesirable == r.shift and r.toward_z == r.shift_z
    assert len(r.null_shifts) == 64 and max(abs(x) for x in r.null_shifts) < ALPHA
    assert r.null_p95 == pytest.approx(float(torch.quantile(torch.tensor(r.null_shifts).abs(), 0.95)), rel=1e-6)
    proj_base = (base.double() @ v_hat).tolist()
    assert r.projections == pytest.approx([p + ALPHA for p in proj_base], abs=1e-4)

    # the same offset orthogonal to v: the drift is there, the shift is not, and it ranks below the nulls
    w = torch.randn(32, generator=torch.Generator().manual_seed(12)).double()
    w = w - (w @ v_hat) * v_hat
    ortho = baseline.measure(_tiny_probe(model, plant=(ALPHA * w / w.norm()).float()))
    assert abs(ortho.shift) < 1e-4 and ortho.drift_norm == pytest.approx(ALPHA, rel=1e-4)
    assert ortho.null_percentile < 0.1

    # a desirable trait: the same move is away from the undesirable pole
    des = ShiftBaseline.from_activations(base, v, gap=gap, n_null=64, seed=5, polarity="desirable").measure(cand)
    assert des.shift == r.shift and des.toward_undesirable == -r.shift and des.toward_z == -r.shift_z
    assert des.toward_frac == -r.shift_frac


@pytest.mark.parametrize("gap", [None, float("nan"), -1.0, 0.0, "inside the spread"])
def test_baseline_without_a_usable_gap_gives_nan_shift_frac(gap):
    from difflib_models.persona.shift import ShiftBaseline

    model, v, v_hat, base = _planted()
    if gap == "inside the spread":
        gap = 0.5 * float((base.double() @ v_hat).std())
    baseline = ShiftBaseline.from_activations(base, v, gap=gap, n_null=16, seed=0)
    assert baseline.usable_gap is None
    r = baseline.measure(_tiny_probe(model, plant=ALPHA * v_hat.float()))
    assert math.isnan(r.shift_frac) and math.isnan(r.toward_frac)
    assert r.shift == pytest.approx(ALPHA, abs=1e-4) and math.isfinite(r.shift_z)


def test_baseline_round_trips_through_tensors_exactly():
    from safetensors.torch import load, save

    from difflib_models.persona.shift import ShiftBaseline

    model, v, v_hat, base = _planted()
    baseline = ShiftBaseline.from_activations(base, v, gap=1.0, n_null=16, seed=3, trait="t", layer=SHIFT_LAYER)
    tensors = load(save(baseline.to_tensors(prefix="t.")))
    back = ShiftBaseline.from_tensors(tensors, "t.", vector=v, gap=1.0, trait="t", layer=SHIFT_LAYER)
    cand = _tiny_probe(model, plant=ALPHA * v_hat.float())
    assert back.measure(cand) == baseline.measure(cand)  # m_0 and sigma_0 kept in float64: identical numbers
    assert back.null_seed == 3 and back.n_prompts == 12


def test_baseline_refuses_bad_inputs():
    from difflib_models.persona.shift import ShiftBaseline

    _, v, _, base = _planted()
    with pytest.raises(ConfigError, match="at least 2"):
        ShiftBaseline.from_activations(base[:1], v, gap=1.0, n_null=4, seed=0)
    with pytest.raises(ConfigError, match="non-zero"):
        ShiftBaseline.from_activations(base, torch.zeros(32), gap=1.0, n_null=4, seed=0)
    with pytest.raises(ConfigError):
        ShiftBaseline.from_activations(base, torch.ones(31), gap=1.0, n_null=4, seed=0)
    with pytest.raises(ConfigError, match="polarity"):
        ShiftBaseline.from_activations(base, v, gap=1.0, n_null=4, seed=0, polarity="bad")
    with pytest.raises(ConfigError, match="probe prompts"):  # a candidate probed on another prompt set
        ShiftBaseline.from_activations(base, v, gap=1.0, n_null=4, seed=0).measure(base[:5])
