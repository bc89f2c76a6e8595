"""pair_logistic on planted pairs: a trait direction under a large prompt-varying nuisance that sinks mean_diff."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.extraction.extractor import PersonaExtractor, aggregate
from difflib_models.persona.extraction.pair_logistic import C_GRID, DEFAULT_C, choose_c, pair_logistic


def _planted(n: int = 200, d: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pos_i - neg_i = t + z_i * b + noise: every pair leans along t by 1, and along b (orthogonal to t) by a
    prompt-varying z_i ~ N(3, 15) (e.g. the two option texts' content); both rows also share a large per-prompt
    offset. mean(pos - neg) ~ t + 3 b + O(15 / sqrt(n)) is mostly b; only t orders (nearly) every pair."""
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(d)
    t[0] = 1.0
    b = torch.zeros(d)
    b[1] = 1.0
    prompt = 10.0 * torch.randn(n, d, generator=g)
    z = 3.0 + 15.0 * torch.randn(n, 1, generator=g)
    half = 0.5 * (t + z * b)
    pos = prompt + half + 0.2 * torch.randn(n, d, generator=g)
    neg = prompt - half + 0.2 * torch.randn(n, d, generator=g)
    return pos, neg, t


def _cos(v: torch.Tensor, t: torch.Tensor) -> float:
    return float(v @ t / v.norm() / t.norm())


def test_recovers_the_planted_direction_where_mean_diff_fails():
    pos, neg, t = _planted()
    assert _cos(aggregate(pos, neg, "mean_diff"), t) < 0.5  # the nuisance wins the mean difference
    v = aggregate(pos, neg, "pair_logistic")
    assert _cos(v, t) > 0.9
    d = pos - neg
    assert float((d @ v > 0).float().mean()) > 0.95  # orders the pairs; mean_diff does not
    assert float((d @ aggregate(pos, neg, "mean_diff") > 0).float().mean()) < 0.8
    assert float(d.mean(0) @ v) > 0  # oriented: mean(pos - neg) projects positive
    assert float(v.norm()) == pytest.approx(float(d.mean(0) @ v / v.norm()), rel=1e-5)  # scaled like pca/logistic


def test_orientation_follows_the_labels():
    pos, neg, t = _planted(seed=1)
    assert _cos(aggregate(neg, pos, "pair_logistic"), t) < -0.9


def test_cross_validated_c_and_fixed_c():
    pos, neg, t = _planted(seed=2)
    x = ((pos - neg) / (pos - neg).norm(dim=1).mean()).double().numpy()
    assert choose_c(x) in C_GRID
    assert choose_c(x[:5]) == DEFAULT_C  # fewer than two pairs per fold: no CV
    assert choose_c(x, grid=(0.5,)) == 0.5
    # a strong penalty pulls the fit towards the mean difference (the gradient at w = 0)
    weak = pair_logistic(pos, neg, c=1e-6)
    assert _cos(weak, (pos - neg).mean(0)) > 0.99
    assert _cos(pair_logistic(pos, neg, c=10.0), t) > 0.9


def test_identical_pairs_give_the_zero_difference():
    x = torch.randn(6, 4)
    assert float(aggregate(x, x.clone(), "pair_logistic").abs().max()) == 0.0


def test_unpaired_input_is_a_config_error():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigError, match="aggregator.*aligned pairs"):
        aggregate(torch.randn(5, 4, generator=g), torch.randn(6, 4, generator=g), "pair_logistic")
    with pytest.raises(ConfigError, match="aggregator"):
        pair_logistic(torch.randn(5), torch.randn(5))
    with pytest.raises(ConfigError, match="aggregator"):
        PersonaExtractor(mode="generate_judge", aggregator="pair_logistic", judge=lambda q, a: 50.0)


def test_deterministic():
    pos, neg, _ = _planted(seed=3)
    np.testing.assert_array_equal(aggregate(pos, neg, "pair_logistic").numpy(),
                                  aggregate(pos, neg, "pair_logistic").numpy())


def _shared_axis(n: int = 300, d: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A trait that leans along e0 (by 2, within-pair noise 1) and a little along e1 (by 0.3), where e1 barely
    varies within a prompt (noise 0.05) but a lot from prompt to prompt (offset sd 6: e.g. the topic). Within a
    pair, e1 is the cleanest evidence; across prompts it is mostly prompt offset."""
    g = torch.Generator().manual_seed(seed)
    noise_sd = torch.ones(d)
    noise_sd[1] = 0.05
    lean = torch.zeros(d)
    lean[0], lean[1] = 2.0, 0.3
    offset = torch.zeros(n, d)
    offset[:, 1] = 6.0 * torch.randn(n, generator=g)
    pos = offset + lean / 2 + noise_sd * torch.randn(n, d, generator=g)
    neg = offset - lean / 2 + noise_sd * torch.randn(n, d, generator=g)
    return pos, neg, lean


def test_a_pooled_ranking_needs_the_pooled_fit_not_the_pair_fit():
    """Why the filter's vector for CAA-style data is ``logistic`` (docs/data-filtering.md): ``pair_logistic`` sees
    only within-pair differences, so it leans on e1 (within-pair SNR 6 vs 2) and orders the pairs; ranked across
    prompts, the e1 offsets swamp it. ``logistic`` fits the rows as a pool and down-weights e1."""
    from difflib_models.stats import auroc

    pos, neg, _ = _shared_axis()
    test_pos, test_neg, _ = _shared_axis(seed=1)  # fresh prompts: the ranking is measured out of sample

    def pooled(v: torch.Tensor) -> float:
        return float(auroc((test_pos @ v).numpy(), (test_neg @ v).numpy()))

    def win(v: torch.Tensor) -> float:
        return float(((test_pos - test_neg) @ v > 0).float().mean())

    pair, pool = aggregate(pos, neg, "pair_logistic"), aggregate(pos, neg, "logistic")
    assert abs(float(pair[1] / pair.norm())) > 0.7  # the pair fit is mostly e1
    assert abs(float(pool[1] / pool.norm())) < 0.3  # the pooled fit mostly e0
    assert win(pair) > 0.97 and win(pool) > 0.85  # both order pairs of one prompt
    assert pooled(pair) < 0.75, pooled(pair)
    assert pooled(pool) > 0.85, pooled(pool)
