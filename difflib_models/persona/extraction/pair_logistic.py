"""The ``pair_logistic`` aggregator: an L2 logistic regression on the differences of ALIGNED pairs.

Row i of ``pos`` and row i of ``neg`` answer the same prompt (``paired`` responses, ``ab`` answer tokens,
``prompt_contrast`` instruction pairs). The fit sees only the pair differences ``d_i = pos_i - neg_i``,
sign-augmented (``X = [d; -d]``, ``y = [1; 0]``, no intercept), so whatever a prompt adds to both of its rows
cancels: a large prompt-to-prompt offset that swamps ``mean(pos) - mean(neg)`` cannot steer the fit. The
direction is the unit normal, oriented so that the mean difference projects positive, and scaled to that
projection (as ``pca`` and ``logistic``).

The penalty ``C`` is chosen on the extraction pairs themselves by a grouped k-fold cross-validation (a pair and
its mirror image always fall in the same fold) over :data:`C_GRID`: the held-out within-pair win rate (the share
of held-out pairs with ``w . d > 0``), ties to the smaller C. The differences are divided by their mean norm first
(one scalar per layer), so a C means the same at every layer. As C -> 0 the fit tends to the mean difference
(the gradient at w = 0 is the sum of the differences), so the grid spans from ``mean_diff`` to a nearly unpenalised
fit.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from difflib_models.errors import ConfigError, bad_value

log = logging.getLogger(__name__)

C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
"""Candidate L2 penalties (inverse strength), on differences scaled to unit mean norm. The first grid stopped at 10:
on 450 CAA sycophancy extraction pairs (SmolLM2, blocks 7/12/18/23) the CV win rate still rose there (0.70-0.72) and
levelled off at 1000-10000 (0.78-0.82; docs/data-filtering.md)."""
CV_FOLDS = 3
DEFAULT_C = 1.0
"""Used when there are fewer than two pairs per fold to cross-validate on."""

__all__ = ["C_GRID", "CV_FOLDS", "DEFAULT_C", "check_pairs", "choose_c", "fit_pair_logistic", "pair_logistic"]


def check_pairs(pos: torch.Tensor, neg: torch.Tensor, aggregator: str = "pair_logistic") -> None:
    """ConfigError unless ``pos`` and ``neg`` are aligned pairs (two [n, d] tensors of the same shape, n >= 1)."""
    if pos.ndim != 2 or pos.shape != neg.shape or pos.shape[0] < 1:
        raise ConfigError(bad_value("aggregator", aggregator, "aligned pairs: pos and neg of the same shape [n, d], "
                                    "row i of each answering the same prompt",
                                    f"Got pos {tuple(pos.shape)} and neg {tuple(neg.shape)}; use mean_diff or "
                                    "logistic for unpaired samples (generate_judge)."))


def _fit(x: np.ndarray, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    n = x.shape[0]
    y = np.r_[np.ones(n), np.zeros(n)]
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(np.concatenate([x, -x]), y)
    return clf.coef_[0]


def choose_c(x: np.ndarray, grid: tuple[float, ...] = C_GRID, folds: int = CV_FOLDS, seed: int = 0) -> float:
    """The C of ``grid`` with the best grouped-CV held-out win rate on pair differences ``x`` [n, d] (ties: the
    smaller C); :data:`DEFAULT_C` when there are fewer than ``2 * folds`` pairs."""
    n = x.shape[0]
    if n < 2 * folds or len(grid) == 1:
        return grid[0] if len(grid) == 1 else DEFAULT_C
    fold = np.empty(n, dtype=int)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    best: tuple[float, float] | None = None
    for c in sorted(grid):
        wins = 0.0
        for k in range(folds):
            w = _fit(x[fold != k], c)
            s = x[fold == k] @ w
            wins += float((s > 0).sum() + 0.5 * (s == 0).sum())
        rate = wins / n
        if best is None or rate > best[0]:
            best = (rate, c)
    assert best is not None
    return best[1]


def fit_pair_logistic(pos: torch.Tensor, neg: torch.Tensor, *, c: float | None = None, seed: int = 0
                      ) -> tuple[torch.Tensor, float]:
    """(direction [d], the C used) from aligned pairs (module docstring); ``c`` fixes the penalty instead of the CV."""
    check_pairs(pos, neg)
    d = (pos - neg).double()
    diff = d.mean(dim=0)
    scale = float(d.norm(dim=1).mean())
    if scale <= 0.0:  # every pair identical: nothing to fit
        return diff.float(), float("nan")
    x = (d / scale).numpy()
    chosen = choose_c(x, seed=seed) if c is None else c
    u = torch.as_tensor(_fit(x, chosen), dtype=torch.float64)
    if float(u.norm()) == 0.0:
        return diff.float(), chosen
    u = u / u.norm()
    if float(diff @ u) < 0:
        u = -u
    log.debug("pair_logistic: %d pairs, C=%g", d.shape[0], chosen)
    return (u * (diff @ u)).float(), chosen


def pair_logistic(pos: torch.Tensor, neg: torch.Tensor, *, c: float | None = None, seed: int = 0) -> torch.Tensor:
    """One direction [d] from aligned pairs (:func:`fit_pair_logistic` without the C)."""
    return fit_pair_logistic(pos, neg, c=c, seed=seed)[0]
