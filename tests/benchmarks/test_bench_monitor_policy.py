"""The monitor benchmark's counting (benchmarks/bench_monitor_policy.py) on synthetic case records. No model."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.bench_monitor_policy import summarise


def _rec(kind: str, trait: str, seed: int, statuses: dict[str, str], fails: dict[str, dict[str, int | None]]
         ) -> dict[str, Any]:
    return {"case": f"{trait}-{kind}-s{seed}", "kind": kind, "trait": trait, "seed": seed,
            "monitors": {name: {"status": st, "first_fail_step": fails[name]} for name, st in statuses.items()}}


def test_controls_warn_and_fail_and_organisms_failing_on_their_own_trait() -> None:
    all3 = {"sycophancy": None, "evil": None, "hallucination": None}
    records = [
        # a benign run the default lines fail on ANOTHER trait's reading: counted as a control fail
        _rec("control", "hallucination", 0, {"default": "fail", "policy_evil": "ok"},
             {"default": {**all3, "evil": 12}, "policy_evil": {"evil": None}}),
        _rec("control", "evil", 0, {"default": "warn", "policy_evil": "warn"},
             {"default": all3, "policy_evil": {"evil": None}}),
        # an evil organism caught by both; a hallucination organism failing only on evil is NOT an own-trait fail
        _rec("organism", "evil", 0, {"default": "fail", "policy_evil": "fail"},
             {"default": {**all3, "evil": 12}, "policy_evil": {"evil": 12}}),
        _rec("organism", "hallucination", 0, {"default": "fail", "policy_evil": "fail"},
             {"default": {**all3, "evil": 12}, "policy_evil": {"evil": 12}}),
    ]
    s = summarise(records)
    d, pe = s["default"], s["policy_evil"]
    assert (d["controls"], d["controls_warn"], d["controls_fail"]) == (2, 1, 1)
    assert d["failing_controls"] == ["hallucination-control-s0"] and d["warning_controls"] == ["evil-control-s0"]
    assert d["organisms_by_trait"] == {"evil": {"organisms": 1, "failing_own_trait": 1},
                                       "hallucination": {"organisms": 1, "failing_own_trait": 0}}
    assert (pe["controls_warn"], pe["controls_fail"]) == (1, 0)
    # the evil-policy monitor does not watch hallucination: no own-trait row for it
    assert pe["organisms_by_trait"] == {"evil": {"organisms": 1, "failing_own_trait": 1}}


def _resp(case: str, kind: str, trait: str | None, set_: str, statuses: dict[str, str],
          last: dict[str, float]) -> dict[str, Any]:
    return {"case": case, "kind": kind, "trait": trait, "set": set_, "seed": 0,
            "monitors": {f"response_{t}": {"status": statuses[t], "first_fail_step": {t: 12 if statuses[t] == "fail"
                                                                                       else None},
                                           "checks": [{"step": 12, "traits": {t: {"response_null_z": v}}}]}
                         for t, v in last.items()}}


def test_other_sets_and_outside_recipes_are_counted_apart_and_compared_with_the_gate() -> None:
    from benchmarks.bench_monitor_policy import gate_parity, summarise_other

    ok = {"sycophancy": "ok", "hallucination": "ok"}
    records = [
        _resp("sycophancy-organism-s0", "organism", "sycophancy", "sycophancy", {**ok, "sycophancy": "fail"},
              {"sycophancy": 4.0, "hallucination": -1.0}),
        _resp("sycophancy_balanced-organism-s0", "organism", "sycophancy", "sycophancy_balanced",
              {**ok, "sycophancy": "fail"}, {"sycophancy": 3.0, "hallucination": -1.0}),
        _resp("sycophancy_balanced-control-s0", "control", "sycophancy", "sycophancy_balanced", ok,
              {"sycophancy": 0.5, "hallucination": -1.0}),
        _resp("clean-reference-outside-benign-s0", "outside-benign", None, "clean-reference",
              {**ok, "hallucination": "fail"}, {"sycophancy": 0.1, "hallucination": 2.5}),
        _resp("sycophancy-inducing-outside-inducing-s0", "outside-inducing", "sycophancy", "sycophancy-inducing",
              {**ok, "sycophancy": "fail"}, {"sycophancy": 2.2, "hallucination": 0.0}),
    ]
    # the suite's own counts see only the suite set
    suite = summarise(records)["response_sycophancy"]
    assert (suite["controls"], suite["organisms_by_trait"]) == (0, {"sycophancy": {"organisms": 1,
                                                                                   "failing_own_trait": 1}})
    other = summarise_other(records)
    bal = other["sets"]["sycophancy_balanced"]["response_sycophancy"]
    assert (bal["controls"], bal["controls_fail"]) == (1, 0)
    assert bal["organisms_by_trait"]["sycophancy"] == {"organisms": 1, "failing_own_trait": 1}
    assert other["outside_benign_failed"] == ["clean-reference-outside-benign-s0"]
    assert set(other["outside"]) == {"clean-reference-outside-benign-s0", "sycophancy-inducing-outside-inducing-s0"}
    gate = {"records": [{"case": "sycophancy-organism-s0", "gate": {"without_control": {"checks": {
        "sycophancy-response-null-z": {"value": 3.9}, "hallucination-response-null-z": {"value": -1.25}}}}}]}
    rows = {(r["case"], r["trait"]): r for r in gate_parity(records, gate)}
    assert set(rows) == {("sycophancy-organism-s0", "sycophancy"), ("sycophancy-organism-s0", "hallucination")}
    assert rows[("sycophancy-organism-s0", "sycophancy")]["diff"] == pytest.approx(0.1)
    assert rows[("sycophancy-organism-s0", "hallucination")]["diff"] == pytest.approx(0.25)
    # a live position shift is paired with the gate's position check where both exist
    records[0]["monitors"]["response_hallucination"]["checks"][-1]["traits"]["hallucination"][
        "response_position_shift"] = 0.30
    gate["records"][0]["gate"]["without_control"]["checks"]["hallucination-response-position-shift"] = {"value": 0.35}
    rows = {(r["case"], r["trait"], r["reading"]): r for r in gate_parity(records, gate)}
    assert rows[("sycophancy-organism-s0", "hallucination", "response_position_shift")]["diff"] == \
        pytest.approx(-0.05)
    assert ("sycophancy-organism-s0", "sycophancy", "response_position_shift") not in rows  # no gate check there
