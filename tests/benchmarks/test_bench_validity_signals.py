"""The signal benchmark's report math (benchmarks/bench_validity_signals.py) on synthetic case records: AUROC
organisms vs controls per vector trait and signal, the specificity matrix as excess over the matched control, and
which signals separate. No model."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.bench_validity_signals import aggregate


def _rec(kind: str, trait: str, seed: int, values: dict[str, float]) -> dict[str, Any]:
    # one signal "s": vector trait X reads values[X]; a second signal "flat" is the same for every case
    return {"case": f"{trait}-{kind}-s{seed}", "kind": kind, "trait": trait, "seed": seed,
            "signals": {x: {"s": v, "flat": 1.0} for x, v in values.items()}}


def test_auroc_specificity_and_separation() -> None:
    recs = []
    for seed in (0, 1):
        for trait in ("evil", "sycophancy"):
            recs.append(_rec("control", trait, seed, {"evil": 0.1 * seed, "sycophancy": 0.2}))
        # the evil organism moves the evil vector (and a little the sycophancy one); the sycophancy organism only
        # the sycophancy vector, but less than its control in seed 1 (AUROC 0.5 there)
        recs.append(_rec("organism", "evil", seed, {"evil": 2.0 + seed, "sycophancy": 0.5}))
        recs.append(_rec("organism", "sycophancy", seed, {"evil": 0.1 * seed, "sycophancy": 1.0 if seed == 0
                                                          else 0.1}))
    rep = aggregate(recs)
    assert rep["n_cases"] == 8
    evil = rep["traits"]["evil"]["s"]
    assert evil["auroc"] == 1.0 and evil["separates"] and evil["specific"]
    assert evil["specificity_excess"]["evil"] == pytest.approx(((2.0 - 0.0) + (3.0 - 0.1)) / 2)
    assert evil["specificity_excess"]["sycophancy"] == pytest.approx(0.0)
    syc = rep["traits"]["sycophancy"]["s"]
    assert syc["auroc"] == pytest.approx(0.5) and not syc["separates"]
    # diagonal (mean excess 0.35) below the evil organisms' excess on this vector (0.3)? 0.35 > 0.3: specific
    assert syc["specificity_excess"]["sycophancy"] == pytest.approx((0.8 - 0.1) / 2)
    assert syc["specificity_excess"]["evil"] == pytest.approx(0.3)
    assert syc["specific"]
    flat = rep["traits"]["evil"]["flat"]
    assert flat["auroc"] == 0.5 and not flat["separates"] and not flat["specific"]
    assert rep["separating"] == {"evil": ["s"], "sycophancy": []}
    assert rep["separating_and_specific"] == {"evil": ["s"], "sycophancy": []}


def test_unpaired_and_missing_values_are_left_out() -> None:
    recs = [_rec("organism", "evil", 0, {"evil": 1.0}), _rec("control", "evil", 1, {"evil": 0.0}),
            _rec("organism", "evil", 1, {"evil": float("nan")})]
    rep = aggregate(recs)
    s = rep["traits"]["evil"]["s"]
    assert s["auroc"] == 1.0 and not s["separates"]  # one value per side is no separation
    assert s["specificity_excess"]["evil"] is None  # seed 0 has no control, seed 1's organism value is NaN
