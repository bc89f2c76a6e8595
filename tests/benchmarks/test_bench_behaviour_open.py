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


def test_an_extra_set_is_summarised_on_its_traits_items_with_every_control() -> None:
    """``sycophancy_balanced`` organisms are read on the sycophancy items, apart from the original sycophancy set;
    the controls of every set count against both, and neither set counts as the other's "other organisms"."""
    vals = {}
    for seed in range(3):
        for t in TRAITS:
            vals[(t, "organism", seed)] = 0.5 if t != "sycophancy" else -0.2  # the original set is not caught
            vals[(t, "control", seed)] = 0.0
    recs = _records(vals)
    for seed in range(3):
        for kind, v in (("organism", 0.8), ("control", 0.02)):
            beh = {t: {s: {"shift_mean": v if t == "sycophancy" else 0.0,
                           "shift_ci_low": v if t == "sycophancy" else -0.5, "shift_ci_high": 1.0}
                       for s in ("listed", "open")} for t in TRAITS}
            recs[case_name("sycophancy_balanced", kind, seed)] = {
                "trait": "sycophancy", "set": "sycophancy_balanced", "kind": kind, "seed": seed, "behavioural": beh}
    summary = summarise(recs, calibrate_seeds=[0, 1, 2])
    bal, orig = summary["per_score"]["open"]["sycophancy_balanced"], summary["per_score"]["open"]["sycophancy"]
    assert bal["items"] == orig["items"] == "sycophancy"
    assert bal["organism_values"] == [0.8] * 3 and orig["organism_values"] == [-0.2] * 3
    assert len(bal["control_values_all"]) == 12 and bal["control_values_own"] == [0.02] * 3
    # -0.2 is above the evil/hallucination controls (-0.5 on these items), below the six others
    assert bal["auroc_vs_all_controls"] == 1.0 and orig["auroc_vs_all_controls"] == 0.5
    # the same threshold for both (same items, same controls): the 12 calibration controls
    cal = [0.0] * 3 + [-0.5] * 6 + [0.02] * 3
    assert bal["threshold_calibrated"] == orig["threshold_calibrated"]
    assert bal["threshold_calibrated"] == pytest.approx(0.02 + 0.5 * statistics.stdev(cal))
    assert bal["calibration"]["organisms_caught"] == 3 and orig["calibration"]["organisms_caught"] == 0
    assert bal["calibration"]["other_organisms"] == 6  # evil and hallucination organisms, not the other sycophancy set
    spec = summary["specificity_mean_shift"]["organisms"]["open"]["sycophancy"]
    assert spec["sycophancy_balanced"] == pytest.approx(0.8) and spec["sycophancy"] == pytest.approx(-0.2)
