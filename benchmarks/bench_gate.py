"""Release-gate wall time on SmolLM2-135M-Instruct with the shipped default policy, and HTML render time of a
report with 1,000 crosscoder latents.

    python -m benchmarks.bench_gate [--latents 1000] [--repeats 3] [--skip-smollm2]

- ``html``: a report with N latents (3 max-activating contexts of 16 tokens each, 4N relative decoder norms, two
  persona traits with projections and nulls, a monitor series, drift over 30 layers); median wall/CPU seconds of
  ``render_html`` and of ``write_report`` (JSON + HTML + Markdown + JUnit), and the HTML size.
- ``gate``: ``run_gate`` with the default policy, base = candidate = SmolLM2 (the worst case for time: the
  default policy computes everything it can; nothing short-circuits). Run 1 extracts the two persona vectors on
  the base; run 2 reuses them with ``--vectors`` (what CI does after the first release). Per-stage timings come
  from the report's ``timings``.

Results go to ``benchmarks/results/gate.json`` with the machine description (CPU count, load average: the
development machine is shared, so compare CPU seconds as well as wall seconds). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
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


def bench_gate() -> dict[str, Any]:
    from difflib_models.gate.runner import GateConfig, run_gate

    out: dict[str, Any] = {
        "model": "smollm2-135m-instruct",
        "policy": "default (shipped)",
        "candidate": "identical to base (no short-cut: every policy metric is computed)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        result: dict[str, Any] = {}

        def first() -> None:
            result["r1"] = run_gate(
                GateConfig(
                    candidate="smollm2-135m-instruct", base="smollm2-135m-instruct", out=Path(tmp) / "run1"
                )
            )

        wall, cpu = timed_both(first)
        r1 = result["r1"].report
        out["extract_and_gate"] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "timings": r1["timings"],
            "verdict": r1["verdict"],
            "exit_code": result["r1"].exit_code,
        }
        vecs = sorted((Path(tmp) / "run1" / "vectors").glob("*.safetensors"))

        def second() -> None:
            result["r2"] = run_gate(
                GateConfig(
                    candidate="smollm2-135m-instruct",
                    base="smollm2-135m-instruct",
                    out=Path(tmp) / "run2",
                    vectors=vecs,
                )
            )

        wall, cpu = timed_both(second)
        r2 = result["r2"].report
        out["gate_with_vector_files"] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "timings": r2["timings"],
            "verdict": r2["verdict"],
        }
        out["persona"] = [
            {k: t.get(k) for k in ("trait", "layer", "shift_z", "vector_auroc", "signal_ok")}
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
