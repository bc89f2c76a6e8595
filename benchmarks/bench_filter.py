"""Data-filter cost on SmolLM2-135M-Instruct: proxy throughput vs a bare forward, exact cost, extraction time.

    python -m benchmarks.bench_filter [--samples N] [--exact-samples N] [--repeats N] [--threads N]

- ``bare``: full forward passes (``use_cache=False``, no grad) over the same encoded samples in the same batches
  (right padding, grouped by length) as the filter uses.
- ``proxy``: :func:`difflib_models.persona.filtering.scoring.filter_samples` with ``method="proxy"`` over those samples,
  everything included (chat encoding, forwards, projections, selection). It stops each forward after the chosen
  block, so its cost depends on the layer: measured at the selected layer and at the last block (no saving).
  Figure of merit: ``ratio = median(bare) / median(proxy)`` (throughput relative to a bare forward; goal >= 0.9).
- ``exact``: ``method="exact"`` (greedy answers of ``max_new_tokens`` tokens, then a scoring forward) on a
  measured subset, extrapolated linearly to 1,000 samples (the JSON says so).
- ``extraction``: ``PersonaExtractor(mode=--mode, layers="all").fit`` on a built-in trait (default: sycophancy,
  mode ``paired``: the trait file's paired responses, response-averaged like the filter's projections).
Also records precision@k of the proxy and exact scores on the mixed inducing + neutral set. Runs are interleaved
per repeat; nothing is asserted. Results: ``benchmarks/results/filter.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from benchmarks.common import machine_info, summarize, timed_both, write_results

logger = logging.getLogger("benchmarks.bench_filter")


def _precision_at_k(records: Sequence[Any], labels: np.ndarray) -> float:
    d = np.array([r.delta_p for r in records])
    k = int(labels.sum())
    return float(labels[np.argsort(-d, kind="stable")[:k]].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=48, help="inducing + neutral samples (half each)")
    parser.add_argument("--exact-samples", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    parser.add_argument("--trait", default="sycophancy")
    parser.add_argument("--mode", default="paired", help="extraction mode of the filter's vector")
    args = parser.parse_args()
    os.environ.setdefault("DIFFLIB_MODELS_NO_PROGRESS", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info()

    from difflib_models.datasets import load_dataset
    from difflib_models.models.batching import pad_batch
    from difflib_models.models.loading import load_model
    from difflib_models.persona.extraction.extractor import PersonaExtractor
    from difflib_models.persona.filtering.scoring import (
        FilterConfig,
        encode_sample,
        filter_samples,
        samples_from_rows,
    )
    from difflib_models.persona.traits.chat import pad_id

    loaded = load_model(None)
    trait = args.trait
    extractor = PersonaExtractor(mode=args.mode, layers="all", show_progress=False)
    t_extract, cpu_extract = timed_both(lambda: extractor.fit(loaded, trait))
    layer = int(loaded.n_layers * 0.4)
    vs = extractor.to_vector_set(selected_layer=layer, selection_reason="benchmark: fixed at 40% depth")

    half = args.samples // 2
    rows = load_dataset(f"{trait}-inducing")[:half] + load_dataset(f"{trait}-neutral")[:half]
    labels = np.array([1] * half + [0] * half)
    samples = samples_from_rows(rows)
    cfg = FilterConfig(method="proxy", n_bootstrap=0, batch_size=8)
    pairs = [encode_sample(loaded.tokenizer, s, cfg.max_length) for s in samples]
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].ids))
    batches = [
        pad_batch(
            [pairs[i].ids for i in order[j : j + cfg.batch_size]], pad_token_id=pad_id(loaded.tokenizer)
        )
        for j in range(0, len(order), cfg.batch_size)
    ]

    def bare() -> None:
        with torch.no_grad():
            for ids, mask in batches:
                loaded.model(input_ids=ids, attention_mask=mask, use_cache=False)

    last = loaded.n_layers - 1
    runs: dict[str, list[tuple[float, float]]] = {
        "bare": [],
        f"proxy_layer{layer}": [],
        f"proxy_layer{last}": [],
    }
    result: dict[str, Any] = {}
    bare()  # warm-up
    for _ in range(args.repeats):
        runs["bare"].append(timed_both(bare))
        for name, lay in ((f"proxy_layer{layer}", layer), (f"proxy_layer{last}", last)):
            runs[name].append(
                timed_both(
                    lambda lay=lay: result.__setitem__(
                        lay, filter_samples(loaded, vs, samples, cfg, layer=lay)
                    )
                )
            )
    wall = {k: summarize([w for w, _ in v]) for k, v in runs.items()}
    cpu = {k: summarize([c for _, c in v]) for k, v in runs.items()}
    ratios = {k: wall["bare"]["median_s"] / wall[k]["median_s"] for k in runs if k != "bare"}
    ratios_cpu = {k: cpu["bare"]["median_s"] / cpu[k]["median_s"] for k in runs if k != "bare"}

    n_exact = min(args.exact_samples, len(samples))
    sub = samples[: n_exact // 2] + samples[half : half + n_exact - n_exact // 2]
    sub_labels = np.array([1] * (n_exact // 2) + [0] * (n_exact - n_exact // 2))
    exact_cfg = FilterConfig(method="exact", n_bootstrap=0, batch_size=8, max_new_tokens=48)
    box: dict[str, Any] = {}
    t_exact, cpu_exact = timed_both(lambda: box.__setitem__("r", filter_samples(loaded, vs, sub, exact_cfg)))
    proxy_sub = filter_samples(loaded, vs, sub, cfg)

    payload = {
        "model": loaded.identity.name,
        "trait": trait,
        "n_samples": len(samples),
        "tokens": int(sum(len(p.ids) for p in pairs)),
        "batch_size": cfg.batch_size,
        "selected_layer": layer,
        "n_layers": loaded.n_layers,
        "wall": wall,
        "cpu": cpu,
        "proxy_throughput_ratio_vs_bare": ratios,
        "proxy_throughput_ratio_vs_bare_cpu": ratios_cpu,
        "goal_ratio": 0.9,
        "exact": {
            "measured_samples": n_exact,
            "max_new_tokens": exact_cfg.max_new_tokens,
            "wall_s": t_exact,
            "cpu_s": cpu_exact,
            "seconds_per_1000_samples_extrapolated": t_exact / n_exact * 1000.0,
            "note": f"extrapolated linearly from {n_exact} measured samples",
        },
        "extraction": {
            "trait": trait,
            "mode": args.mode,
            "layers": "all",
            "wall_s": t_extract,
            "cpu_s": cpu_extract,
            "n_pos": extractor.n_pos_,
            "n_neg": extractor.n_neg_,
        },
        "precision_at_k": {
            "proxy_full_set": {str(k): _precision_at_k(v.records, labels) for k, v in result.items()},
            "proxy_exact_subset": _precision_at_k(proxy_sub.records, sub_labels),
            "exact_subset": _precision_at_k(box["r"].records, sub_labels),
            "k": "number of inducing samples",
        },
    }
    path = write_results("filter", payload, machine)
    logger.warning("wrote %s", path)
    print(
        f"proxy/bare ratio: {ratios}; exact s/1000: {payload['exact']['seconds_per_1000_samples_extrapolated']:.0f};"
        f" extraction {t_extract:.1f}s; precision@k {payload['precision_at_k']}"
    )


if __name__ == "__main__":
    main()
