"""What a filter could get from the answer's surface alone: its first word and its length.

A/B data sets are often lopsided in their wording: in CAA's survival-instinct items the trait-matching answer starts
with "Yes" 410 times and with "No" 161 times, in myopic-reward it is the shorter option 86% of the time. A direction
that reads "Yes" or "short answer" then ranks the rows well without reading the trait. Two checks make that visible:

- :func:`fit_surface` / :meth:`SurfaceBaseline.score`: a logistic regression on the answer's first word (one-hot
  over the words seen at least ``min_count`` times) and its log length, fitted on the same pairs as the vector; its AUROC on
  the evaluation rows is the bar a filter vector has to clear to be reading more than the wording;
- :func:`stratified_auroc`: the AUROC counted only between rows whose answers start with the same word, so a "Yes"
  detector scores 0.5 there.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from difflib_models.errors import ConfigError, bad_value
from difflib_models.stats import auroc

_WORD = re.compile(r"[a-z0-9$']+")


def first_word(text: str) -> str:
    """The answer's first word, lower-cased, punctuation dropped ("" for an answer with no word)."""
    found = _WORD.search(text.lower())
    return found.group(0) if found else ""


@dataclass(frozen=True)
class SurfaceBaseline:
    """A fitted first-word + length classifier (see :func:`fit_surface`)."""

    vocab: tuple[str, ...]
    coef: np.ndarray
    """[len(vocab) + 2]: one weight per word, then log(1 + characters), log(1 + words)."""
    intercept: float

    def features(self, texts: Sequence[str]) -> np.ndarray:
        index = {w: i for i, w in enumerate(self.vocab)}
        x = np.zeros((len(texts), len(self.vocab) + 2))
        for row, text in enumerate(texts):
            col = index.get(first_word(text))
            if col is not None:
                x[row, col] = 1.0
            x[row, -2] = np.log1p(len(text))
            x[row, -1] = np.log1p(len(text.split()))
        return x

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self.features(texts) @ self.coef + self.intercept


def fit_surface(matching: Sequence[str], other: Sequence[str], *, min_count: int = 5) -> SurfaceBaseline:
    """L2 logistic regression (C = 1) of "is the trait-matching answer" on the answers' first word and length."""
    from sklearn.linear_model import LogisticRegression

    if not matching or not other:
        raise ConfigError(bad_value("answers", f"{len(matching)} matching / {len(other)} other",
                                    "at least one answer of each kind"))
    if min_count < 1:
        raise ConfigError(bad_value("min_count", min_count, "an integer >= 1"))
    counts = Counter(first_word(t) for t in [*matching, *other])
    vocab = tuple(sorted(w for w, n in counts.items() if n >= min_count and w))
    empty = SurfaceBaseline(vocab=vocab, coef=np.zeros(len(vocab) + 2), intercept=0.0)
    x = empty.features([*matching, *other])
    y = np.r_[np.ones(len(matching)), np.zeros(len(other))]
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    return SurfaceBaseline(vocab=vocab, coef=clf.coef_[0].copy(), intercept=float(clf.intercept_[0]))


def stratified_auroc(matching_scores: Sequence[float], other_scores: Sequence[float],
                     matching_texts: Sequence[str], other_texts: Sequence[str], *,
                     min_per_side: int = 5) -> tuple[float | None, float]:
    """AUROC over the comparisons of a matching row with an other row whose answers start with the same word.

    Groups with fewer than ``min_per_side`` rows on either side are left out. Returns (AUROC, or None when no group
    qualifies; the fraction of all rows in a counted group)."""
    if len(matching_scores) != len(matching_texts) or len(other_scores) != len(other_texts):
        raise ConfigError(bad_value("texts", f"{len(matching_texts)} / {len(other_texts)}",
                                    f"one text per score ({len(matching_scores)} / {len(other_scores)})"))
    m_scores, o_scores = np.asarray(matching_scores, float), np.asarray(other_scores, float)
    m_words = np.array([first_word(t) for t in matching_texts])
    o_words = np.array([first_word(t) for t in other_texts])
    total, weight, covered = 0.0, 0.0, 0
    for word in sorted(set(m_words) & set(o_words)):
        m, o = m_scores[m_words == word], o_scores[o_words == word]
        if len(m) < min_per_side or len(o) < min_per_side:
            continue
        total += auroc(m, o) * len(m) * len(o)
        weight += len(m) * len(o)
        covered += len(m) + len(o)
    n = len(m_scores) + len(o_scores)
    return (total / weight if weight else None), (covered / n if n else 0.0)
