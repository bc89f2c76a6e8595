"""Capture-to-store throughput as a ratio of a bare forward pass over the same batches.

    python -m benchmarks.bench_capture [--models tinystories-656k,smollm2] [--repeats N] [--batches N] [--threads N]

For each model the same pre-tokenized padded batches go through three loops, interleaved per repeat after one
warm-up round so that drifts in machine load hit every mode alike:

- ``bare``: ``model(**inputs)`` under ``no_grad`` (the same inputs capture uses: ids, mask, position ids, no cache),
- ``bare_to_layer``: the same forward ended after the deepest captured block by a hook that only raises (what
  capture computes, with nothing captured): the reference for capture's own overhead,
- ``capture``: ``capture_batch`` (hooks, token selection, copy to CPU float32), activations dropped; it stops the
  forward after the deepest captured block (the LM head and later blocks are not needed), as it does by default,
- ``store``: ``capture_batch`` + ``ActivationStoreWriter.add`` + ``close`` (serialisation, sha256, fsync and the
  manifest in the writer's background thread, all inside the timed region).

The figure of merit is ``ratio_store = median(bare) / median(store)`` (throughput relative to a bare forward;
goal >= 0.95). Capture skips the LM head, so it can beat a full forward; ``ratio_store_vs_to_layer`` (relative to
``bare_to_layer``) is the pure overhead of hooks, copies and the store, and is reported beside it. On a shared machine whose load drifts, ``ratio_store_paired_median`` (median over repeats of
bare/store of the same repeat, run back to back) and the CPU-time ratios are the steadier readings; all are
kept. Results go to ``benchmarks/results/capture.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine_info, summarize, timed_both, write_results

logger = logging.getLogger("benchmarks.bench_capture")

MODELS = {
    "tinystories-656k": {
        "layers": "all",
        "batch_size": 8,
        "max_length": 128,
        "batches": 32,
        "repeats": 7,
        "shard_tokens": 8192,
    },
    "smollm2": {
        "layers": "7,15,23",
        "batch_size": 4,
        "max_length": 128,
        "batches": 4,
        "repeats": 3,
        "shard_tokens": 1024,
    },
}


def _texts(n: int) -> list[str]:
    """``n`` TinyStories passages of >= 700 characters (consecutive paragraphs joined), so that batches are full
    ``max_length=128``-token windows as in the reference timing (8 x 128 tokens)."""
    from difflib_models.paths import shared_dir

    path = shared_dir() / "data" / "tinystories" / "tiny_stories_smallGPT.txt"
    texts, current = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            current = f"{current} {line.strip()}".strip()
        if len(current) >= 700:
            texts.append(current)
            current = ""
    if len(texts) < n:
        texts = (texts * (n // max(len(texts), 1) + 1))[:n]
    return texts[:n]


def _load(name: str) -> Any:
    from difflib_models.models.loading import load_model
    from difflib_models.paths import shared_dir

    if name == "smollm2":
        return load_model(None)
    return load_model(shared_dir() / "models" / name)


def _batches(
    loaded: Any, texts: list[str], batch_size: int, max_length: int
) -> list[tuple[torch.Tensor, ...]]:
    from difflib_models.models.batching import pad_batch

    tok = loaded.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    out = []
    for lo in range(0, len(texts), batch_size):
        ids = tok(texts[lo : lo + batch_size], truncation=True, max_length=max_length)["input_ids"]
        out.append(pad_batch(ids, pad_token_id=pad, padding_side="right"))
    return out


def reference_forwards(model: Any, batches: Sequence[tuple[Any, Any]],
                       layers: Sequence[int]) -> tuple[Callable[[], None], Callable[[], None]]:
    """The two references a capture is timed against over ``batches``: the full bare forward, and the forward
    stopped after the deepest captured block (what capture itself runs)."""
    from difflib_models.capture.capture import StopForward, forward_inputs
    from difflib_models.models.hookpoints import get_block

    def bare() -> None:
        with torch.no_grad():
            for ids, am in batches:
                model(**forward_inputs(model, ids, am))

    def _stop(*_: Any) -> None:
        raise StopForward

    def bare_to_layer() -> None:
        handle = get_block(model, max(layers)).register_forward_hook(_stop)
        try:
            with torch.no_grad():
                for ids, am in batches:
                    try:
                        model(**forward_inputs(model, ids, am))
                    except StopForward:
                        pass
        finally:
            handle.remove()

    return bare, bare_to_layer


def bench_model(
    name: str, *, n_batches: int, repeats: int, shard_tokens: int, workdir: Path
) -> dict[str, Any]:
    from difflib_models.capture.capture import capture_batch
    from difflib_models.capture.pipeline import resolve_layers
    from difflib_models.models.compat import tokenizer_name, vocab_hash
    from difflib_models.store.writer import ActivationStoreWriter

    cfg = MODELS[name]
    loaded = _load(name)
    model = loaded.model.eval()
    layers = resolve_layers(cfg["layers"], loaded.n_layers)
    batches = _batches(loaded, _texts(n_batches * cfg["batch_size"]), cfg["batch_size"], cfg["max_length"])
    n_tokens = int(sum(int(am.sum()) for _, am in batches))
    bos = loaded.tokenizer.bos_token_id
    writer_kw = {
        "sides": ["model"],
        "layers": layers,
        "d_model": loaded.d_model,
        "identities": {"model": loaded.identity.to_dict()},
        "tokenizer_name": tokenizer_name(loaded.tokenizer),
        "vocab_hash": vocab_hash(loaded.tokenizer),
        "hook_points": loaded.hook_points.to_dict(),
        "shard_tokens": shard_tokens,
    }
    counter = {"run": 0, "stored_tokens": 0, "shards": 0}

    bare, bare_to_layer = reference_forwards(model, batches, layers)

    def capture_only() -> None:
        for ids, am in batches:
            capture_batch(model, ids, am, layers, bos_token_id=bos)

    def store() -> None:
        counter["run"] += 1
        out = workdir / f"{name}-{counter['run']}"
        with ActivationStoreWriter(out, **writer_kw) as writer:
            for k, (ids, am) in enumerate(batches):
                batch = capture_batch(model, ids, am, layers, bos_token_id=bos)
                writer.add(
                    list(range(k * cfg["batch_size"], k * cfg["batch_size"] + ids.shape[0])), {"model": batch}
                )
        counter["stored_tokens"] = writer.manifest.n_tokens
        counter["shards"] = len(writer.manifest.shards)

    modes = {"bare": bare, "bare_to_layer": bare_to_layer, "capture": capture_only, "store": store}
    times: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    for fn in modes.values():  # warm-up
        fn()
    for r in range(repeats):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))
        for mode in order:
            gc.collect()
            wall, cpu_s = timed_both(modes[mode])
            for leftover in workdir.glob(f"{name}-*"):  # deleting the store is not part of the timed work
                shutil.rmtree(leftover, ignore_errors=True)
            times[mode].append(wall)
            cpu[mode].append(cpu_s)
        logger.info("%s repeat %d: wall %s", name, r, {m: round(t[-1], 3) for m, t in times.items()})
    stats = {m: summarize(t) for m, t in times.items()}
    cpu_stats = {m: summarize(t) for m, t in cpu.items()}
    bare_med = stats["bare"]["median_s"]
    # each repeat runs the three modes back to back, so a per-repeat ratio compares runs under similar load
    paired = [b / s for b, s in zip(times["bare"], times["store"], strict=True)]
    paired_capture = [b / s for b, s in zip(times["bare"], times["capture"], strict=True)]
    result = {
        "model": loaded.identity.name,
        "weight_hash": loaded.identity.weight_hash,
        "n_layers": loaded.n_layers,
        "d_model": loaded.d_model,
        "layers": layers,
        "batch_size": cfg["batch_size"],
        "max_length": cfg["max_length"],
        "n_batches": len(batches),
        "n_tokens_forward": n_tokens,
        "n_tokens_stored": counter["stored_tokens"],
        "shard_tokens": shard_tokens,
        "n_shards": counter["shards"],
        "repeats": repeats,
        "times": stats,
        "tokens_per_s": {m: n_tokens / s["median_s"] for m, s in stats.items()},
        "ratio_capture": bare_med / stats["capture"]["median_s"],
        "ratio_store": bare_med / stats["store"]["median_s"],
        "ratio_store_min_times": stats["bare"]["min_s"] / stats["store"]["min_s"],
        "ratio_store_vs_to_layer": stats["bare_to_layer"]["median_s"] / stats["store"]["median_s"],
        "ratio_capture_vs_to_layer": stats["bare_to_layer"]["median_s"] / stats["capture"]["median_s"],
        "ratio_to_layer_vs_bare": bare_med / stats["bare_to_layer"]["median_s"],
        "ratio_store_paired_median": statistics.median(paired),
        "ratio_capture_paired_median": statistics.median(paired_capture),
        "cpu_times": cpu_stats,
        "ratio_store_cpu": cpu_stats["bare"]["median_s"] / cpu_stats["store"]["median_s"],
        "ratio_capture_cpu": cpu_stats["bare"]["median_s"] / cpu_stats["capture"]["median_s"],
        "goal_ratio_store": 0.95,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list of {sorted(MODELS)}")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 7 tiny, 3 smollm2)")
    parser.add_argument(
        "--batches", type=int, default=None, help="batches per run (default: 32 tiny, 4 smollm2)"
    )
    parser.add_argument(
        "--shard-tokens",
        type=int,
        default=None,
        help="tokens per shard (default 8192 tiny, 1024 smollm2): several shards per run, as in a long snapshot",
    )
    parser.add_argument("--out", default="capture", help="results name (benchmarks/results/<out>.json)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("DIFFLIB_MODELS_NO_PROGRESS", "1")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {sorted(MODELS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_capture_") as tmp:
        for name in names:
            n_batches = args.batches or MODELS[name]["batches"]
            repeats = args.repeats or MODELS[name]["repeats"]
            logger.info("benchmarking %s (%d batches x %d repeats)", name, n_batches, repeats)
            results[name] = bench_model(
                name,
                n_batches=n_batches,
                repeats=repeats,
                shard_tokens=args.shard_tokens or MODELS[name]["shard_tokens"],
                workdir=Path(tmp),
            )
            logger.info(
                "%s: store/bare throughput ratio %.3f (capture only %.3f)",
                name,
                results[name]["ratio_store"],
                results[name]["ratio_capture"],
            )
    path = write_results(
        args.out, {"description": __doc__.strip().splitlines()[0], "results": results}, machine
    )
    for name, res in results.items():
        print(
            f"{name}: bare {res['times']['bare']['median_s']:.3f}s  capture {res['times']['capture']['median_s']:.3f}s"
            f"  store {res['times']['store']['median_s']:.3f}s | store/bare: median {res['ratio_store']:.3f}"
            f" paired {res['ratio_store_paired_median']:.3f} cpu {res['ratio_store_cpu']:.3f}"
            f" | capture/bare: median {res['ratio_capture']:.3f} paired {res['ratio_capture_paired_median']:.3f}"
            f" | vs bare_to_layer: store {res['ratio_store_vs_to_layer']:.3f} capture {res['ratio_capture_vs_to_layer']:.3f}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
