"""Does the data filter rank answers its vector never saw? Held-out A/B rows per trait, on SmolLM2-135M-Instruct.

    python -m benchmarks.bench_filter_heldout [--traits sycophancy,hallucination,evil] [--caa-items 100]
        [--methods raw,proxy,exact] [--random 8] [--seed 0] [--aggregator mean_diff]
        [--cache /tmp/difflib_filter_heldout]

Per trait:
- vector: ``paired`` (response-averaged; ``--aggregator``, default the mean difference), every layer, fitted on the built-in trait's
  ``paired_responses`` EXTRACTION split only;
- held-out rows: A/B items the vector never saw, each answered with the text of its trait-matching option and with
  the other option's text (same prompt): sycophancy = a seeded sample of ``--caa-items`` CAA generate items
  (``../shared/data/caa``, Rimsky et al.); hallucination and evil = the built-in trait's A/B EVALUATION items
  (the CAA generate splits here hold no hallucination or evil set);
- protocol (:func:`~difflib_models.persona.filtering.validation.validate_for_filtering`): the pairs are split in two
  (seeded); the method (``raw`` / ``proxy`` / ``exact``) and the layer are chosen on the tuning half; AUROC,
  precision@k (k = matching rows) and the within-prompt win rate are reported on the evaluation half;
- baseline: ``--random`` norm-matched random directions from N(0, Sigma_hat) of the extraction features (within-
  class, shrinkage), through the same protocol (their own method/layer choice on the same tuning half);
- the product's recipe: the vector validated on the trait's paired EVALUATION split (as ``persona extract
  --mode paired`` records it) and its layer/method applied to the held-out rows (no choice on them at all).
Also the demo's check: the sycophancy vector with its recorded filter validation scores the demo's 48 inducing vs
48 neutral training rows. Activations are cached under ``--cache``. Results: ``benchmarks/results/
filter_heldout.json``; nothing is asserted (tests/persona/filtering/test_validation.py asserts at CI scale).
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

from benchmarks.common import machine_info, write_results
from difflib_models.paths import shared_dir

logger = logging.getLogger("benchmarks.bench_filter_heldout")
CAA = shared_dir() / "data" / "caa" / "generate"
"""CAA generate splits in the shared folder (``$DIFFLIB_MODELS_SHARED``, default ``../shared``)."""


def caa_items(name: str, n: int, seed: int) -> list[Any]:
    from difflib_models.persona.traits.schema import ABItem

    data = json.loads((CAA / name / "generate_dataset.json").read_text(encoding="utf-8"))
    idx = np.random.default_rng(seed).permutation(len(data))[:n]
    return [ABItem(question=data[i]["question"], matching=data[i]["answer_matching_behavior"],
                   not_matching=data[i]["answer_not_matching_behavior"]) for i in sorted(idx)]


def held_out_pairs(trait: Any, caa_n: int, seed: int) -> tuple[list[Any], str]:
    from difflib_models.persona.filtering.validation import pairs_from_ab

    if trait.id == "sycophancy" and (CAA / "sycophancy").is_dir():
        return pairs_from_ab(caa_items("sycophancy", caa_n, seed), id_prefix="caa/sycophancy"), \
            f"CAA generate sycophancy, {caa_n} items (seed {seed})"
    return pairs_from_ab(trait.split_ab("evaluation"), id_prefix=f"{trait.id}/ab"), \
        f"built-in {trait.id} A/B evaluation items"


def cached_features(loaded: Any, pairs: list[Any], layers: list[int], exact: bool, path: Path) -> Any:
    from safetensors.torch import load_file, save_file

    from difflib_models.persona.filtering.validation import PairFeatures, collect_features

    path = path.with_name(path.stem + ("_exact" if exact else "") + path.suffix)
    if path.is_file():
        return PairFeatures.from_tensors(load_file(str(path)))
    feats = collect_features(loaded, pairs, layers, exact=exact, batch_size=8, max_length=384)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(feats.to_tensors(), str(path))
    return feats


def fit_vector(loaded: Any, trait: Any, aggregator: str = "mean_diff"
               ) -> tuple[Any, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Paired vector on the extraction split; within-class extraction features (covariance) and orientation."""
    from difflib_models.persona.extraction.extractor import PersonaExtractor

    ext = PersonaExtractor(mode="paired", aggregator=aggregator, layers="all", batch_size=8,
                           show_progress=False).fit(loaded, trait)
    cov = {k: torch.cat([ext.pos_features_[k] - ext.pos_features_[k].mean(0),
                         ext.neg_features_[k] - ext.neg_features_[k].mean(0)]) for k in ext.layers_}
    orient = {k: ext.pos_features_[k].mean(0) - ext.neg_features_[k].mean(0) for k in ext.layers_}
    return ext.to_vector_set(), cov, orient


def parse_heldout_args(ap: argparse.ArgumentParser, name: str) -> argparse.Namespace:
    """The options every held-out filter benchmark shares; parses, sets up logging and seeds torch."""
    ap.add_argument("--caa-items", type=int, default=100)
    ap.add_argument("--methods", default="raw,proxy,exact")
    ap.add_argument("--random", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/difflib_filter_heldout")
    ap.add_argument("--name", default=name)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)
    return args


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traits", default="sycophancy,hallucination,evil")
    ap.add_argument("--aggregator", default="mean_diff", help="the paired vector's aggregator (extractor.AGGREGATORS)")
    args = parse_heldout_args(ap, "filter_heldout")

    from difflib_models.models.loading import load_model
    from difflib_models.persona.filtering.validation import (
        pair_scores,
        pairs_from_trait,
        random_direction_baseline,
        rank_metrics,
        validate_for_filtering,
    )
    from difflib_models.persona.traits import load_trait

    methods = tuple(m for m in args.methods.split(",") if m)
    exact = "exact" in methods
    loaded = load_model(None)
    cache = Path(args.cache) / loaded.identity.weight_hash[:12]
    results: dict[str, Any] = {}
    t_all = time.perf_counter()
    for trait_id in [t for t in args.traits.split(",") if t]:
        t0 = time.perf_counter()
        trait = load_trait(trait_id)
        vs, cov, orient = fit_vector(loaded, trait, args.aggregator)
        layers = vs.layers
        # the product's recipe: filter validation on the trait's own paired evaluation split
        own_pairs = pairs_from_trait(trait, "evaluation")
        own_feats = cached_features(loaded, own_pairs, layers, exact, cache / f"{trait_id}_paired_eval.safetensors")
        recipe = validate_for_filtering(vs, own_feats, methods=methods, seed=args.seed,
                                        source=f"{trait_id} paired_responses/evaluation")
        # held-out A/B rows
        pairs, source = held_out_pairs(trait, args.caa_items, args.seed)
        tag = f"{trait_id}_heldout_{len(pairs)}_s{args.seed}"
        feats = cached_features(loaded, pairs, layers, exact, cache / f"{tag}.safetensors")
        rec = validate_for_filtering(vs, feats, methods=methods, seed=args.seed, source=source)
        rand = random_direction_baseline(vs, feats, cov, orient=orient, n_draws=args.random, methods=methods,
                                         seed=args.seed)
        # the recipe's layer and method applied unchanged to ALL held-out rows (no choice made on them)
        transfer = rank_metrics(*pair_scores(feats, recipe.filter_layer, vs.unit(recipe.filter_layer),
                                             recipe.method))
        by_method = {m: rank_metrics(*pair_scores(feats, recipe.filter_layer, vs.unit(recipe.filter_layer), m))
                     for m in methods}
        results[trait_id] = {
            "held_out_source": source, "n_pairs": len(pairs), "vector": f"paired {args.aggregator}, built-in "
            f"{trait_id} paired_responses extraction split ({vs.n_pos} pairs)",
            "heldout_protocol": {**rec.to_dict(), "random_eval_auroc": rand,
                                 "random_eval_auroc_max": max(rand), "random_eval_auroc_mean": float(np.mean(rand)),
                                 "beats_every_random": bool(rec.eval_auroc > max(rand))},
            "recipe": recipe.to_dict(),
            "recipe_on_heldout": {"layer": recipe.filter_layer, "method": recipe.method, **transfer,
                                  "by_method_at_recipe_layer": by_method},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        logger.info("%s: held-out eval AUROC %.3f (%s, blocks.%d), random max %.3f; recipe (blocks.%d %s) on "
                    "held-out AUROC %.3f", trait_id, rec.eval_auroc, rec.method, rec.filter_layer, max(rand),
                    recipe.filter_layer, recipe.method, transfer["auroc"])
        if trait_id == "sycophancy":
            results[trait_id]["demo_rows"] = demo_rows(loaded, vs, recipe)
    write_results(args.name, {"config": vars(args), "model": loaded.identity.name,
                              "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
                              "seconds": round(time.perf_counter() - t_all, 1), "traits": results},
                  machine_info())


def demo_rows(loaded: Any, vs: Any, recipe: Any) -> dict[str, Any]:
    """The demo's 48 inducing vs 48 neutral rows, scored by the filter with the recorded layer and method."""
    from difflib_models.datasets import load_dataset
    from difflib_models.persona.filtering.scoring import FilterConfig, filter_samples, samples_from_rows
    from difflib_models.persona.filtering.validation import rank_metrics, with_filter_validation

    vs = with_filter_validation(vs, recipe)
    cfg = FilterConfig(method=recipe.method if recipe.method != "raw" else "proxy", mode="report", max_length=256,
                       n_bootstrap=0)
    scores = {}
    for name in ("sycophancy-inducing", "sycophancy-neutral"):
        res = filter_samples(loaded, vs, samples_from_rows(load_dataset(name)[:48], name=name), cfg)
        scores[name] = np.array([r.delta_p for r in res.records])
    return {"layer": recipe.filter_layer, "method": cfg.method,
            **rank_metrics(scores["sycophancy-inducing"], scores["sycophancy-neutral"])}


if __name__ == "__main__":
    main()
