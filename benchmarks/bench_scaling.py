"""How the cost of writing activations grows with the number of tokens: time and peak memory of ``snapshot``
(one model into a store) and ``harvest_paired`` (base + fine-tuned into a paired store) at several sizes.

    python -m benchmarks.bench_scaling [--model smollm2|tinystories-656k] [--sizes 16,32,64,128] [--layers mid]

Every (mode, size) point runs in a fresh subprocess so that its peak resident memory (``VmHWM``) is its own; the
RSS right after loading the model(s) is recorded too, so ``peak - loaded`` is what the capture itself added.
Fitted per mode: seconds per 1,000 tokens (least squares through the points) and the largest
``(peak - loaded)`` growth per 1,000 tokens. Results: ``benchmarks/results/scaling.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import int_list, machine_info, write_results

logger = logging.getLogger("benchmarks.bench_scaling")

MODES = ("snapshot", "harvest")


def _rss_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process in MiB (Linux); None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _texts(n: int) -> list[str]:
    from difflib_models.paths import shared_dir

    path = shared_dir() / "data" / "tinystories" / "tiny_stories_smallGPT.txt"
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if len(ln.strip()) > 200]
    lines = (lines * (n // max(len(lines), 1) + 1))[:n]
    return lines


def _load(model: str) -> Any:
    from difflib_models.models.loading import load_model
    from difflib_models.paths import shared_dir

    return load_model(None if model == "smollm2" else shared_dir() / "models" / model)


def one_point(
    mode: str, model: str, n_texts: int, layers: str, max_length: int, workdir: Path
) -> dict[str, Any]:
    """Measure one (mode, size) point in this process."""
    from difflib_models.capture.pipeline import snapshot
    from difflib_models.diffing.harvest import harvest_paired
    from difflib_models.diffing.pair import ModelPair

    texts = _texts(n_texts)
    loaded = _load(model)
    other = _load(model) if mode == "harvest" else None
    rss_loaded = _rss_mb("VmRSS")
    out = workdir / f"{mode}-{n_texts}"
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "snapshot":
        store = snapshot(loaded, texts, layers, out, batch_size=8, max_length=max_length)
    else:
        store = harvest_paired(
            ModelPair(base=loaded, finetuned=other), texts, layers, out, batch_size=8, max_length=max_length
        )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    result = {
        "mode": mode,
        "n_texts": n_texts,
        "n_tokens": int(store.n_tokens),
        "layers": list(store.layers),
        "wall_s": wall,
        "cpu_s": cpu,
        "store_bytes": size,
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": _rss_mb("VmHWM"),
    }
    shutil.rmtree(out, ignore_errors=True)
    return result


def _fit(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys on xs (None with fewer than two distinct xs)."""
    n = len(xs)
    if n < 2 or len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 | tinystories-656k | stories260k")
    parser.add_argument("--sizes", default="16,32,64,128", help="comma list of text counts")
    parser.add_argument("--layers", default="mid", help="layers to capture ('mid', 'all', '3,7')")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: "mode:size", prints JSON
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("DIFFLIB_MODELS_NO_PROGRESS", "1")

    if args.one:
        mode, size = args.one.split(":")
        res = one_point(mode, args.model, int(size), args.layers, args.max_length, Path(args.workdir))
        print("RESULT " + json.dumps(res))
        return

    sizes = int_list(args.sizes, "--sizes")
    modes = [m for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not sizes or min(sizes) < 1:
        parser.error(f"modes must be among {MODES} and sizes positive integers")
    machine = machine_info()
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
        for mode in modes:
            for size in sizes:
                cmd = [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_scaling",
                    "--model",
                    args.model,
                    "--layers",
                    args.layers,
                    "--max-length",
                    str(args.max_length),
                    "--one",
                    f"{mode}:{size}",
                    "--workdir",
                    tmp,
                ]
                proc = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    check=False,
                    cwd=Path(__file__).resolve().parent.parent,
                )
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    logger.error("%s at %d texts failed: %s", mode, size, proc.stderr[-800:])
                    points.append({"mode": mode, "n_texts": size, "error": proc.stderr[-800:]})
                    continue
                res = json.loads(line[len("RESULT ") :])
                logger.info(
                    "%s %d texts: %d tokens, %.2f s, peak %.0f MiB",
                    mode,
                    size,
                    res["n_tokens"],
                    res["wall_s"],
                    res["peak_rss_mb"] or -1,
                )
                points.append(res)
    fits: dict[str, Any] = {}
    for mode in modes:
        ok = [p for p in points if p["mode"] == mode and "error" not in p]
        ktok = [p["n_tokens"] / 1000.0 for p in ok]
        wall = _fit(ktok, [p["wall_s"] for p in ok])
        cpu = _fit(ktok, [p["cpu_s"] for p in ok])
        grow = [
            ((p["peak_rss_mb"] or 0) - (p["rss_loaded_mb"] or 0)) / max(k, 1e-9)
            for p, k in zip(ok, ktok, strict=True)
        ]
        fits[mode] = {
            "time_per_token_s": wall / 1000.0 if wall is not None else None,
            "wall_s_per_1k_tokens": wall,
            "cpu_s_per_1k_tokens": cpu,
            "peak_rss_mb_per_1k_tokens": max(grow) if grow else None,
            "store_bytes_per_token": (
                sum(p["store_bytes"] for p in ok) / max(1, sum(p["n_tokens"] for p in ok)) if ok else None
            ),
            "ratio_time_largest_vs_smallest_per_token": (
                (ok[-1]["wall_s"] / ok[-1]["n_tokens"]) / (ok[0]["wall_s"] / ok[0]["n_tokens"])
                if len(ok) >= 2
                else None
            ),
        }
    path = write_results(
        "scaling",
        {
            "description": __doc__.strip().splitlines()[0],
            "model": args.model,
            "layers": args.layers,
            "max_length": args.max_length,
            "points": points,
            "fits": fits,
            "notes": "peak_rss_mb is the process high-water mark (model load included); rss_loaded_mb is after "
            "loading. A per-token time ratio near 1 means cost grows linearly with tokens.",
        },
        machine,
    )
    for mode, f in fits.items():
        print(
            f"{mode}: {f['wall_s_per_1k_tokens']} s per 1k tokens, store {f['store_bytes_per_token']} B/token, "
            f"peak growth {f['peak_rss_mb_per_1k_tokens']} MiB per 1k tokens"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
