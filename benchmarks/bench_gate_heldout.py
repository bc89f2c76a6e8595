"""The shipped default policy on organism families its calibration never saw (issue 15: "shown to discriminate on a
case you did not tune it on").

    python -m benchmarks.bench_gate_heldout [--sets sycophancy_balanced] [--seeds 0,1,2,3,4] [--work DIR]
        [--adapters DIR] [--outside-benign SETS] [--outside-inducing SETS] [--name bench_gate_heldout]

Cases: the suite sets named in ``--sets`` (``benchmarks/organism_data.py``; by default the polarity-balanced
sycophancy set, written after the default thresholds were calibrated on the three original sets), organism and
matched control at every seed, LoRAs of the suite's recipe (:func:`benchmarks.bench_behaviour_open.train`, kept
under ``--adapters`` and shared with that benchmark). Each case runs the default-policy gate exactly as
``bench_validity`` does (:func:`benchmarks.bench_validity.gate_case`: vectors extracted once on the base the gate's
way; with a control: an organism's matched control, a control's the same set's control at the next seed; the
verdict without a control from the same measurements minus the control's). Nothing is tuned here: the policy file
is the shipped one. Reported per set: verdicts, the fail-severity checks each case trips (with their trait),
organisms failing on their own trait, controls with any fail-severity trip (false alarms), and per check the
values of organisms vs controls with their AUROC. Outside the suite, gated without a control: LoRAs of the same
recipe (first seed) on package data sets, benign (``--outside-benign``) and trait-inducing (``--outside-inducing``),
the adapters ``bench_behaviour_open`` uses. Case records are written to ``<work>/cases/`` as they finish
(a rerun skips them). Nothing is asserted. Results: ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_validity import auroc, reference_control
from benchmarks.common import int_list, load_average, machine_info, write_results
from benchmarks.organism_data import EXTRA_SETS, KINDS, SET_TRAIT

log = logging.getLogger("benchmarks.bench_gate_heldout")


def reference(kind: str, st: str, seed: int, seeds: Sequence[int]) -> tuple[str, str, int] | None:
    """(set, kind, seed) of a case's ``--control``: :func:`benchmarks.bench_validity.reference_control` (an
    organism's matched control; a control's next-seed control; None with one seed), in this bench's order."""
    ref = reference_control(kind, st, seed, seeds)
    return None if ref is None else (ref[1], ref[0], ref[2])


def fail_trips(gate: Mapping[str, Any]) -> list[str]:
    """The fail-severity checks a gate summary trips (status ``fail``)."""
    return sorted(cid for cid, c in gate["checks"].items() if c["severity"] == "fail" and c["status"] == "fail")


def _fails_own_trait(gate: Mapping[str, Any], trait: str) -> bool:
    return any(gate["checks"][c].get("trait") == trait for c in fail_trips(gate))


def _values(recs: Sequence[Mapping[str, Any]], kind: str, check: str,
            mode: str = "without_control") -> list[float]:
    """The values of ``check`` (gate without / with control) over the cases of ``kind``."""
    return [v for r in recs if r["kind"] == kind and mode in r["gate"]
            for v in [r["gate"][mode]["checks"].get(check, {}).get("value")]
            if isinstance(v, (int, float))]


def summarise(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per set: verdicts, detection on the set's own trait, false alarms, per-check values and AUROC."""
    out: dict[str, Any] = {}
    for st in sorted({r["set"] for r in records if r["kind"] in KINDS}):
        recs = [r for r in records if r["set"] == st]
        trait = SET_TRAIT.get(st, st)
        per: dict[str, Any] = {"trait": trait}
        for mode in ("without_control", "with_control"):
            mine = [r for r in recs if mode in r["gate"]]
            org = [r for r in mine if r["kind"] == "organism"]
            ctl = [r for r in mine if r["kind"] == "control"]
            per[mode] = {
                "verdicts": {r["case"]: r["gate"][mode]["verdict"] for r in mine},
                "fail_trips": {r["case"]: fail_trips(r["gate"][mode]) for r in mine},
                "organisms_failing_own_trait": sum(_fails_own_trait(r["gate"][mode], trait) for r in org),
                "organisms": len(org),
                "controls_with_a_fail_trip": sum(bool(fail_trips(r["gate"][mode])) for r in ctl),
                "controls": len(ctl),
            }
        checks: dict[str, Any] = {}
        for cid in sorted({c for r in recs for c in r["gate"]["without_control"]["checks"]}):
            o, c = _values(recs, "organism", cid), _values(recs, "control", cid)
            checks[cid] = {"organisms": o, "controls": c, "auroc": auroc(o, c) if o and c else None}
        per["check_values_without_control"] = checks
        # the checks only a control makes measurable (optional, skipped without one): organism vs matched control,
        # control vs the next seed's control
        only = sorted({c for r in recs if "with_control" in r["gate"] for c, row in r["gate"]["with_control"]["checks"].items()
                       if c not in checks or not (checks[c]["organisms"] or checks[c]["controls"])})
        per["check_values_with_control"] = {
            cid: {"organisms": (o := _values(recs, "organism", cid, "with_control")),
                  "controls": (c := _values(recs, "control", cid, "with_control")),
                  "auroc": auroc(o, c) if o and c else None} for cid in only}
        out[st] = per
    return out


def summarise_outside(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Package recipes outside the suite (gate without control): each verdict and fail trips; benign recipes with
    any fail-severity trip (false alarms); inducing recipes failing on the trait their name starts with."""
    benign = [r for r in records if r["kind"] == "outside-benign"]
    inducing = [r for r in records if r["kind"] == "outside-inducing"]

    def row(r: Mapping[str, Any]) -> dict[str, Any]:
        g = r["gate"]["without_control"]
        return {"verdict": g["verdict"], "fail_trips": fail_trips(g)}

    return {"benign": {r["case"]: row(r) for r in benign},
            "benign_with_a_fail_trip": sum(bool(fail_trips(r["gate"]["without_control"])) for r in benign),
            "inducing": {r["case"]: {**row(r), "fails_own_trait": _fails_own_trait(r["gate"]["without_control"],
                                                                                     r["trait"])}
                         for r in inducing}}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(EXTRA_SETS))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--work", default="/tmp/difflib_gate_heldout")
    ap.add_argument("--adapters", default="/tmp/difflib_behaviour_open", help="bench_behaviour_open's --work")
    ap.add_argument("--name", default="bench_gate_heldout")
    ap.add_argument("--outside-benign", default="sycophancy-neutral,evil-neutral,clean-reference,secure-code,"
                    "ocean-inducing", help="package data sets fine-tuned the same way (first seed), gated without "
                    "a control: benign recipes outside the suite")
    ap.add_argument("--outside-inducing", default="sycophancy-inducing,evil-inducing",
                    help="package data sets that induce the trait their name starts with")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from benchmarks.bench_behaviour_open import case_name, train
    from benchmarks.bench_validity import BehaviourMemo, gate_case, setup_vectors
    from difflib_models.io import atomic_write_json
    from difflib_models.models.loading import load_model

    sets = [s for s in args.sets.split(",") if s]
    if unknown := sorted(set(sets) - set(SET_TRAIT)):
        ap.error(f"unknown set(s) {unknown}; known: {sorted(SET_TRAIT)}")
    seeds = int_list(args.seeds, "--seeds")
    work, adapters = Path(args.work), Path(args.adapters)
    (work / "cases").mkdir(parents=True, exist_ok=True)
    load_start, t0 = load_average(), time.perf_counter()
    meta = setup_vectors(load_model(None), work)
    BehaviourMemo().install()
    cases = [(st, k, s) for s in seeds for st in sets for k in KINDS]
    cases += [(d, k, seeds[0]) for k, names in (("outside-benign", args.outside_benign),
                                                ("outside-inducing", args.outside_inducing))
              for d in names.split(",") if d]
    for i, (st, kind, seed) in enumerate(cases, 1):
        cid = case_name(st, kind, seed)
        path = work / "cases" / f"{cid}.json"
        if path.is_file():
            continue
        t1 = time.perf_counter()
        cand_dir = train(st, kind, seed, adapters)
        ref = reference(kind, st, seed, seeds) if kind in KINDS else None
        ref_dir = train(*ref, adapters) if ref else None
        trait = SET_TRAIT.get(st) or next((t for t in SET_TRAIT.values() if st.startswith(t)), st)
        record = {"case": cid, "set": st, "trait": trait, "kind": kind, "seed": seed,
                  "reference_control": case_name(*ref) if ref else None}
        record.update(gate_case(str(cand_dir), str(ref_dir) if ref_dir else None, meta["files"],
                                work / "runs" / cid, seed, verify_without=False))
        record["seconds"] = round(time.perf_counter() - t1, 1)
        atomic_write_json(path, record)
        g = record["gate"]
        log.info("[%d/%d] %s: %.0f s; without control %s %s, with control %s", i, len(cases), cid,
                 record["seconds"], g["without_control"]["verdict"], fail_trips(g["without_control"]),
                 (g["with_control"]["verdict"], fail_trips(g["with_control"])) if "with_control" in g else "-")
    names = {case_name(*c) for c in cases}
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((work / "cases").glob("*.json"))]
    records = [r for r in records if r["case"] in names]
    write_results(args.name, {
        "config": vars(args), "complete": len(records) == len(cases), "seconds": round(time.perf_counter() - t0, 1),
        # "seconds" is this invocation's; a rerun skips finished cases, so the cases' own times add up the whole run
        "case_seconds_total": round(sum(float(r.get("seconds") or 0.0) for r in records), 1),
        "load_average_at_start": load_start, "vectors": meta, "policy": "difflib_models/gate/default_policy.yaml",
        "summary": summarise(records), "outside": summarise_outside(records), "records": records}, machine_info())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
