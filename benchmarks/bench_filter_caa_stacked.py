"""The product's filter recipe with STACKED readouts on an imported CAA behaviour, ranked on held-out CAA answers.

    python -m benchmarks.bench_filter_caa_stacked [--behaviour sycophancy] [--seeds 0,1,2] [--caa-items 100]
        [--random 20] [--cache /tmp/difflib_filter_heldout] [--name filter_caa_stacked]

The recipe was developed on ``sycophancy`` (the default); the other CAA generate splits (``survival-instinct``,
``myopic-reward``, ...) are behaviours it was not developed on (default name ``filter_caa_stacked_<behaviour>``).
Per split seed (SmolLM2-135M-Instruct):
- held-out rows: a seeded sample of ``--caa-items`` items of the behaviour's CAA generate split (for sycophancy the
  same sample as ``benchmarks.bench_filter_heldout`` / ``bench_filter_heldout_caa``), each answered with the
  matching option's text and with the other's, same prompt;
- the OTHER items imported as a trait (:func:`~difflib_models.persona.traits.importers.trait_from_items`:
  extraction / tuning / evaluation 0.5 / 0.25 / 0.25); no held-out item is in the import (checked);
- the vector file ``persona extract --mode paired --aggregator logistic`` would write: one logistic direction per
  block from the EXTRACTION split's response-token means;
- its filter validation exactly as ``persona extract`` records it
  (:func:`~difflib_models.persona.filtering.validation.validate_with_readouts`, methods proxy and raw): the file's
  per-block directions and the stacked readouts fitted on the extraction + tuning pairs compete on a tuning half of
  the import's EVALUATION split; the winner's evaluation-half AUROC is the record's;
- the winner (readout and method) applied unchanged to ALL held-out rows: AUROC, precision@k, within-prompt win
  rate. No choice is made on the held-out rows;
- for comparison, the single-block recipe (the file's directions only,
  :func:`~difflib_models.persona.filtering.validation.validate_for_filtering`) applied the same way;
- null: ``--random`` random directions over the winner's blocks, drawn with the covariance of the fitting pairs'
  features (``u = X_c^T g``, ``X_c`` the class-centred stacked features, ``g ~ N(0, I)``), oriented toward the
  trait by the mean difference, scored with the winner's method on all held-out rows.
- the wording check (:mod:`difflib_models.persona.filtering.surface`): the record gets the product's
  ``surface_auroc`` / ``eval_word_stratified_auroc`` on the import's evaluation half
  (:func:`~difflib_models.persona.filtering.validation.wording_check`, as ``persona extract`` adds them); on the
  held-out rows, ``surface_heldout`` is a first-word + length classifier fitted on the fitting pairs, and
  ``word_stratified_auroc`` each scorer's AUROC among answers that start with the same word (``survival-instinct``'s
  matching answer starts with "Yes" 410 times in 903, with "No" 161 times);
Features (response-token means and last prompt token, every block, the product's
:func:`~difflib_models.persona.filtering.validation.collect_features`) of all the split's items are cached under
``--cache``. Results: ``benchmarks/results/{name}.json``; nothing is asserted (the figures are read back by
``tests/persona/filtering/test_readout.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench_filter_heldout import cached_features
from benchmarks.bench_filter_heldout_caa import CAA_BEHAVIOURS, caa_items, split_caa
from benchmarks.common import int_list, machine_info, write_results

logger = logging.getLogger("benchmarks.bench_filter_caa_stacked")

METHODS = ("proxy", "raw")
"""The methods ``persona extract`` validates a filter vector with (``filter_validate_trait``'s default)."""


def covariance_nulls(fit: Any, layers: list[int], n: int, seed: int) -> list[Any]:
    """``n`` random readouts over ``layers`` with the covariance of the class-centred fitting features."""
    from difflib_models.persona.filtering.readout import Readout

    pos = torch.cat([fit.matching[k].double() for k in layers], -1)
    neg = torch.cat([fit.other[k].double() for k in layers], -1)
    xc = torch.cat([pos - pos.mean(0), neg - neg.mean(0)])
    diff = pos.mean(0) - neg.mean(0)
    gen = torch.Generator().manual_seed(seed)
    d = int(fit.matching[layers[0]].shape[-1])
    out = []
    for _ in range(n):
        u = xc.T @ torch.randn(xc.shape[0], generator=gen, dtype=torch.float64)
        u = u if float(u @ diff) >= 0 else -u
        out.append(Readout({k: u[i * d:(i + 1) * d] for i, k in enumerate(layers)}))
    return out


def surface_figures(pairs: list[Any], fit_idx: list[int], held_idx: list[int], scored: dict[str, Any],
                    nulls: list[Any]) -> dict[str, Any]:
    """The wording check on the held-out rows: the first-word + length classifier fitted on the fitting pairs
    (:mod:`difflib_models.persona.filtering.surface`), and each scorer's AUROC among answers that start with the
    same word (``scored``: name -> (matching scores, other scores); ``nulls``: the random readouts' scores)."""
    from difflib_models.persona.filtering import surface as sf
    from difflib_models.persona.filtering.validation import rank_metrics

    fit_p, held_p = [pairs[i] for i in fit_idx], [pairs[i] for i in held_idx]
    base = sf.fit_surface([p.matching for p in fit_p], [p.other for p in fit_p])
    m_txt, o_txt = [p.matching for p in held_p], [p.other for p in held_p]
    scored = {**scored, "surface": (base.score(m_txt), base.score(o_txt))}
    strat = {name: sf.stratified_auroc(m, o, m_txt, o_txt) for name, (m, o) in scored.items()}
    null_strat = [sf.stratified_auroc(m, o, m_txt, o_txt)[0] for m, o in nulls]
    null_strat = [x for x in null_strat if x is not None]
    return {
        "surface_heldout": rank_metrics(*scored["surface"]),
        "surface_vocab": list(base.vocab),
        "word_stratified_auroc": {name: a for name, (a, _) in strat.items()},
        "word_stratified_covered": strat["surface"][1],
        "random_null_word_stratified_max": max(null_strat) if null_strat else None,
    }


def run_seed(loaded: Any, feats: Any, items: list[Any], pairs: list[Any], seed: int, n_held: int, n_random: int,
             behaviour: str = "sycophancy") -> dict[str, Any]:
    """One split seed (``items`` and ``pairs``: the split's A/B items and their answer pairs, in file order, the
    rows of ``feats``)."""
    from difflib_models.persona.extraction.extractor import aggregate
    from difflib_models.persona.extraction.vectors import PersonaVectorSet
    from difflib_models.persona.filtering import validation as fv
    from difflib_models.persona.filtering.readout import Readout
    from difflib_models.persona.filtering.validation import subset_pairs as subset
    from difflib_models.persona.traits.importers import trait_from_items

    where = {it.question: i for i, it in enumerate(items)}
    held, others = split_caa(n_held, seed, behaviour)
    held_idx = [where[it.question] for it in held]
    trait = trait_from_items(others, trait_id=f"{behaviour.lower()}-caa",
                             source=f"CAA generate {behaviour} (not held out)")
    split = {s: [where[p.prompt] for p in trait.split_paired(s)] for s in ("extraction", "tuning", "evaluation")}
    used = set().union(*split.values())
    if used & set(held_idx):
        raise SystemExit(f"seed {seed}: {len(used & set(held_idx))} held-out items are in the import")
    ext, ev = subset(feats, split["extraction"]), subset(feats, split["evaluation"])
    fit, held_f = subset(feats, split["extraction"] + split["tuning"]), subset(feats, held_idx)
    vs = PersonaVectorSet(trait_id=trait.id, vectors={k: aggregate(ext.matching[k], ext.other[k], "logistic")
                                                      for k in feats.layers},
                          model=loaded.identity, mode="paired", aggregator="logistic")
    t0 = time.perf_counter()
    record, readout = fv.validate_with_readouts(vs, ev, fit, methods=METHODS, source=f"import seed {seed}")
    seconds = time.perf_counter() - t0
    chosen = readout or Readout.single(record.filter_layer, vs.unit(record.filter_layer))
    # the wording check persona extract adds to the record (filter_validate_trait)
    record = fv.wording_check(record, chosen, ev, [pairs[i] for i in split["evaluation"]],
                              [pairs[i] for i in split["extraction"] + split["tuning"]])
    held_scores = fv.readout_scores(held_f, chosen, record.method)
    on_held = fv.rank_metrics(*held_scores)
    single = fv.validate_for_filtering(vs, ev, methods=METHODS, source=f"import seed {seed}")
    single_scores = fv.pair_scores(held_f, single.filter_layer, vs.unit(single.filter_layer), single.method)
    single_held = fv.rank_metrics(*single_scores)
    null_scores = [fv.readout_scores(held_f, r, record.method)
                   for r in covariance_nulls(fit, chosen.layers, n_random, seed)]
    nulls = [fv.rank_metrics(*s)["auroc"] for s in null_scores]
    wording = surface_figures(pairs, split["extraction"] + split["tuning"], held_idx,
                              {"readout": held_scores, "single_block": single_scores}, null_scores)
    logger.info("seed %d: %s (%s) held-out AUROC %.3f; single block %d (%s) %.3f; null max %.3f", seed,
                chosen.label, record.method, on_held["auroc"], single.filter_layer, single.method,
                single_held["auroc"], max(nulls) if nulls else float("nan"))
    return {
        "seed": seed, "n_held_out": len(held_idx), "n_fit_pairs": len(fit), "n_evaluation_pairs": len(ev),
        "record": record.to_dict(), "readout": chosen.label, "readout_layers": chosen.layers,
        "method": record.method, "validation_seconds": round(seconds, 1),
        "heldout": on_held,
        "single_block_record": single.to_dict(),
        "single_block_heldout": single_held,
        "random_null_heldout_auroc": {"n": len(nulls), "max": max(nulls) if nulls else None,
                                      "mean": float(np.mean(nulls)) if nulls else None,
                                      "values": [round(x, 4) for x in nulls]},
        **wording,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--behaviour", default="sycophancy", choices=CAA_BEHAVIOURS)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--caa-items", type=int, default=100)
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--cache", default=os.environ.get("DIFFLIB_FILTER_CACHE", "/tmp/difflib_filter_heldout"))
    ap.add_argument("--name", default=None, help="default filter_caa_stacked[_<behaviour> unless sycophancy]")
    args = ap.parse_args()
    if args.name is None:
        args.name = "filter_caa_stacked" + ("" if args.behaviour == "sycophancy" else f"_{args.behaviour}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    machine = machine_info()
    t0 = time.perf_counter()
    from difflib_models.models.loading import load_model
    from difflib_models.persona.filtering.validation import pairs_from_ab

    loaded = load_model(None)
    items = caa_items(behaviour=args.behaviour)
    layers = list(range(loaded.n_layers))
    cache = Path(args.cache) / loaded.identity.weight_hash[:12]
    pairs = pairs_from_ab(items, id_prefix=f"caa/{args.behaviour}/all")
    feats = cached_features(loaded, pairs, layers, False, cache / f"caa_{args.behaviour}_all_{len(items)}.safetensors")
    feature_seconds = time.perf_counter() - t0
    seeds = int_list(args.seeds, "--seeds")
    runs = [run_seed(loaded, feats, items, pairs, s, args.caa_items, args.random, args.behaviour) for s in seeds]
    held = [r["heldout"]["auroc"] for r in runs]
    write_results(args.name, {
        "config": vars(args), "behaviour": args.behaviour, "n_items": len(items), "model": loaded.identity.name,
        "methods": list(METHODS),
        "feature_seconds": round(feature_seconds, 1), "seconds": round(time.perf_counter() - t0, 1),
        "runs": runs,
        "summary": {
            "heldout_auroc": held, "min_heldout_auroc": min(held),
            "single_block_heldout_auroc": [r["single_block_heldout"]["auroc"] for r in runs],
            "random_null_max": [r["random_null_heldout_auroc"]["max"] for r in runs],
            "surface_heldout_auroc": [r["surface_heldout"]["auroc"] for r in runs],
            "word_stratified_auroc": [r["word_stratified_auroc"]["readout"] for r in runs],
            "beats_surface_every_seed": all(r["heldout"]["auroc"] > r["surface_heldout"]["auroc"] for r in runs),
            "goal": 0.9, "goal_met_every_seed": all(a >= 0.9 for a in held),
        },
    }, machine)


if __name__ == "__main__":
    main()
