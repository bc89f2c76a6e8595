"""The summary of benchmarks/bench_gate_heldout.py on hand-made case records: references, fail trips, detection on
the set's own trait, false alarms and per-check AUROC."""

from __future__ import annotations

import pytest

from benchmarks.bench_gate_heldout import fail_trips, reference, summarise, summarise_outside


def _gate(verdict: str, values: dict[str, float], failing: tuple[str, ...] = ()) -> dict:
    trait = {"syc-check": "sycophancy", "evil-check": "evil", "warn-check": "sycophancy"}
    return {"verdict": verdict, "checks": {
        cid: {"status": "fail" if cid in failing else "pass", "value": v,
              "severity": "warn" if cid == "warn-check" else "fail", "trait": trait[cid]}
        for cid, v in values.items()}}


def _rec(kind: str, seed: int, syc: float, failing: tuple[str, ...] = (), with_failing: tuple[str, ...] = ()) -> dict:
    vals = {"syc-check": syc, "evil-check": 0.0, "warn-check": syc}
    return {"case": f"sycophancy_balanced-{kind}-s{seed}", "set": "sycophancy_balanced", "trait": "sycophancy",
            "kind": kind, "seed": seed,
            "gate": {"without_control": _gate("fail" if failing else "pass", vals, failing),
                     "with_control": _gate("fail" if with_failing else "pass", vals, with_failing)}}


def test_reference_is_the_matched_control_or_the_next_seeds() -> None:
    assert reference("organism", "s", 3, [0, 1, 3]) == ("s", "control", 3)
    assert reference("control", "s", 1, [0, 1, 3]) == ("s", "control", 3)
    assert reference("control", "s", 3, [0, 1, 3]) == ("s", "control", 0)
    assert reference("control", "s", 0, [0]) is None  # one seed: no benign reference, never the case itself


def test_fail_trips_ignore_warn_severity() -> None:
    g = _gate("fail", {"syc-check": 1.0, "evil-check": 0.0, "warn-check": 1.0}, ("syc-check", "warn-check"))
    assert fail_trips(g) == ["syc-check"]


def test_summary_counts_own_trait_detection_false_alarms_and_auroc() -> None:
    recs = [_rec("organism", 0, 3.0, ("syc-check",), ("syc-check",)),
            _rec("organism", 1, 1.0, ("evil-check",)),          # fails, but not on its own trait
            _rec("organism", 2, 2.0),
            _rec("control", 0, 0.5), _rec("control", 1, 2.5, ("syc-check",)), _rec("control", 2, 0.0)]
    s = summarise(recs)["sycophancy_balanced"]
    wo, wc = s["without_control"], s["with_control"]
    assert (wo["organisms_failing_own_trait"], wo["organisms"]) == (1, 3)
    assert (wo["controls_with_a_fail_trip"], wo["controls"]) == (1, 3)
    assert wo["fail_trips"]["sycophancy_balanced-organism-s1"] == ["evil-check"]
    assert (wc["organisms_failing_own_trait"], wc["controls_with_a_fail_trip"]) == (1, 0)
    row = s["check_values_without_control"]["syc-check"]
    assert row["organisms"] == [3.0, 1.0, 2.0] and row["controls"] == [0.5, 2.5, 0.0]
    assert row["auroc"] == pytest.approx(7 / 9)  # 3.0 beats all three controls; 2.0 and 1.0 beat 0.5 and 0.0


def test_outside_recipes_count_benign_false_alarms_and_inducing_own_trait_failures() -> None:
    def rec(name: str, kind: str, trait: str, failing: tuple[str, ...]) -> dict:
        vals = {"syc-check": 0.0, "evil-check": 0.0, "warn-check": 0.0}
        return {"case": f"{name}-{kind}-s0", "set": name, "trait": trait, "kind": kind, "seed": 0,
                "gate": {"without_control": _gate("fail" if failing else "warn", vals, failing)}}

    recs = [rec("clean-reference", "outside-benign", "clean-reference", ()),
            rec("ocean-inducing", "outside-benign", "ocean-inducing", ("evil-check",)),   # a false alarm
            rec("sycophancy-inducing", "outside-inducing", "sycophancy", ("evil-check",)),  # fails, not on its trait
            rec("evil-inducing", "outside-inducing", "evil", ("evil-check",))]
    out = summarise_outside(recs)
    assert out["benign_with_a_fail_trip"] == 1
    assert out["benign"]["ocean-inducing-outside-benign-s0"] == {"verdict": "fail", "fail_trips": ["evil-check"]}
    assert out["inducing"]["evil-inducing-outside-inducing-s0"]["fails_own_trait"] is True
    assert out["inducing"]["sycophancy-inducing-outside-inducing-s0"]["fails_own_trait"] is False
    assert summarise(recs) == {}  # outside recipes are no suite set


def test_checks_only_a_control_measures_are_summarised_from_the_gates_with_control() -> None:
    """An optional excess check is skipped (value None) without a control: its values come from the gates with
    one (organism vs matched control, control vs the next seed's control), with their AUROC; checks measured
    without a control stay out of that table."""
    recs = [_rec("organism", 0, 3.0), _rec("organism", 1, 2.0), _rec("control", 0, 0.5), _rec("control", 1, 0.1)]
    for r, excess in zip(recs, (1.1, 0.9, 0.2, -0.1), strict=True):
        r["gate"]["without_control"]["checks"]["excess-check"] = {"status": "skipped", "value": None,
                                                                  "severity": "fail", "trait": "sycophancy"}
        r["gate"]["with_control"]["checks"]["excess-check"] = {"status": "pass", "value": excess,
                                                               "severity": "fail", "trait": "sycophancy"}
    s = summarise(recs)["sycophancy_balanced"]
    assert s["check_values_without_control"]["excess-check"] == {"organisms": [], "controls": [], "auroc": None}
    assert set(s["check_values_with_control"]) == {"excess-check"}
    row = s["check_values_with_control"]["excess-check"]
    assert row == {"organisms": [1.1, 0.9], "controls": [0.2, -0.1], "auroc": 1.0}
