"""Release-gate wall time on SmolLM2-135M-Instruct with the shipped default policy, and HTML render time of a
report with 1,000 crosscoder latents.

    python -m benchmarks.bench_gate [--latents 1000] [--repeats 3] [--skip-smollm2]

- ``html``: a report with N latents (3 max-activating contexts of 16 tokens each, 4N relative decoder norms, two
  persona traits with projections and nulls, a monitor series, drift over 30 layers); median wall/CPU seconds of
  ``render_html`` and of ``write_report`` (JSON + HTML + Markdown + JUnit), and the HTML size.
- ``gate``: ``run_gate`` with the default policy, base = candidate = SmolLM2 (the worst case for time: the
  default policy computes everything it can; nothing short-circuits). ``cold``: an empty vector cache, the gate
  extracts the two persona vectors on the base (quick validation) and caches them; ``warm``: the next gate on the
  same base, vectors from the cache; ``files``: vectors from the cold run's files with ``--vectors``. Each records
  wall and CPU seconds, the report's per-stage ``timings`` and where the vectors came from.

Results go to ``benchmarks/results/gate.json`` with the machine description (CPU count, load average: the
development machine is shared, so compare CPU seconds as well as wall seconds). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info, summarize, timed_both, write_results

logger = logging.getLogger("benchmarks.bench_gate")


def synthetic_report(n_latents: int, seed: int = 0) -> dict[str, Any]:
    from difflib_models.report.builder import new_report

    rng = random.Random(seed)
    ident = {"name": "base", "source": "hf_dir", "path": None, "weight_hash": "0" * 64}
    report = new_report(
        "gate",
        base=ident,
        candidate={**ident, "name": "candidate", "weight_hash": "1" * 64},
        hook_points={"block_path": "model.layers", "n_layers": 30},
    )
    words = ["the", " cat", " <script>", " sat", " on", " a", " mat", " &", ' "quoted"', " end"]
    report["crosscoder"] = {
        "metrics": {"fve": 0.8, "l0": 32.0},
        "latent_classes": {"shared": n_latents // 2, "ft_only": n_latents // 4, "base_only": n_latents // 4},
        "relative_decoder_norms": [rng.random() for _ in range(4 * n_latents)],
        "top_latents": [
            {
                "latent": i,
                "class": "ft_only",
                "rel_norm": rng.random(),
                "flags": ["ls_ok"],
                "contexts": [
                    {
                        "tokens": [rng.choice(words) for _ in range(16)],
                        "index": rng.randrange(16),
                        "activation": rng.random() * 5,
                    }
                    for _ in range(3)
                ],
            }
            for i in range(n_latents)
        ],
    }
    report["drift"] = {
        "layers": [{"layer": i, "kl_mean": rng.random(), "cos_mean": rng.random()} for i in range(30)]
    }
    report["persona"] = {
        "traits": [
            {
                "trait": t,
                "layer": 15,
                "polarity": "undesirable",
                "shift": 0.1,
                "shift_z": 0.5,
                "shift_frac": 0.02,
                "null_percentile": 0.4,
                "null_shifts": [rng.gauss(0, 1) for _ in range(32)],
                "base_projections": [rng.gauss(0, 1) for _ in range(20)],
                "candidate_projections": [rng.gauss(0, 1) for _ in range(20)],
                "signal_ok": True,
            }
            for t in ("evil", "sycophancy")
        ]
    }
    report["monitor"] = {
        "series": [
            {
                "trait": "evil",
                "layer": 15,
                "metric": "shift_z",
                "steps": list(range(0, 200, 10)),
                "values": [rng.random() for _ in range(20)],
            }
        ]
    }
    return report


def bench_html(n_latents: int, repeats: int) -> dict[str, Any]:
    from difflib_models.report.builder import write_report
    from difflib_models.report.html import render_html

    report = synthetic_report(n_latents)
    render_html(report)  # warm-up: imports, matplotlib font cache, template compile
    walls, cpus, writes = [], [], []
    size = 0
    for _ in range(repeats):
        wall, cpu = timed_both(lambda: render_html(report))
        walls.append(wall)
        cpus.append(cpu)
        with tempfile.TemporaryDirectory() as tmp:
            writes.append(timed_both(lambda tmp=tmp: write_report(report, tmp))[0])
            size = (Path(tmp) / "report.html").stat().st_size
    return {
        "n_latents": n_latents,
        "render_html": summarize(walls),
        "render_html_cpu_median_s": statistics.median(cpus),
        "write_report_all_formats": summarize(writes),
        "html_bytes": size,
    }


def _gate_run(tmp: Path, name: str, **kw: Any) -> dict[str, Any]:
    from difflib_models.gate.runner import GateConfig, run_gate

    result: dict[str, Any] = {}

    def run() -> None:
        result["r"] = run_gate(GateConfig(candidate="smollm2-135m-instruct", base="smollm2-135m-instruct",
                                          out=tmp / name, **kw))

    wall, cpu = timed_both(run)
    report = result["r"].report
    logger.info("%s: %.1f s wall, %.1f s CPU, %s", name, wall, cpu, report["timings"])
    return {"wall_s": wall, "cpu_s": cpu, "timings": report["timings"], "verdict": report["verdict"],
            "exit_code": result["r"].exit_code,
            "vector_source": report["persona"]["vector_source"], "_report": report}


def bench_gate() -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "smollm2-135m-instruct",
        "policy": "default (shipped)",
        "candidate": "identical to base (no short-cut: every policy metric is computed)",
    }
    from difflib_models.paths import cache_dir

    old_cache = os.environ.get("DIFFLIB_MODELS_CACHE")
    user_cache = cache_dir()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # an empty vector cache of its own (the converted model still comes from the user cache: the gate looks
        # its vectors up under <cache>/gate-vectors only)
        os.environ["DIFFLIB_MODELS_CACHE"] = str(tmp / "cache")
        try:
            (tmp / "cache").mkdir()
            for entry in user_cache.iterdir():
                if entry.name != "gate-vectors":
                    (tmp / "cache" / entry.name).symlink_to(entry)
            cold = _gate_run(tmp, "cold")
            warm = _gate_run(tmp, "warm")
            vecs = sorted((tmp / "cold" / "vectors").glob("*.safetensors"))
            files = _gate_run(tmp, "files", vectors=vecs)
        finally:
            if old_cache is None:
                os.environ.pop("DIFFLIB_MODELS_CACHE", None)
            else:
                os.environ["DIFFLIB_MODELS_CACHE"] = old_cache
    r1 = cold.pop("_report")
    warm.pop("_report")
    files.pop("_report")
    out["cold_extract_and_gate"] = cold  # empty cache: extracts (and caches) the vectors
    out["warm_cached_vectors"] = warm  # the next gate on the same base: vectors from the cache
    out["gate_with_vector_files"] = files  # --vectors (what CI does with the files of the first run)
    out["persona"] = [
        {k: t.get(k) for k in ("trait", "layer", "shift_z", "vector_auroc", "signal_ok", "vector_validation_level")}
        for t in r1["persona"]["traits"]
    ]
    out["behavioural"] = r1["behavioural"]["models"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-smollm2", action="store_true")
    parser.add_argument("--name", default="gate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    machine = machine_info()
    payload: dict[str, Any] = {"html": bench_html(args.latents, args.repeats)}
    logger.info("html: %s", payload["html"]["render_html"])
    path = write_results(args.name, payload, machine)  # partial results first: the gate part is long
    if not args.skip_smollm2:
        payload["gate_smollm2"] = bench_gate()
        path = write_results(args.name, payload, machine)
    logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
