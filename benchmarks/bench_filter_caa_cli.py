"""The stacked CAA sycophancy filter as a user runs it: two CLI commands, then the held-out AUROC of the scores.

    python -m benchmarks.bench_filter_caa_cli [--seed 0] [--caa-items 100] [--work /tmp/difflib_caa_cli]
        [--name filter_caa_cli]

1. writes the CAA generate sycophancy items NOT in the held-out sample of ``--seed`` (the sample of
   ``benchmarks.bench_filter_heldout`` / ``bench_filter_caa_stacked``) as a CAA-format ``.json`` file, and the held-out
   items as chat JSONL rows, each answered once with the matching option's text and once with the other's;
2. ``difflib-models persona extract --trait <that file> --mode paired --aggregator logistic --validation quick
   --out syc_caa`` (the import, the per-block vectors, their validation and the filter validation with the stacked
   readouts, all as shipped);
3. ``difflib-models persona filter --vectors syc_caa.safetensors --data heldout_rows.jsonl --out filtered`` (the
   file's validated readout and method, nothing chosen on these rows);
4. AUROC / precision@k / within-prompt win rate of ``delta_p``, matching vs other answers, from ``scores.jsonl``.
Each command runs in its own process (``sys.executable -m difflib_models``), offline, without progress bars; wall
times are recorded. Results: ``benchmarks/results/{name}.json``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_filter_heldout_caa import caa_rows, held_out_indices
from benchmarks.common import machine_info, write_results


def write_inputs(work: Path, seed: int, n_held: int) -> tuple[Path, Path, int]:
    """(CAA-format file of the other items, chat JSONL of the held-out answers, number of other items)."""
    from difflib_models.persona.traits.schema import option_text

    data = caa_rows()
    held = held_out_indices(len(data), n_held, seed)  # the sample of split_caa
    others = [r for i, r in enumerate(data) if i not in held]
    trait = work / f"caa_sycophancy_{len(others)}.json"
    trait.write_text(json.dumps(others), encoding="utf-8")
    rows = work / "heldout_rows.jsonl"
    with rows.open("w", encoding="utf-8") as f:
        for i in sorted(held):
            r = data[i]
            for side, letter in (("matching", r["answer_matching_behavior"]),
                                 ("other", r["answer_not_matching_behavior"])):
                f.write(json.dumps({"id": f"{i}-{side}", "messages": [
                    {"role": "user", "content": r["question"]},
                    {"role": "assistant", "content": option_text(r["question"], letter)}]}) + "\n")
    return trait, rows, len(others)


def cli(args: list[str], cwd: Path) -> tuple[dict[str, Any], float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", DIFFLIB_MODELS_NO_PROGRESS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "difflib_models", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"difflib-models {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--caa-items", type=int, default=100)
    ap.add_argument("--work", default="/tmp/difflib_caa_cli")
    ap.add_argument("--name", default="filter_caa_cli")
    args = ap.parse_args()
    from difflib_models.persona.filtering.validation import rank_metrics

    machine = machine_info()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    trait, rows, n_import = write_inputs(work, args.seed, args.caa_items)
    extract = ["persona", "extract", "--trait", trait.name, "--mode", "paired", "--aggregator", "logistic",
               "--validation", "quick", "--out", "syc_caa"]
    extracted, extract_seconds = cli(extract, work)
    filt = ["persona", "filter", "--vectors", "syc_caa.safetensors", "--data", rows.name, "--out", "filtered"]
    summary, filter_seconds = cli(filt, work)
    scores = [json.loads(x) for x in (work / "filtered" / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    matching = np.array([s["delta_p"] for s in scores if s["id"].endswith("-matching")])
    other = np.array([s["delta_p"] for s in scores if s["id"].endswith("-other")])
    write_results(args.name, {
        "config": vars(args), "n_import_items": n_import, "n_held_out": len(matching),
        "commands": {"extract": "difflib-models " + " ".join(extract), "filter": "difflib-models " + " ".join(filt)},
        "extract_seconds": round(extract_seconds, 1), "extraction_seconds": extracted.get("extraction_seconds"),
        "filter_seconds": round(filter_seconds, 1),
        "filter_validation": extracted["filter_validation"],
        "filter_summary": {k: summary.get(k) for k in ("method", "layer", "readout", "n", "filter_validation")},
        "heldout": rank_metrics(matching, other),
    }, machine)


if __name__ == "__main__":
    main()
