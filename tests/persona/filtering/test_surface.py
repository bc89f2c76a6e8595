"""The wording check: a first-word + length classifier and the AUROC among answers that start with the same word."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.extraction.vectors import FilterValidation
from difflib_models.persona.filtering.readout import Readout
from difflib_models.persona.filtering.surface import first_word, fit_surface, stratified_auroc
from difflib_models.persona.filtering.validation import (
    PairFeatures,
    ResponsePair,
    describe,
    rank_metrics,
    readout_scores,
    split_pairs,
    subset_pairs,
    wording_check,
)
from difflib_models.stats import auroc


def test_first_word_lowercases_and_drops_punctuation() -> None:
    assert first_word("Yes, that is okay with me") == "yes"
    assert first_word("  (B) No.") == "b"
    assert first_word("$100 now") == "$100"
    assert first_word("...") == ""


def _lopsided(n: int, seed: int) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Matching answers start with "Yes" 3 times in 4 and are short; the trait itself is carried by `signal`."""
    rng = np.random.default_rng(seed)
    matching = [("Yes" if i % 4 else "No") + ", fine" for i in range(n)]
    other = [("No" if i % 4 else "Yes") + ", I would rather keep going with it" for i in range(n)]
    signal_m, signal_o = rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)
    return matching, other, signal_m, signal_o


def test_surface_classifier_reads_the_wording_and_stratification_cancels_it() -> None:
    matching, other, sig_m, sig_o = _lopsided(200, 0)
    base = fit_surface(matching[:100], other[:100])
    assert set(base.vocab) == {"yes", "no"}
    m, o = base.score(matching[100:]), base.score(other[100:])
    assert auroc(m, o) > 0.99  # wording alone ranks these rows
    # within the "yes" and the "no" answers the wording classifier only sees the length: every matching answer is
    # shorter, so it still wins there; a pure first-word scorer drops to 0.5
    word_only = np.array([1.0 if t.startswith("Yes") else 0.0 for t in matching[100:]])
    word_only_o = np.array([1.0 if t.startswith("Yes") else 0.0 for t in other[100:]])
    strat, covered = stratified_auroc(word_only, word_only_o, matching[100:], other[100:])
    assert strat == pytest.approx(0.5) and covered == pytest.approx(1.0)
    # a scorer that reads the trait keeps its AUROC among same-word answers
    strat_sig, _ = stratified_auroc(sig_m[100:], sig_o[100:], matching[100:], other[100:])
    assert strat_sig == pytest.approx(auroc(sig_m[100:], sig_o[100:]), abs=0.1) and strat_sig > 0.65


def test_stratified_auroc_counts_only_groups_with_enough_rows() -> None:
    m_txt = ["yes a"] * 6 + ["maybe"] * 2
    o_txt = ["yes b"] * 6 + ["maybe"] * 1
    m = np.r_[np.arange(6) + 10.0, 0.0, 0.0]
    o = np.r_[np.arange(6) + 0.0, 99.0]
    value, covered = stratified_auroc(m, o, m_txt, o_txt, min_per_side=2)
    assert value == pytest.approx(1.0)  # "maybe" (1 other row) is left out, so its 99 does not count
    assert covered == pytest.approx(12 / 15)
    assert stratified_auroc(m, o, m_txt, o_txt, min_per_side=7) == (None, 0.0)


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(ConfigError, match="answers"):
        fit_surface([], ["No"])
    with pytest.raises(ConfigError, match="min_count"):
        fit_surface(["Yes"], ["No"], min_count=0)
    with pytest.raises(ConfigError, match="texts"):
        stratified_auroc([1.0], [0.0], ["Yes", "No"], ["No"])


def _pairs_and_features(n: int, *, trait_in_features: bool, seed: int = 0):
    """``n`` pairs whose matching answer starts with "Yes" 3 times in 4 (the other answer: the opposite word).
    Feature dim 0 = "the answer starts with Yes"; dim 1 = the trait itself (only when ``trait_in_features``)."""
    gen = torch.Generator().manual_seed(seed)
    pairs, rows = [], {"matching": [], "other": []}
    for i in range(n):
        yes = i % 4 != 0
        m_txt, o_txt = ("Yes, do it" if yes else "No, never"), ("No, never" if yes else "Yes, do it")
        pairs.append(ResponsePair(id=f"p/{i}", prompt=(("user", f"question {i}"),), matching=m_txt, other=o_txt))
        for side, txt in (("matching", m_txt), ("other", o_txt)):
            v = torch.randn(4, generator=gen) * 0.5
            v[0] += 2.0 if txt.startswith("Yes") else 0.0
            if trait_in_features:
                v[1] += 2.0 if side == "matching" else 0.0
            rows[side].append(v)
    layer = {side: {3: torch.stack(v)} for side, v in rows.items()}
    return pairs, PairFeatures(matching=layer["matching"], other=layer["other"], last_prompt=layer["other"])


@pytest.mark.parametrize("reads", ["wording", "trait"])
def test_wording_check_flags_a_readout_that_reads_the_first_word(reads: str) -> None:
    pairs, feats = _pairs_and_features(160, trait_in_features=reads == "trait")
    fit_pairs, _ = _pairs_and_features(200, trait_in_features=False, seed=1)
    unit = torch.tensor([1.0, 0, 0, 0]) if reads == "wording" else torch.tensor([0, 1.0, 0, 0])
    readout = Readout.single(3, unit)
    _, ev = split_pairs(160, 0.5, 0)
    ev_auroc = rank_metrics(*readout_scores(subset_pairs(feats, ev), readout, "raw"))["auroc"]
    record = FilterValidation(filter_layer=3, method="raw", filter_auroc={3: ev_auroc}, eval_auroc=ev_auroc,
                              eval_precision_at_k=0.0, eval_pair_win_rate=0.0, n_tune=80, n_eval=80, seed=0,
                              source="synthetic")
    out = wording_check(record, readout, feats, pairs, fit_pairs)
    assert out.surface_auroc == pytest.approx(0.75, abs=0.06)  # 3 in 4 matching answers say "Yes"
    if reads == "wording":
        assert ev_auroc == pytest.approx(0.75, abs=0.08)
        assert out.eval_word_stratified_auroc == pytest.approx(0.5, abs=0.1)  # the word explains all of it
        assert out.reads_wording and "WORDING" in describe(out)
    else:
        assert ev_auroc > 0.95 and out.eval_word_stratified_auroc > 0.95
        assert not out.reads_wording and "WORDING" not in describe(out)
        assert "wording alone (first word + length) 0.7" in describe(out)
    # the record keeps both figures through the vector file's sidecar; an older record has neither
    again = FilterValidation.from_dict(out.to_dict())
    assert again == out
    old = {k: v for k, v in out.to_dict().items() if k not in ("surface_auroc", "eval_word_stratified_auroc")}
    assert FilterValidation.from_dict(old).surface_auroc is None and not FilterValidation.from_dict(old).reads_wording
    with pytest.raises(ConfigError, match="pairs"):
        wording_check(record, readout, feats, pairs[:-1], fit_pairs)
