"""Capture + store of other commits side by side with this checkout, in ONE process (for regressions).

    python -m benchmarks.capture_side_by_side --commits 0997d5e,d07ecd5 [--model tinystories-656k]
        [--rounds 9] [--batches 32] [--threads 1]

Each commit's ``difflib_models`` is exported with ``git archive`` into a temporary folder and imported under another
name (``dm_<commit>``, every ``difflib_models`` in its sources renamed), so the same loaded model and the same
padded batches go through every version's ``capture_batch`` and ``ActivationStoreWriter``, as in
``bench_capture``. Per round every mode runs once (``bare``, ``bare_to_layer``, then ``capture`` and ``store`` of
each version; the order rotates), so load drifts on a shared machine hit all alike. Printed: medians of wall and
CPU time, ratios to ``bare`` (median, paired per round, CPU). On a loaded machine the CPU ratios are the steady
reading. Nothing is written under ``benchmarks/results/`` and nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def export_version(commit: str, dest: Path) -> str:
    """``difflib_models`` at ``commit`` as the package ``dm_<commit>`` under ``dest``; returns its name."""
    name = "dm_" + re.sub(r"\W", "_", commit)
    data = subprocess.run(["git", "archive", commit, "difflib_models"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest / "src", filter="data")
    shutil.move(dest / "src" / "difflib_models", dest / name)
    for path in (dest / name).rglob("*.py"):
        path.write_text(re.sub(r"\bdifflib_models\b", name, path.read_text(encoding="utf-8")), encoding="utf-8")
    return name


def main(argv: list[str] | None = None) -> None:
    from benchmarks import bench_capture as bc
    from difflib_models.models.compat import tokenizer_name, vocab_hash

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commits", required=True, help="comma list of commits to compare with this checkout")
    p.add_argument("--model", default="tinystories-656k", choices=sorted(bc.MODELS))
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--batches", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a shared machine)")
    args = p.parse_args(argv)
    os.environ.setdefault("DIFFLIB_MODELS_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    cfg = bc.MODELS[args.model]
    with tempfile.TemporaryDirectory(prefix="capture_side_by_side_") as tmp_name:
        tmp = Path(tmp_name)
        sys.path.insert(0, str(tmp))
        versions = [export_version(c.strip(), tmp) for c in args.commits.split(",") if c.strip()]
        versions.append("difflib_models")
        loaded = bc._load(args.model)
        model = loaded.model.eval()
        n_layers = loaded.n_layers
        layers = list(range(n_layers)) if cfg["layers"] == "all" else [int(x) for x in cfg["layers"].split(",")]
        n_batches = args.batches or cfg["batches"]
        batches = bc._batches(loaded, bc._texts(n_batches * cfg["batch_size"]), cfg["batch_size"], cfg["max_length"])
        bos = loaded.tokenizer.bos_token_id
        writer_kw = {
            "sides": ["model"], "layers": layers, "d_model": loaded.d_model,
            "identities": {"model": loaded.identity.to_dict()}, "tokenizer_name": tokenizer_name(loaded.tokenizer),
            "vocab_hash": vocab_hash(loaded.tokenizer), "hook_points": loaded.hook_points.to_dict(),
            "shard_tokens": cfg["shard_tokens"],
        }
        stores = tmp / "stores"
        count = [0]

        bare, bare_to_layer = bc.reference_forwards(model, batches, layers)

        modes: dict[str, Callable[[], None]] = {"bare": bare, "bare_to_layer": bare_to_layer}
        for version in versions:
            capture = importlib.import_module(f"{version}.capture.capture")
            writer = importlib.import_module(f"{version}.store.writer")

            def run_capture(capture=capture) -> None:
                for ids, am in batches:
                    capture.capture_batch(model, ids, am, layers, bos_token_id=bos)

            def run_store(capture=capture, writer=writer) -> None:
                count[0] += 1
                with writer.ActivationStoreWriter(stores / f"s{count[0]}", **writer_kw) as w:
                    for k, (ids, am) in enumerate(batches):
                        batch = capture.capture_batch(model, ids, am, layers, bos_token_id=bos)
                        first = k * cfg["batch_size"]
                        w.add(list(range(first, first + ids.shape[0])), {"model": batch})

            modes[f"capture:{version}"] = run_capture
            modes[f"store:{version}"] = run_store
        for fn in modes.values():  # warm-up
            fn()
        wall: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        names = list(modes)
        for r in range(args.rounds):
            k = r % len(names)
            order = names[k:] + names[:k]
            for mode in order if r % 2 == 0 else order[::-1]:
                shutil.rmtree(stores, ignore_errors=True)
                gc.collect()
                w0, c0 = time.perf_counter(), time.process_time()
                modes[mode]()
                wall[mode].append(time.perf_counter() - w0)
                cpu[mode].append(time.process_time() - c0)
    med = {m: statistics.median(t) for m, t in wall.items()}
    cmed = {m: statistics.median(t) for m, t in cpu.items()}
    print(f"{args.model}, torch threads {torch.get_num_threads()}, {args.rounds} rounds, load {os.getloadavg()}")
    print(f"bare {med['bare']:.4f}s  bare_to_layer {med['bare_to_layer']:.4f}s (bare/to_layer {med['bare'] / med['bare_to_layer']:.3f})")
    for v in versions:
        label = "this checkout" if v == "difflib_models" else v
        for kind in ("store", "capture"):
            m = f"{kind}:{v}"
            paired = statistics.median(b / x for b, x in zip(wall["bare"], wall[m], strict=True))
            print(f"{label:24s} {kind}/bare: median {med['bare'] / med[m]:.3f} paired {paired:.3f} "
                  f"cpu {cmed['bare'] / cmed[m]:.3f} | vs bare_to_layer {med['bare_to_layer'] / med[m]:.3f}")


if __name__ == "__main__":
    main()
