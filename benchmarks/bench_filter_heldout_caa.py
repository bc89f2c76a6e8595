"""Sycophancy filter vectors fitted on IMPORTED CAA items, ranked on 100 held-out CAA items (SmolLM2-135M-Instruct).

    python -m benchmarks.bench_filter_heldout_caa [--caa-items 100] [--methods raw,proxy,exact] [--random 8]
        [--seed 0] [--aggregators mean_diff,pair_logistic,logistic] [--cache /tmp/difflib_filter_heldout]

- held-out rows: the same seeded sample of ``--caa-items`` CAA generate sycophancy items as
  ``benchmarks.bench_filter_heldout`` (each answered with the matching option's text and with the other's, same
  prompt; features shared through the same ``--cache`` files);
- vector: the OTHER CAA items (1000 - 100) imported as a trait (:func:`~difflib_models.persona.traits.importers
  .trait_from_items`: paired option-text responses, extraction / tuning / evaluation 0.5 / 0.25 / 0.25 stratified
  by letter); ``paired`` features of its EXTRACTION split only, every layer, one direction per aggregator
  (``mean_diff``, ``pair_logistic``: within-pair objectives; ``logistic``: the rows as a pool); no held-out item is in the import (checked);
- protocol as bench_filter_heldout (:func:`~difflib_models.persona.filtering.validation.validate_for_filtering`):
  method and layer chosen on a seeded tuning half of the held-out pairs, AUROC / precision@k / within-pair win rate
  on the other half; ``--random`` norm-matched random directions from N(0, Sigma_hat) of the extraction features
  through the same protocol;
- the product's recipe: each vector's filter validation on the import's own paired EVALUATION split (225 pairs, as
  ``persona extract`` records it; ``--recipe-methods``, default raw,proxy: ``exact`` would add a generation per
  pair) and its layer and method applied unchanged to ALL held-out rows (no choice made on them);
- ``all_heldout_*``: each aggregator's per-(method, layer) AUROC and win rate on ALL held-out pairs, NOT used for
  any choice; listed for the table only.
Results: ``benchmarks/results/filter_heldout_caa.json``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench_filter_heldout import CAA, cached_features, parse_heldout_args
from benchmarks.common import machine_info, write_results
from difflib_models.models.loading import load_model
from difflib_models.persona.extraction.extractor import aggregate
from difflib_models.persona.extraction.pair_logistic import C_GRID, fit_pair_logistic
from difflib_models.persona.extraction.vectors import PersonaVectorSet
from difflib_models.persona.filtering import validation as fv
from difflib_models.persona.traits.importers import trait_from_items

logger = logging.getLogger("benchmarks.bench_filter_heldout_caa")


CAA_BEHAVIOURS = ("sycophancy", "survival-instinct", "myopic-reward", "refusal", "coordinate-other-ais",
                  "corrigible-neutral-HHH")
"""The CAA generate splits (``../shared/data/caa/generate/<behaviour>``)."""


def caa_rows(behaviour: str = "sycophancy") -> list[dict[str, Any]]:
    """One CAA generate split's items, as the file holds them (question, answer_matching_behavior, ...)."""
    if behaviour not in CAA_BEHAVIOURS:
        raise ValueError(f"behaviour={behaviour!r} is not a CAA generate split; expected one of {CAA_BEHAVIOURS}")
    return json.loads((CAA / behaviour / "generate_dataset.json").read_text(encoding="utf-8"))


def held_out_indices(n_items: int, n_held: int, seed: int) -> set[int]:
    """The seeded held-out sample of ``bench_filter_heldout`` (indices into the file)."""
    return set(np.random.default_rng(seed).permutation(n_items)[:n_held].tolist())


def caa_items(rows: list[dict[str, Any]] | None = None, behaviour: str = "sycophancy") -> list[Any]:
    """Every item of a CAA generate split (``rows``, else ``behaviour``'s file) as an ABItem, in file order."""
    from difflib_models.persona.traits.schema import ABItem

    return [ABItem(question=r["question"], matching=r["answer_matching_behavior"],
                   not_matching=r["answer_not_matching_behavior"]) for r in (rows or caa_rows(behaviour))]


def split_caa(n_held: int, seed: int, behaviour: str = "sycophancy") -> tuple[list[Any], list[Any]]:
    """(held-out items: bench_filter_heldout's seeded sample, the other items), in file order."""
    items = caa_items(behaviour=behaviour)
    held = held_out_indices(len(items), n_held, seed)
    return [items[i] for i in sorted(held)], [it for i, it in enumerate(items) if i not in held]


def extraction_features(loaded: Any, trait: Any, path: Path) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    from safetensors.torch import load_file, save_file

    from difflib_models.persona.extraction.extractor import PersonaExtractor

    if path.is_file():
        t = load_file(str(path))
        return ({int(k.split(".")[1]): v for k, v in t.items() if k.startswith("pos.")},
                {int(k.split(".")[1]): v for k, v in t.items() if k.startswith("neg.")})
    ex = PersonaExtractor(mode="paired", layers="all", batch_size=8, max_length=384, show_progress=False)
    pos, neg = ex.features(loaded, trait, "extraction")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({**{f"pos.{k}": v.contiguous() for k, v in pos.items()},
               **{f"neg.{k}": v.contiguous() for k, v in neg.items()}}, str(path))
    return pos, neg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aggregators", default="mean_diff,pair_logistic,logistic")
    ap.add_argument("--recipe-methods", default="raw,proxy")
    args = parse_heldout_args(ap, "filter_heldout_caa")

    methods = tuple(m for m in args.methods.split(",") if m)
    t_all = time.perf_counter()
    held, others = split_caa(args.caa_items, args.seed)
    trait = trait_from_items(others, trait_id="sycophancy-caa", source="CAA generate sycophancy minus held-out")
    held_q = {it.question for it in held}
    assert not held_q & {a.question for s in ("extraction", "tuning", "evaluation") for a in trait.split_ab(s)}
    loaded = load_model(None)
    cache = Path(args.cache) / loaded.identity.weight_hash[:12]
    t0 = time.perf_counter()
    pos, neg = extraction_features(loaded, trait, cache / f"caa_import_{len(others)}_s{args.seed}_extraction.safetensors")
    t_extract = time.perf_counter() - t0
    layers = sorted(pos)
    pairs = fv.pairs_from_ab(held, id_prefix="caa/sycophancy")
    feats = cached_features(loaded, pairs, layers, "exact" in methods,
                            cache / f"sycophancy_heldout_{len(pairs)}_s{args.seed}.safetensors")
    own = fv.pairs_from_trait(trait, "evaluation")
    recipe_methods = tuple(m for m in args.recipe_methods.split(",") if m)
    own_feats = cached_features(loaded, own, layers, "exact" in recipe_methods,
                                cache / f"caa_import_{len(others)}_s{args.seed}_evaluation.safetensors")
    cov = {k: torch.cat([pos[k] - pos[k].mean(0), neg[k] - neg[k].mean(0)]) for k in layers}
    orient = {k: pos[k].mean(0) - neg[k].mean(0) for k in layers}
    rows: dict[str, Any] = {}
    for agg in [a for a in args.aggregators.split(",") if a]:
        t1 = time.perf_counter()
        chosen_c: dict[int, float] = {}
        if agg == "pair_logistic":  # same as aggregate(), keeping the C the CV chose per layer
            fits = {k: fit_pair_logistic(pos[k], neg[k]) for k in layers}
            vecs, chosen_c = {k: v for k, (v, _) in fits.items()}, {k: c for k, (_, c) in fits.items()}
        else:
            vecs = {k: aggregate(pos[k], neg[k], agg) for k in layers}
        fit_s = time.perf_counter() - t1
        vs = PersonaVectorSet(trait_id=trait.id, vectors=vecs, model=loaded.identity.to_dict(), mode="paired",
                              aggregator=agg, n_pos=len(trait.split_paired("extraction")),
                              n_neg=len(trait.split_paired("extraction")))
        rec = fv.validate_for_filtering(vs, feats, methods=methods, seed=args.seed,
                                     source=f"CAA generate sycophancy, {len(pairs)} held-out items (seed {args.seed})")
        rand = fv.random_direction_baseline(vs, feats, cov, orient=orient, n_draws=args.random, methods=methods,
                                         seed=args.seed)
        recipe = fv.validate_for_filtering(vs, own_feats, methods=recipe_methods, seed=args.seed,
                                        source=f"{trait.id} paired_responses/evaluation ({len(own)} pairs)")
        transfer = fv.rank_metrics(*fv.pair_scores(feats, recipe.filter_layer, vs.unit(recipe.filter_layer),
                                             recipe.method))
        all_pairs = {m: {k: fv.rank_metrics(*fv.pair_scores(feats, k, vs.unit(k), m))["auroc"] for k in layers}
                     for m in methods}
        win = {k: fv.rank_metrics(*fv.pair_scores(feats, k, vs.unit(k), "raw"))["pair_win_rate"] for k in layers}
        rows[agg] = {
            "heldout_protocol": {**rec.to_dict(), "random_eval_auroc": rand, "random_eval_auroc_max": max(rand),
                                 "random_eval_auroc_mean": float(np.mean(rand)),
                                 "beats_every_random": bool(rec.eval_auroc > max(rand))},
            "recipe": recipe.to_dict(),
            "recipe_on_heldout": {"layer": recipe.filter_layer, "method": recipe.method, **transfer},
            "all_heldout_auroc_by_method_layer": all_pairs,
            "all_heldout_pair_win_rate_by_layer": win,
            "fit_seconds": round(fit_s, 1), "pair_logistic_c_by_layer": chosen_c or None,
        }
        logger.info("%s: held-out eval AUROC %.3f (%s, blocks.%d; precision@k %.2f, win %.2f), random max %.3f; "
                    "recipe (%s, blocks.%d, own eval AUROC %.3f) on all held-out rows %.3f", agg, rec.eval_auroc,
                    rec.method, rec.filter_layer, rec.eval_precision_at_k, rec.eval_pair_win_rate, max(rand),
                    recipe.method, recipe.filter_layer, recipe.eval_auroc, transfer["auroc"])
    write_results(args.name, {
        "config": vars(args), "model": loaded.identity.name, "pair_logistic_c_grid": list(C_GRID),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
        "vector_source": f"CAA generate sycophancy: {len(others)} items not held out, imported (trait_from_items); "
                         f"paired option-text responses of its extraction split ({len(trait.split_paired('extraction'))}"
                         " pairs) fit the vectors; its evaluation split feeds the recipe column only; its tuning split is unused",
        "held_out_source": f"CAA generate sycophancy, {len(pairs)} items (seed {args.seed}), as bench_filter_heldout",
        "extraction_feature_seconds": round(t_extract, 1), "seconds": round(time.perf_counter() - t_all, 1),
        "aggregators": rows}, machine_info())


if __name__ == "__main__":
    main()
