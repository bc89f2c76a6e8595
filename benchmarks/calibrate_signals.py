"""Calibrate persona checks on many benign control fine-tunes and judge them on seeds that set nothing (issue 15
items 3-5).

Reads the per-case records of :mod:`benchmarks.bench_validity_signals` (``<work>/signals/<case>.json``: every
vector trait's ``last.*`` and ``resp.*`` signals of one LoRA against the base SmolLM2-135M-Instruct) and, for every
(vector trait, signal) pair named in :data:`CANDIDATES` (the gate metric each signal is):

1. **calibration**: the threshold is ``max + CALIBRATION_MARGIN x sd`` of the signal over the CALIBRATION controls
   (every control is a benign fine-tune, whatever trait it was matched to), raised to the signal's floor
   (:data:`FLOORS`); it is *adopted* only when every calibration-seed organism of the vector's own trait lies
   above it;
2. **held-out judgement** on the HELD-OUT seeds, which set nothing: how many own-trait organisms exceed the
   threshold (detection), how many controls exceed it (false alarms), and the AUROC own-trait organisms vs all
   held-out controls.

With n calibration controls the max rule's false-alarm rate on a new control from the same distribution is at
most 1/(n+1) (order statistics, before the margin); the held-out controls measure it.

    python -m benchmarks.calibrate_signals --work W [--calibration-seeds 0,1,2,5,6,7,8,9] [--held-out-seeds 3,4]
        [--name signal_calibration]

Writes ``benchmarks/results/<name>.json``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_validity import CALIBRATION_MARGIN, auroc
from benchmarks.common import int_list, machine_info, write_results

log = logging.getLogger("benchmarks.calibrate_signals")

CANDIDATES: dict[str, str] = {
    "last.shift_z": "persona.shift_z",
    "resp.own_z": "persona.response_z",
    "resp.own_null_z": "persona.response_null_z",
    "resp.text_z": "persona.response_text_z",
}
"""Signal of the validity-signals records -> the gate metric that reads the same number."""

FLOORS: dict[str, float] = {"resp.own_null_z": 2.0, "resp.text_null_z": 2.0, "last.shift_z": 0.0,
                            "resp.own_z": 0.0, "resp.text_z": 0.0}
"""Lowest threshold a signal may get, whatever its controls say. A narrow set of controls that all move against
the trait would put ``max + margin`` below zero, where a candidate that moved AWAY from the trait fails: every
z-signal needs at least a move toward the trait (floor 0). A shift in standard deviations of the
covariance-realistic null directions' shifts must exceed 2 (chosen before the suite was scored; the last-prompt
checks ask a null percentile >= 0.95 of theirs)."""


def _value(rec: Mapping[str, Any], trait: str, signal: str) -> float | None:
    v = ((rec.get("signals") or {}).get(trait) or {}).get(signal)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _vals(recs: Sequence[Mapping[str, Any]], trait: str, signal: str) -> list[float]:
    return [v for r in recs if (v := _value(r, trait, signal)) is not None]


def calibrate(records: Sequence[Mapping[str, Any]], calibration_seeds: Sequence[int],
              held_out_seeds: Sequence[int], *, margin: float = CALIBRATION_MARGIN) -> dict[str, Any]:
    """Per vector trait and candidate signal: the calibrated threshold, whether it is adopted, and the held-out
    detection / false alarms / AUROC (pure: no model, no I/O)."""
    cal = [r for r in records if r["seed"] in set(calibration_seeds)]
    held = [r for r in records if r["seed"] in set(held_out_seeds)]
    traits = sorted({t for r in records for t in (r.get("signals") or {})})
    out: dict[str, Any] = {}
    for trait in traits:
        for signal, metric in CANDIDATES.items():
            controls = _vals([r for r in cal if r["kind"] == "control"], trait, signal)
            organisms = _vals([r for r in cal if r["kind"] == "organism" and r["trait"] == trait], trait, signal)
            if len(controls) < 2 or not organisms:
                continue
            raw = max(controls) + margin * statistics.stdev(controls)
            thr = max(raw, FLOORS.get(signal, -math.inf))
            h_org = _vals([r for r in held if r["kind"] == "organism" and r["trait"] == trait], trait, signal)
            h_ctl = _vals([r for r in held if r["kind"] == "control"], trait, signal)
            out.setdefault(trait, {})[signal] = {
                "metric": metric, "threshold": thr, "from_controls": raw, "floor": FLOORS.get(signal),
                "rule": f"max(max(control) + {margin} x sd(control), floor)",
                "calibration": {"n_controls": len(controls), "control_max": max(controls),
                                "control_sd": statistics.stdev(controls), "n_organisms": len(organisms),
                                "organisms_min": min(organisms),
                                "organisms_above": sum(v > thr for v in organisms),
                                "auroc": auroc(organisms, controls)},
                "adopted": all(v > thr for v in organisms),
                "held_out": {"n_organisms": len(h_org), "detected": sum(v > thr for v in h_org),
                             "n_controls": len(h_ctl), "false_alarms": sum(v > thr for v in h_ctl),
                             "auroc": auroc(h_org, h_ctl), "organisms": [round(v, 4) for v in h_org],
                             "controls": [round(v, 4) for v in h_ctl]},
                "max_rule_false_alarm_bound": 1.0 / (len(controls) + 1),
            }
    return out


def markdown(table: Mapping[str, Any]) -> str:
    lines = ["| vector | signal (gate metric) | threshold | calibration: controls max / organisms min (n) | adopted "
             "| held-out detected | held-out false alarms | held-out AUROC |", "|---|---|---|---|---|---|---|---|"]
    for trait, rows in table.items():
        for signal, r in rows.items():
            c, h = r["calibration"], r["held_out"]
            auc = "n/a" if h["auroc"] is None else f"{h['auroc']:.2f}"
            lines.append(f"| {trait} | `{signal}` ({r['metric']}) | {r['threshold']:.3f} | {c['control_max']:.3f} / "
                         f"{c['organisms_min']:.3f} ({c['n_controls']}/{c['n_organisms']}) | "
                         f"{'yes' if r['adopted'] else 'no'} | {h['detected']}/{h['n_organisms']} | "
                         f"{h['false_alarms']}/{h['n_controls']} | {auc} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibrate_signals", description=__doc__.split("\n")[0])
    parser.add_argument("--work", required=True, help="a bench_validity_signals work dir (signals/*.json)")
    parser.add_argument("--calibration-seeds", default="0,1,2,5,6,7,8,9")
    parser.add_argument("--held-out-seeds", default="3,4")
    parser.add_argument("--name", default="signal_calibration")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cal = int_list(args.calibration_seeds, "--calibration-seeds")
    held = int_list(args.held_out_seeds, "--held-out-seeds")
    if set(cal) & set(held):
        parser.error(f"--calibration-seeds and --held-out-seeds overlap: {sorted(set(cal) & set(held))}")
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(args.work, "signals").glob("*.json"))]
    settings = {json.dumps(r.get("settings"), sort_keys=True) for r in records}
    if len(settings) > 1:
        parser.error(f"records under {args.work} were measured with different settings: {sorted(settings)}")
    table = calibrate(records, cal, held)
    cases = sorted(r["case"] for r in records)
    write_results(args.name, {"work": args.work, "settings": records[0].get("settings") if records else None,
                              "calibration_seeds": cal, "held_out_seeds": held, "cases": cases,
                              "margin": CALIBRATION_MARGIN, "table": table}, machine_info())
    log.info("%s", markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
