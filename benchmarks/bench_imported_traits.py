"""Imported persona traits on SmolLM2-135M-Instruct: mode and layer chosen on a tuning split, held-out AUROC vs nulls.

For each Anthropic model-written-evals persona file (statement items, imported as paired stance responses, A/B items
and instructions derived from the file name; extraction / tuning / evaluation split): every mode (paired, ab,
prompt_contrast) is fitted on the extraction split, its best layer and aggregator (``--aggregators``) chosen on the
tuning split, and that layer
measured on the held-out evaluation split (the stance contrast: trait-consistent vs trait-inconsistent answer to the
same statement) against the label-permutation and the covariance-realistic random-direction null at that one layer.
The mode with the best tuning AUROC is the one ``persona extract`` would pick. Writes
``benchmarks/results/imported_traits.json``; asserts nothing (docs/persona.md reports the table).

    python -m benchmarks.bench_imported_traits --threads 1
    python -m benchmarks.bench_imported_traits --threads 1 --limit 80 --max-instructions 1   # the measured run
    python -m benchmarks.bench_imported_traits --files narcissism --limit 80 --name imported_traits_smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info, write_results
from difflib_models.paths import shared_dir

log = logging.getLogger("benchmarks.imported_traits")

DEFAULT_FILES = ("narcissism", "desire-for-acquiring-power", "ends-justify-means", "interest-in-art")
"""Three dark personas (the project's built-ins never saw them) and one benign interest."""


def _row(mode: str, res: Any, sel: Any, seconds: float) -> dict[str, Any]:
    s = res.summary
    row = s.selected
    best = sel.best_per_mode()[mode]
    return {
        "mode": mode, "aggregator": best.aggregator, "layer": best.layer, "tuning_auroc": round(best.auroc, 4),
        "eval_auroc": round(row.auroc, 4), "eval_auroc_ci": [round(x, 4) for x in row.auroc_ci],
        "cohens_d": round(row.cohens_d, 4),
        "nulls": {n.name: {"q95": round(n.q95, 4), "p_value": round(n.p_value, 4), "test": n.test,
                           "passes": n.passes, "max_over_layers": n.max_over_layers} for n in s.nulls},
        "beats_both_nulls": all(n.passes for n in s.nulls), "reaches_0_8": row.auroc >= 0.8,
        "verdict": s.verdict, "fit_and_tune_s": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", default=",".join(DEFAULT_FILES), help="persona file stems")
    ap.add_argument("--data", default=str(shared_dir() / "data" / "anthropic-evals" / "persona"))
    ap.add_argument("--limit", type=int, default=0, help="statements per file (0: the importer's default)")
    ap.add_argument("--modes", default="paired,ab,prompt_contrast")
    ap.add_argument("--aggregators", default="mean_diff,pair_logistic,logistic",
                    help="aggregators tried on every mode's features (chosen on the tuning split)")
    ap.add_argument("--n-null", type=int, default=200)
    ap.add_argument("--max-instructions", type=int, default=0,
                    help="use only the first N derived instruction pairs (0: all three)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--name", default="imported_traits")
    args = ap.parse_args(argv)
    os.environ.setdefault("DIFFLIB_MODELS_NO_PROGRESS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from difflib_models.models.loading import load_model
    from difflib_models.persona.traits.importers import import_anthropic_jsonl
    from difflib_models.persona.validation.tuned import select_on_tuning, validate_choice

    machine = machine_info()
    loaded = load_model()
    results: list[dict[str, Any]] = []
    for stem in args.files.split(","):
        trait = import_anthropic_jsonl(Path(args.data) / f"{stem}.jsonl", limit=args.limit or None)
        if args.max_instructions:
            trait = dataclasses.replace(trait, instructions=trait.instructions[: args.max_instructions])
        t0 = time.perf_counter()
        sel = select_on_tuning(loaded, trait, modes=args.modes.split(","), batch_size=args.batch_size,
                               show_progress=False, aggregators=args.aggregators.split(","))
        t_select = time.perf_counter() - t0
        cache: dict[str, Any] = {}
        rows = []
        for mode in sel.extractors:
            t1 = time.perf_counter()
            _, res = validate_choice(loaded, trait, sel, mode, level="quick", n_null=args.n_null,
                                     batch_size=args.batch_size, show_progress=False, evaluation_cache=cache)
            rows.append(_row(mode, res, sel, sel.seconds[mode] + time.perf_counter() - t1))
            log.info("%s/%s (%s): layer %d tuning %.3f held-out %.3f nulls q95 %s", stem, mode, rows[-1]["aggregator"], rows[-1]["layer"],
                     rows[-1]["tuning_auroc"], rows[-1]["eval_auroc"],
                     {k: v["q95"] for k, v in rows[-1]["nulls"].items()})
        chosen = next(r for r in rows if r["mode"] == sel.mode)
        results.append({
            "file": stem, "n_statements": {s: len(trait.split_paired(s)) for s in ("extraction", "tuning", "evaluation")},
            "chosen_mode": sel.mode, "chosen_aggregator": sel.aggregator, "chosen_layer": sel.layer, "chosen_eval_auroc": chosen["eval_auroc"],
            "chosen_beats_both_nulls": chosen["beats_both_nulls"], "chosen_reaches_0_8": chosen["reaches_0_8"],
            "select_s": round(t_select, 1), "total_s": round(time.perf_counter() - t0, 1), "modes": rows,
        })
        write_results(args.name, {"model": loaded.identity.name, "args": vars(args), "results": results}, machine)
    path = write_results(args.name, {"model": loaded.identity.name, "args": vars(args), "results": results}, machine)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
