"""Why the sycophancy and hallucination organisms have no open behavioural twin: their open shift split by polarity.

    python -m benchmarks.bench_behaviour_polarity [--work W] [--name behaviour_polarity]

``W`` is a ``bench_behaviour_open`` work dir (its adapters are read, nothing is trained). For the sycophancy and
hallucination behaviour items (12 whose trait-matching answer starts with "Yes", 12 with "No"), every suite case's
mean open shift (candidate - base, :func:`difflib_models.gate.ab_scoring.open_scores`) on each half. A model that
learned to answer "Yes" rises on the "yes" half and falls on the "no" half, and the balanced mean cancels it; a
model that learned the trait rises on both. Nothing is asserted. Results: ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.bench_behaviour_open import KINDS, _adapted, case_name
from benchmarks.common import int_list, load_average, machine_info, write_results
from benchmarks.organism_data import SET_TRAIT

log = logging.getLogger("benchmarks.bench_behaviour_polarity")

ITEM_SETS = ("sycophancy", "hallucination")


def main(argv: Sequence[str] | None = None) -> int:
    from difflib_models.gate.ab_scoring import open_scores
    from difflib_models.gate.behavioural import load_behaviour_items
    from difflib_models.models.loading import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/difflib_behaviour_open", help="bench_behaviour_open's --work")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--name", default="behaviour_polarity")
    ap.add_argument("--sets", default=",".join(SET_TRAIT), help="suite sets (benchmarks/organism_data.py)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work, seeds = Path(args.work), int_list(args.seeds, "--seeds")
    load_start, t0 = load_average(), time.perf_counter()
    items = {t: load_behaviour_items(t) for t in ITEM_SETS}
    every = [it for t in ITEM_SETS for it in items[t]]
    base = load_model(None)
    base_scores = open_scores(base.model, base.tokenizer, every)
    cases = [(t, k, s) for s in seeds for t in args.sets.split(",") if t for k in KINDS
             if (work / case_name(t, k, s) / "adapter_config.json").is_file()]
    records = {}
    for case in cases:
        m = _adapted(work / case_name(*case))
        diffs = [c - b for c, b in zip(open_scores(m.model, m.tokenizer, every), base_scores, strict=True)]
        per, start = {}, 0
        for t in ITEM_SETS:
            mine = list(zip(diffs[start:start + len(items[t])], items[t], strict=True))
            start += len(items[t])
            per[t] = {pol: statistics.fmean(d for d, it in mine if it.matching_polarity == pol) for pol in ("yes", "no")}
        records[case_name(*case)] = {"trait": SET_TRAIT[case[0]], "set": case[0], "kind": case[1], "seed": case[2],
                                     "open_shift_by_polarity": per}
        log.info("%s: %s", case_name(*case), {t: {k: round(v, 3) for k, v in d.items()} for t, d in per.items()})
    write_results(args.name, {"config": vars(args), "seconds": round(time.perf_counter() - t0, 1),
                              "load_average_at_start": load_start, "records": records}, machine_info())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
