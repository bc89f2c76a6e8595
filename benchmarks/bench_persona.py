"""Persona vectors on SmolLM2-135M-Instruct: held-out validation of the built-in traits (numbers in docs/persona.md).

For each trait and mode: extraction time, per-layer held-out AUROC, the selected layer and why, both nulls (95th
percentile, p-value, max over layers), split-half stability, the steering dose-response at the shortlisted layers,
and the cross-trait cosine matrix at a common layer. Writes ``benchmarks/results/persona.json``; asserts nothing.

    python -m benchmarks.bench_persona --threads 1              # 3 built-in traits, prompt_contrast, 2 pairs
    python -m benchmarks.bench_persona --traits evil --modes ab,prompt_contrast --max-instructions 0
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from typing import Any

from benchmarks.common import machine_info, write_results

log = logging.getLogger("benchmarks.persona")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traits", default="sycophancy,evil,hallucination")
    ap.add_argument("--modes", default="prompt_contrast")
    ap.add_argument("--n-null", type=int, default=200)
    ap.add_argument("--shortlist", type=int, default=1)
    ap.add_argument(
        "--max-instructions", type=int, default=0, help="use only the first N instruction pairs (0: all)"
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--alphas", default="-0.5,-0.25,-0.1,0,0.1,0.25,0.5",
                    help="steering alphas in median-residual-norm units (the spec's +-1, +-2 collapse SmolLM2's answers)")
    ap.add_argument("--control-dirs", type=int, default=3,
                    help="random directions of the steering control (more draws: a stricter control)")
    ap.add_argument("--name", default="persona")
    args = ap.parse_args(argv)
    os.environ.setdefault("DIFFLIB_MODELS_NO_PROGRESS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from difflib_models.models.loading import load_model
    from difflib_models.persona.extraction.extractor import PersonaExtractor
    from difflib_models.persona.traits import load_trait
    from difflib_models.persona.validation.validate import cross_trait_cosines, validate_vectors

    machine = machine_info()
    loaded = load_model()
    results: list[dict[str, Any]] = []
    sets = {}
    for mode in args.modes.split(","):
        for trait in args.traits.split(","):
            tr = load_trait(trait)
            if args.max_instructions:
                tr = dataclasses.replace(tr, instructions=tr.instructions[: args.max_instructions])
            t0 = time.perf_counter()
            ex = PersonaExtractor(mode=mode, layers="all", batch_size=args.batch_size, show_progress=False)
            ex.fit(loaded, tr)
            t_fit = time.perf_counter() - t0
            t0 = time.perf_counter()
            alphas = tuple(float(a) for a in args.alphas.split(","))
            res = validate_vectors(ex.to_vector_set(), ex.trait_features(loaded, tr), level="full", loaded=loaded,
                                   trait=tr, n_null=args.n_null, shortlist=args.shortlist, alphas=alphas,
                                   control_dirs=args.control_dirs)
            t_val = time.perf_counter() - t0
            sel = res.selected_layer
            row = {
                "trait": trait,
                "mode": mode,
                "fit_s": round(t_fit, 2),
                "validate_s": round(t_val, 2),
                "n_pos": ex.n_pos_,
                "n_neg": ex.n_neg_,
                "selected_layer": sel,
                "reason": res.selection_reason,
                "verdict": res.verdict,
                "auroc_selected": res.per_layer[sel].auroc,
                "auroc_ci": list(res.per_layer[sel].auroc_ci),
                "cohens_d": res.per_layer[sel].cohens_d,
                "alignment": res.per_layer[sel].alignment,
                "null_q95": {k: v.q95 for k, v in res.nulls.items()},
                "null_p": {k: v.p_value for k, v in res.nulls.items()},
                "nulls": {k: {kk: vv for kk, vv in v.items() if not kk.endswith("draws")}
                          for k, v in res.to_dict()["nulls"].items()},
                "split_half_cos": res.split_half.get(sel),
                "gap": ex.gap_[sel],
                "base_std": ex.base_std_[sel],
                "norm": ex.norms_[sel],
                "steering": {str(k): v.to_json() for k, v in res.steering.items()},
                "auroc_by_layer": {str(k): round(v.auroc, 4) for k, v in res.per_layer.items()},
                "warnings": res.warnings,
            }
            log.info(
                "%s/%s: layer %s AUROC %.3f nulls %s verdict %s (fit %.0fs, validate %.0fs)",
                trait,
                mode,
                sel,
                row["auroc_selected"],
                row["null_q95"],
                res.verdict,
                t_fit,
                t_val,
            )
            results.append(row)
            write_results(
                args.name, {"model": loaded.identity.name, "args": vars(args), "results": results}, machine
            )
            if mode == args.modes.split(",")[0]:
                sets[trait] = ex.to_vector_set(selected_layer=sel)
    cos: dict[str, Any] = {}
    if len(sets) > 1:
        layer = loaded.n_layers // 2
        names, m, warns = cross_trait_cosines({k: v.vector(layer) for k, v in sets.items()})
        cos = {"layer": layer, "traits": names, "matrix": m.round(4).tolist(), "warnings": warns}
    path = write_results(
        args.name, {"model": loaded.identity.name, "args": vars(args), "results": results, "cross_trait_cosine": cos},
        machine,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
