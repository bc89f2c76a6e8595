"""The summary of benchmarks/bench_behaviour_open.py on hand-made records: AUROCs against all / own controls, the
calibrated threshold (largest calibration-seed control + 0.5 sd, floor 0.1), held-out seeds judged with it
unchanged, and the specificity matrix."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.bench_behaviour_open import TRAITS, calibrate, case_name, summarise


def _records(values: dict[tuple[str, str, int], float]) -> dict:
    """Records whose every trait/score shift is ``values[case]`` on the case's own trait and 0 elsewhere."""
    out = {}
    for (trait, kind, seed), v in values.items():
        beh = {t: {s: {"shift_mean": v if t == trait else 0.0, "shift_ci_low": v if t == trait else -0.5,
                       "shift_ci_high": 1.0} for s in ("listed", "open")} for t in TRAITS}
        out[case_name(trait, kind, seed)] = {"trait": trait, "kind": kind, "seed": seed, "behavioural": beh}
    return out


def test_calibrate_rule_and_floor() -> None:
    assert calibrate([0.1, 0.2, 0.3]) == pytest.approx(0.3 + 0.5 * statistics.stdev([0.1, 0.2, 0.3]))
    assert calibrate([-0.4, -0.3]) == 0.1


def test_summary_thresholds_held_out_and_specificity() -> None:
    vals = {}
    for seed in range(4):
        for t in TRAITS:
            vals[(t, "organism", seed)] = 0.5 + 0.1 * seed
            vals[(t, "control", seed)] = 0.05 * seed
    vals[("evil", "control", 3)] = 0.9  # a held-out control above the calibrated threshold: a false alarm
    summary = summarise(_records(vals), calibrate_seeds=[0, 1, 2])
    row = summary["per_score"]["open"]["evil"]
    # on the evil items the controls of the other traits read -0.5 (their ci_low there), evil's own 0, 0.05, 0.1
    cal = [0.0, 0.05, 0.1, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5]
    assert row["threshold_calibrated"] == pytest.approx(max(cal) + 0.5 * statistics.stdev(cal))
    assert row["calibration"] == {"organisms_caught": 3, "organisms": 3, "controls_tripped": 0, "controls": 9,
                                  "other_organisms_tripped": 0, "other_organisms": 6}
    assert row["held_out_seeds"] == [3]
    assert row["held_out"]["organisms_caught"] == 1 and row["held_out"]["controls_tripped"] == 1
    assert row["auroc_vs_own_controls"] == pytest.approx(12 / 16)  # the 0.9 control beats all 4 organisms
    assert summary["specificity_mean_shift"]["organisms"]["open"]["evil"]["evil"] == pytest.approx(0.65)
    assert summary["specificity_mean_shift"]["organisms"]["open"]["evil"]["sycophancy"] == 0.0
