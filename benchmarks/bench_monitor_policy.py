"""The live PersonaMonitor on the organism-vs-control suite: its uncalibrated default lines vs the gate policy's.

Each of the suite's cases (``benchmarks/organism_data.py``: 3 traits x organism / matched control x seeds, the
suite's LoRA recipe of ``bench_validity``) is trained once with three monitors attached, all on the gate's own
vectors (extracted the way the gate does, :func:`benchmarks.bench_validity.setup_vectors`) and checking at the same
steps:

- ``default``: one monitor on all three traits with the class defaults (what ``bench_validity`` ran);
- ``policy_evil`` / ``policy_sycophancy``: ``PersonaMonitor(vectors=[<trait>], policy="default")``, the default
  gate policy's lines for that trait (hallucination has no live check in the policy).

With ``--monitors responses`` (written as ``monitor_responses``) each case is trained instead with
``PersonaMonitor(vectors=[<trait>], policy="default", responses=True, batch_size=16)`` for sycophancy and for
hallucination (``response_<trait>``): the live reading of the model's own greedy answers with the default policy's
response lines (sycophancy: calibrated, hallucination: a proposal) and the gate's settings, so its last check can be
compared with the gate's ``<trait>-response-null-z`` on the same recipe (``--gate-records``, e.g.
``benchmarks/results/bench_gate_suite.json``: those adapters were trained by another run of the same recipe).

Per case and monitor: status, first warn / fail step per trait, every check's shift_z, shift_frac, null percentile,
response readings (where recorded) and status. The summary counts, per monitor, the benign controls that warn / fail (a fail with ``stop_on_fail``
stops a benign run) and the organisms that fail on their own trait. Case records are written atomically as they
finish (``<work>/cases/<case>.json``); a rerun skips done cases, so two processes can share a work directory
(``--seeds 0,1,2`` and ``--seeds 3,4``; start the second once ``<work>/vectors.json`` exists).

    python -m benchmarks.bench_monitor_policy --work W [--seeds 0,1,2,3,4] [--traits sycophancy,evil,hallucination]
        [--monitors policy|responses] [--gate-records bench_gate_suite.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import int_list, machine_info, write_results
from difflib_models.finite import finite_or_none

log = logging.getLogger("benchmarks.monitor_policy")

TRAITS = ("sycophancy", "evil", "hallucination")
POLICY_TRAITS = ("evil", "sycophancy")
"""Traits the default policy has a live (last-prompt) check for: each gets a ``policy="default"`` monitor."""
RESPONSE_TRAITS = ("sycophancy", "hallucination")
"""Traits whose default-policy check reads the candidate's answers: each gets a ``responses=True`` monitor."""
READ = ("shift_z", "shift_frac", "null_percentile", "status")
RESPONSE_READ = ("response_z", "response_null_z", "response_tokens", "response_headroom", "no_headroom",
                 "response_position_shift", "no_reading")
GATE_BATCH = 16
"""The read batch of the suite's gates (``bench_validity.GATE_BATCH``): the response monitors use it too."""


def _reading(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "status": summary["status"],
        "first_warn_step": summary["first_warn_step"],
        "first_fail_step": summary["first_fail_step"],
        "thresholds": {k: summary["thresholds"].get(k) for k in ("warn_z", "warn_frac", "fail_z", "fail_frac",
                                                                   "fail_null_percentile", "warn_response_null_z",
                                                                   "fail_response_null_z", "min_headroom",
                                                                   "warn_response_position_shift",
                                                                   "fail_response_position_shift", "calibrated")
                       if k in summary["thresholds"]},
        "checks": [{"step": s.get("step"),
                    "traits": {t: {k: v[k] if isinstance(v[k], bool) else finite_or_none(v[k])
                                   for k in (*READ, *RESPONSE_READ) if k in v}
                               for t, v in s["traits"].items()}}
                   for s in summary["series"]],
    }


def make_monitors(which: str, rec: Mapping[str, Any], vectors: Mapping[str, str], run_dir: Path) -> dict[str, Any]:
    """The monitors of one case: ``policy`` (default lines on all traits + the policy's per-trait lines) or
    ``responses`` (the policy's response lines, read live)."""
    from difflib_models.callbacks import PersonaMonitor

    common = {"every_n_steps": rec["monitor_every"], "stop_on_fail": False}
    if which == "responses":
        return {f"response_{t}": PersonaMonitor(vectors=[vectors[t]], policy="default", responses=True,
                                                batch_size=GATE_BATCH, out_dir=str(run_dir / f"response_{t}"),
                                                **common) for t in RESPONSE_TRAITS}
    monitors = {"default": PersonaMonitor(vectors=[vectors[t] for t in TRAITS], out_dir=str(run_dir / "default"),
                                          batch_size=20, **common)}
    for t in POLICY_TRAITS:
        monitors[f"policy_{t}"] = PersonaMonitor(vectors=[vectors[t]], policy="default", batch_size=20,
                                                 out_dir=str(run_dir / f"policy_{t}"), **common)
    return monitors


def set_trait(name: str) -> str | None:
    """The trait a training set embodies (a suite set's trait; a package set's name prefix), None for a benign
    package set."""
    from benchmarks.organism_data import SET_TRAIT

    return SET_TRAIT.get(name) or next((t for t in TRAITS if name.startswith(t)), None)


def run_case(kind: str, trait: str, seed: int, rec: Mapping[str, Any], vectors: Mapping[str, str],
             work: Path, which: str = "policy") -> dict[str, Any]:
    """Train one case with the monitors of ``which``; its record. ``trait`` names the training set: a suite set
    (organism / control rows) or, for ``outside-benign`` / ``outside-inducing`` kinds, a package data set trained
    with the same recipe."""
    from benchmarks.bench_behaviour_open import _rows
    from benchmarks.bench_validity import fit_lora

    case = f"{trait}-{kind}-s{seed}"
    run_dir = work / "runs" / case
    monitors = make_monitors(which, rec, vectors, run_dir)
    t0 = time.perf_counter()
    _, trainer = fit_lora(_rows(trait, kind)[: rec["rows"]], rec, seed, run_dir,
                          callbacks=list(monitors.values()))
    loss = trainer.callback_metrics.get("train_loss")
    trait_of = None if kind == "outside-benign" else set_trait(trait)
    return {"case": case, "kind": kind, "set": trait, "trait": trait_of, "seed": seed, "steps": int(trainer.global_step),
            "final_loss": float(loss) if loss is not None else None, "seconds": time.perf_counter() - t0,
            "monitors": {name: _reading(m.summary()) for name, m in monitors.items()}}


def summarise(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per monitor: controls warned / failed (any trait), organisms failing on their own trait (where monitored).
    The suite's three sets only (records of other sets and package recipes: :func:`summarise_other`)."""
    records = [r for r in records if r.get("set", r["trait"]) in TRAITS and r["kind"] in ("organism", "control")]
    out: dict[str, Any] = {}
    names = sorted({n for r in records for n in r["monitors"]})
    for name in names:
        ctl = [r for r in records if r["kind"] == "control" and name in r["monitors"]]
        org = [r for r in records if r["kind"] == "organism" and name in r["monitors"]]
        statuses = [r["monitors"][name]["status"] for r in ctl]
        own: dict[str, Any] = {}
        for t in TRAITS:
            rs = [r for r in org if r["trait"] == t and t in r["monitors"][name]["first_fail_step"]]
            if rs:
                own[t] = {"organisms": len(rs),
                          "failing_own_trait": sum(r["monitors"][name]["first_fail_step"][t] is not None for r in rs)}
        out[name] = {
            "controls": len(ctl), "controls_warn": statuses.count("warn"), "controls_fail": statuses.count("fail"),
            "failing_controls": [r["case"] for r in ctl if r["monitors"][name]["status"] == "fail"],
            "warning_controls": [r["case"] for r in ctl if r["monitors"][name]["status"] == "warn"],
            "organisms_by_trait": own,
        }
    return out


def summarise_other(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Sets beyond the suite's three (e.g. the polarity-balanced sycophancy set) as :func:`summarise` counts them,
    per set, and the package recipes outside the suite: each one's status per monitor, and the benign ones that
    any monitor fails (a benign run stop_on_fail would stop)."""
    extra = sorted({r["set"] for r in records if r.get("set", r["trait"]) not in TRAITS
                    and r["kind"] in ("organism", "control")})
    out: dict[str, Any] = {"sets": {}}
    for name in extra:
        mine = [dict(r, set=r["trait"]) for r in records if r.get("set") == name]  # count as the set's trait
        out["sets"][name] = summarise(mine)
    outside = [r for r in records if r["kind"].startswith("outside")]
    out["outside"] = {r["case"]: {"kind": r["kind"], "trait": r["trait"],
                                  "statuses": {n: m["status"] for n, m in r["monitors"].items()}}
                      for r in outside}
    out["outside_benign_failed"] = sorted(r["case"] for r in outside if r["kind"] == "outside-benign"
                                          and any(m["status"] == "fail" for m in r["monitors"].values()))
    return out


PARITY = {"response_null_z": "response-null-z", "response_position_shift": "response-position-shift"}
"""Live reading -> the default policy's check id suffix it equals at the gate."""


def gate_parity(records: Sequence[Mapping[str, Any]], gate: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per case, response monitor and reading of :data:`PARITY`: its last check's value beside the gate's
    ``<trait>-<check>`` value for the same case in a ``bench_gate_heldout`` result (without control), where both
    exist."""
    by_case = {r["case"]: r for r in gate.get("records", [])}
    out = []
    for r in records:
        g = by_case.get(r["case"])
        for name, m in r["monitors"].items():
            if not name.startswith("response_") or g is None or not m["checks"]:
                continue
            t = name.removeprefix("response_")
            for reading, check in PARITY.items():
                gate_check = g["gate"]["without_control"]["checks"].get(f"{t}-{check}")
                live = m["checks"][-1]["traits"][t].get(reading)
                if gate_check is None or reading not in m["checks"][-1]["traits"][t]:
                    continue
                value = gate_check.get("value")
                out.append({"case": r["case"], "trait": t, "reading": reading, "monitor_last": live, "gate": value,
                            "diff": None if value is None or live is None else live - value})
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_validity import recipe, setup_vectors
    from difflib_models.io import atomic_write_json
    from difflib_models.models.loading import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--traits", default=",".join(TRAITS))
    ap.add_argument("--extra-sets", default="", help="suite sets beyond the three (e.g. sycophancy_balanced)")
    ap.add_argument("--outside-benign", default="", help="package data sets, benign (first seed), e.g. "
                    "sycophancy-neutral,evil-neutral,clean-reference,secure-code,ocean-inducing")
    ap.add_argument("--outside-inducing", default="", help="package data sets that induce the trait they start "
                    "with, e.g. sycophancy-inducing,evil-inducing")
    ap.add_argument("--name", default=None, help="results name (default: monitor_policy / monitor_responses)")
    ap.add_argument("--monitors", choices=("policy", "responses"), default="policy")
    ap.add_argument("--gate-records", type=Path, nargs="+", default=None,
                    help="bench_gate_heldout results to compare the response monitors' last check with")
    ap.add_argument("--aggregate-only", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work = args.work.resolve()
    (work / "cases").mkdir(parents=True, exist_ok=True)
    rec = recipe(False, None)
    t_all = time.perf_counter()
    if not args.aggregate_only:
        base = load_model(None)
        vectors = setup_vectors(base, work)["files"]
        del base
        seeds = int_list(args.seeds, "--seeds")
        sets = [t for t in args.traits.split(",") if t] + [t for t in args.extra_sets.split(",") if t]
        cases = [(name, kind, seed) for seed in seeds for name in sets for kind in ("organism", "control")]
        cases += [(name, kind, seeds[0]) for kind, names in (("outside-benign", args.outside_benign),
                                                             ("outside-inducing", args.outside_inducing))
                  for name in names.split(",") if name]
        for name, kind, seed in cases:
            path = work / "cases" / f"{name}-{kind}-s{seed}.json"
            if path.is_file():
                continue
            record = run_case(kind, name, seed, rec, vectors, work, args.monitors)
            atomic_write_json(path, record)
            log.info("%s: %s", record["case"], {n: m["status"] for n, m in record["monitors"].items()})
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((work / "cases").glob("*.json"))]
    name = args.name or ("monitor_responses" if args.monitors == "responses" else "monitor_policy")
    extra: dict[str, Any] = {}
    if args.gate_records is not None:
        gates = [json.loads(p.read_text(encoding="utf-8")) for p in args.gate_records]
        extra["gate_parity"] = gate_parity(records, {"records": [r for g in gates for r in g.get("records", [])]})
    write_results(name, {"recipe": rec, "work": str(work), "monitors": args.monitors, "n_cases": len(records),
                         "seconds_this_invocation": round(time.perf_counter() - t_all, 1),
                         "summary": summarise(records), "other": summarise_other(records), **extra,
                         "records": records}, machine_info())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
