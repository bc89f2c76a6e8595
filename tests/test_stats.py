"""The one AUROC (sklearn / SciPy) against a brute-force pairwise count, and its seeded bootstrap CI."""

from __future__ import annotations

import numpy as np
import pytest

from difflib_models.errors import ConfigError
from difflib_models.stats import auroc, bootstrap_auroc_ci


def _pairwise(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(pos == neg) by counting every pair."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auroc_equals_the_pairwise_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 40, size=2)
    pos = rng.integers(0, 6, n).astype(float)  # few distinct values: many ties within and across classes
    neg = rng.integers(-1, 5, m).astype(float)
    assert auroc(pos, neg) == pytest.approx(_pairwise(pos, neg), abs=1e-12)


def test_batched_auroc_equals_the_pairwise_count_per_column() -> None:
    rng = np.random.default_rng(5)
    pos, neg = rng.normal(0.5, 1, (17, 6)).round(1), rng.normal(0, 1, (11, 6)).round(1)  # rounded: ties
    got = auroc(pos, neg, axis=0)
    assert got.shape == (6,)
    for k in range(6):
        assert got[k] == pytest.approx(_pairwise(pos[:, k], neg[:, k]), abs=1e-12)
    assert np.allclose(auroc(pos.T, neg.T, axis=-1), got, rtol=0, atol=1e-12)


def test_auroc_edge_cases() -> None:
    assert auroc([1, 2, 3], [0, 0.5]) == 1.0 and auroc([0.0], [1.0]) == 0.0 and auroc([1.0, 1.0], [1.0]) == 0.5
    assert auroc([np.inf, 1.0], [np.inf, -np.inf]) == pytest.approx(_pairwise([np.inf, 1.0], [np.inf, -np.inf]))
    assert np.isnan(auroc([np.nan, 1.0], [0.0]))
    for pos, neg, name in (([], [1.0], "pos"), ([1.0], [], "neg")):  # one class only
        with pytest.raises(ConfigError, match=f"{name}.*one-class"):
            auroc(pos, neg)
    with pytest.raises(ConfigError, match="neg"):
        auroc(np.ones((3, 2)), np.ones((0, 2)), axis=0)


def test_bootstrap_ci_is_seeded_and_covers_the_estimate() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 30).round(1), rng.normal(0, 1, 25).round(1)
    est = auroc(pos, neg)
    a = bootstrap_auroc_ci(pos, neg, n_boot=300, seed=7)
    assert a == bootstrap_auroc_ci(pos, neg, n_boot=300, seed=7)  # deterministic for a seed
    assert a != bootstrap_auroc_ci(pos, neg, n_boot=300, seed=8)
    assert a[0] < est < a[1] and a[1] - a[0] < 0.4
    wide = bootstrap_auroc_ci(pos, neg, n_boot=300, seed=7, level=0.99)
    assert wide[0] <= a[0] and wide[1] >= a[1]
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_auroc_ci(pos, neg, n_boot=0)


def test_bootstrap_mean_ci_is_seeded_and_near_the_normal_interval() -> None:
    from difflib_models.stats import bootstrap_mean_ci

    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 2.0, 60)
    a = bootstrap_mean_ci(x, n_boot=2000, seed=3)
    assert a == bootstrap_mean_ci(x, n_boot=2000, seed=3) and a != bootstrap_mean_ci(x, n_boot=2000, seed=4)
    sem = x.std(ddof=1) / np.sqrt(x.size)
    assert a[0] < x.mean() < a[1]
    assert (a[1] - a[0]) / 2 == pytest.approx(1.96 * sem, rel=0.15)  # the CLT interval of the mean
    assert bootstrap_mean_ci([2.5], seed=0) == (2.5, 2.5) and bootstrap_mean_ci([0.0] * 9) == (0.0, 0.0)
    with pytest.raises(ConfigError, match="values"):
        bootstrap_mean_ci([])
