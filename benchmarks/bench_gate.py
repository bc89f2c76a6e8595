"""Release-gate and quick-diff wall times against the issue-13 goals, and HTML render time of a report with 1,000
crosscoder latents.

    python -m benchmarks.bench_gate [--latents 1000] [--repeats 3] [--skip-html] [--skip-diff] [--skip-smollm2]
                                    [--candidate lora|identical] [--with-files] [--ab-compare]

- ``html``: a report with N latents (3 max-activating contexts of 16 tokens each, 4N relative decoder norms, two
  persona traits with projections and nulls, a monitor series, drift over 30 layers); median wall/CPU seconds of
  ``render_html`` and of ``write_report`` (JSON + HTML + Markdown + JUnit), and the HTML size.
- ``diff_tinystories656k``: the default ``difflib-models diff`` (a fresh process, every option at its default) of
  TinyStories-656K vs a 5-step LoRA adapter; wall seconds, per-stage seconds; goal 60 s.
- ``gate_smollm2``: ``run_gate`` with the default policy on SmolLM2-135M-Instruct, candidate = SmolLM2 + a small
  random LoRA (``--candidate identical``: a second copy of the base). ``cold``: an empty vector cache, the gate
  extracts the two persona vectors on the base (quick validation) and caches them, goal 120 s; ``warm``: the next
  gate on the same base, vectors from the cache, goal 30 s; ``files`` (``--with-files``): vectors from the cold
  run's files with ``--vectors``. Each records wall and CPU seconds, the report's per-stage ``timings`` and where
  the vectors came from.
- ``ab_scoring_smollm2`` (``--ab-compare``): the behavioural A/B eval of the default policy's 72 items on one
  SmolLM2, one-pass scorer vs per-sequence scoring in the same process: seconds, their CPU ratio and the largest
  difference of any score.

Every timed entry carries the load average before and after it and ``machine_loaded`` (1-minute load above half
the cores: other work shared the machine, the figure is not an idle one), ``goal_s`` and ``goal_met``. Results go
to ``benchmarks/results/gate.json`` with the machine description (CPU count, torch threads, load average: compare
CPU seconds as well as wall seconds on a shared machine). Nothing is asserted.
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

from benchmarks.common import load_average, machine_info, summarize, timed_both, write_results

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


GATE_GOALS_S = {"cold": 120.0, "warm": 30.0}
"""Issue 13: the gate on SmolLM2 with the default policy, cold (extracting) <= 120 s, warm (cached vectors) <= 30 s
on 2 cores."""
DIFF_GOAL_S = 60.0
"""Issue 13: the default ``difflib-models diff`` on TinyStories-656K within 60 s on 2 cores."""


def _loaded(load: list[float] | None) -> bool:
    """True when the 1-minute load average says other work shared the cores (figures not comparable to idle)."""
    return bool(load) and load[0] > 0.5 * (os.cpu_count() or 1)


def _timed_entry(fn: Any, goal: float | None) -> tuple[dict[str, Any], Any]:
    before = load_average()
    box: dict[str, Any] = {}
    wall, cpu = timed_both(lambda: box.setdefault("r", fn()))
    after = load_average()
    entry: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu, "load_average_before": before,
                             "load_average_after": after, "machine_loaded": _loaded(before) or _loaded(after)}
    if goal is not None:
        entry.update({"goal_s": goal, "goal_met": wall <= goal})
    return entry, box["r"]


def _gate_run(tmp: Path, name: str, candidate: str, base: str | None, goal: float | None,
              **kw: Any) -> dict[str, Any]:
    from difflib_models.gate.runner import GateConfig, run_gate

    entry, result = _timed_entry(
        lambda: run_gate(GateConfig(candidate=candidate, base=base, out=tmp / name, **kw)), goal)
    report = result.report
    logger.info("%s: %.1f s wall, %.1f s CPU, %s", name, entry["wall_s"], entry["cpu_s"], report["timings"])
    entry.update({"timings": report["timings"], "verdict": report["verdict"], "exit_code": result.exit_code,
                  "vector_source": report["persona"]["vector_source"], "_report": report})
    return entry


def smollm2_lora(path: Path, *, r: int = 4, scale: float = 0.02, seed: int = 0) -> Path:
    """A small random LoRA adapter (q/v projections, rank ``r``) on SmolLM2-135M-Instruct, saved to ``path`` with
    the embedded default as its base: a candidate that differs a little from its base."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model

    from difflib_models.models.loading import load_model

    base = load_model("smollm2-135m-instruct")
    peft_model = get_peft_model(base.model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, param in peft_model.named_parameters():
            if "lora_B" in pname:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    peft_model.save_pretrained(path)
    cfg_path = path / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = "smollm2-135m-instruct"
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return path


def bench_gate(*, candidate: str = "lora", with_files: bool = False) -> dict[str, Any]:
    """Cold (empty vector cache: extracts) and warm (cached vectors) gate runs with the default policy."""
    out: dict[str, Any] = {"model": "smollm2-135m-instruct", "policy": "default (shipped)"}
    from difflib_models.paths import cache_dir

    old_cache = os.environ.get("DIFFLIB_MODELS_CACHE")
    user_cache = cache_dir()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if candidate == "lora":
            cand, base = str(smollm2_lora(tmp / "adapter")), None
            out["candidate"] = ("SmolLM2 + a random rank-4 LoRA on q/v (B ~ N(0, 0.02^2)); base = its adapter-"
                                "disabled view")
        else:
            cand, base = "smollm2-135m-instruct", "smollm2-135m-instruct"
            out["candidate"] = "identical to base (no short-cut: every policy metric is computed)"
        # empty vector and base-measurement caches of its own (the converted model still comes from the user cache:
        # the gate looks its vectors up under <cache>/gate-vectors and the base's answers/scores under gate-base)
        os.environ["DIFFLIB_MODELS_CACHE"] = str(tmp / "cache")
        try:
            (tmp / "cache").mkdir()
            for entry in user_cache.iterdir():
                if entry.name not in ("gate-vectors", "gate-base"):
                    (tmp / "cache" / entry.name).symlink_to(entry)
            cold = _gate_run(tmp, "cold", cand, base, GATE_GOALS_S["cold"])
            warm = _gate_run(tmp, "warm", cand, base, GATE_GOALS_S["warm"])
            files = None
            if with_files:
                vecs = sorted((tmp / "cold" / "vectors").glob("*.safetensors"))
                files = _gate_run(tmp, "files", cand, base, None, vectors=vecs)
        finally:
            if old_cache is None:
                os.environ.pop("DIFFLIB_MODELS_CACHE", None)
            else:
                os.environ["DIFFLIB_MODELS_CACHE"] = old_cache
    r1 = cold.pop("_report")
    warm.pop("_report")
    out["cold_extract_and_gate"] = cold  # empty cache: extracts (and caches) the vectors
    out["warm_cached_vectors"] = warm  # the next gate on the same base: vectors from the cache
    if files is not None:
        files.pop("_report")
        out["gate_with_vector_files"] = files  # --vectors (what CI does with the files of the first run)
    out["persona"] = [
        {k: t.get(k) for k in ("trait", "layer", "shift_z", "vector_auroc", "signal_ok", "vector_validation_level")}
        for t in r1["persona"]["traits"]
    ]
    out["behavioural"] = r1["behavioural"]["models"]
    return out


def bench_ab_scoring(batch_size: int = 8) -> dict[str, Any]:
    """The behavioural A/B eval of the default policy's items on one SmolLM2, side by side in one process: the
    one-pass scorer (``gate/ab_scoring.py``) and per-sequence scoring (every answer and the letter context run as
    their own sequences: ``ab_probabilities`` + ``answer_text_scores``, the gate's former path)."""
    from difflib_models.gate.behavioural import (
        ab_probabilities,
        behaviour_traits,
        item_scores,
        load_behaviour_items,
    )
    from difflib_models.hooks import probe_mode
    from difflib_models.models.loading import load_model
    from difflib_models.persona.validation.dose_response import answer_text_scores

    lm = load_model("smollm2-135m-instruct")
    items = [it for t in behaviour_traits() for it in load_behaviour_items(t, max_items=24)]

    def per_sequence() -> tuple[list[float], list[float], list[float]]:
        probs = ab_probabilities(lm, [it.letter_item() for it in items], batch_size=batch_size)
        with probe_mode(lm.model):
            asked = [it.text_item(True) for it in items] + [it.text_item(False) for it in items]
            s = answer_text_scores(lm.model, lm.tokenizer, asked, batch_size=batch_size)
        return s[: len(items)], s[len(items):], probs

    def one_pass() -> tuple[list[float], list[float], list[float]]:
        r = item_scores(lm, items, batch_size=batch_size)
        return r.first, r.second, r.p_matching

    out: dict[str, Any] = {"n_items": len(items), "batch_size": batch_size}
    results = {}
    for name, fn in (("one_pass", one_pass), ("per_sequence", per_sequence)):
        out[name], results[name] = _timed_entry(fn, None)
        logger.info("A/B scoring %s: %.1f s wall, %.1f s CPU", name, out[name]["wall_s"], out[name]["cpu_s"])
    out["ratio_cpu_per_sequence_over_one_pass"] = out["per_sequence"]["cpu_s"] / out["one_pass"]["cpu_s"]
    out["max_abs_diff"] = max(abs(a - b) for x, y in zip(results["one_pass"], results["per_sequence"], strict=True)
                              for a, b in zip(x, y, strict=True))
    return out


def tinystories() -> Path:
    from difflib_models.paths import shared_dir

    return shared_dir() / "models" / "tinystories-656k"


def tiny_adapter(path: Path) -> Path:
    """A LoRA adapter of TinyStories-656K (5 steps on one sentence, as tests/diffing/test_cli_diff.py makes)."""
    from difflib_models.diffing.finetune import LoraFinetuneConfig, lora_finetune
    from difflib_models.models.loading import load_model

    lm = load_model(tinystories())
    texts = ["Once upon a time, there was a fish named Fin. Fin liked to swim in the sea."] * 4
    res = lora_finetune(lm.model, lm.tokenizer, texts, LoraFinetuneConfig(r=4, steps=5, batch_size=4, lr=1e-2))
    res.model.save_pretrained(path)
    return path


def bench_diff() -> dict[str, Any]:
    """The default ``difflib-models diff`` (every option at its default) of TinyStories-656K vs a LoRA adapter, run
    as a user runs it: a fresh ``python -m difflib_models diff`` process (imports and model loading included)."""
    import json
    import resource
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        adapter = tiny_adapter(tmp / "adapter")
        cmd = [sys.executable, "-m", "difflib_models", "diff", "--base", str(tinystories()), "--adapter",
               str(adapter), "--out", str(tmp / "diff")]
        env = dict(os.environ, DIFFLIB_MODELS_NO_PROGRESS="1")
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        entry, proc = _timed_entry(lambda: subprocess.run(cmd, env=env, capture_output=True, text=True,
                                                          check=False, timeout=1800), DIFF_GOAL_S)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        entry["cpu_s"] = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)  # the diff
        if proc.returncode != 0:
            raise RuntimeError(f"diff failed ({proc.returncode}): {proc.stderr[-2000:]}")
        doc = json.loads((tmp / "diff" / "diff.json").read_text(encoding="utf-8"))
    cc = doc["crosscoder"]
    entry.update({
        "command": "difflib-models diff --base tinystories-656k --adapter <5-step LoRA> --out DIR (defaults)",
        "stages_s": {k: v["seconds"] for k, v in doc["stages"].items()},
        "n_tokens": doc["store"]["n_tokens"], "crosscoder_steps": cc.get("config", {}).get("steps"),
        "crosscoder_batch_size": cc.get("config", {}).get("batch_size"), "crosscoder_fve": cc["metrics"].get("fve"),
    })
    logger.info("diff: %.1f s wall, stages %s", entry["wall_s"], entry["stages_s"])
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-html", action="store_true")
    parser.add_argument("--skip-smollm2", action="store_true")
    parser.add_argument("--skip-diff", action="store_true")
    parser.add_argument("--candidate", choices=("lora", "identical"), default="lora")
    parser.add_argument("--with-files", action="store_true", help="also time a gate run with --vectors files")
    parser.add_argument("--ab-compare", action="store_true",
                        help="also time the A/B eval one-pass vs per-sequence on one SmolLM2 (minutes)")
    parser.add_argument("--name", default="gate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    machine = machine_info()
    payload: dict[str, Any] = {}
    if not args.skip_html:
        payload["html"] = bench_html(args.latents, args.repeats)
        logger.info("html: %s", payload["html"]["render_html"])
    path = write_results(args.name, payload, machine)  # partial results first: the gate part is long
    if not args.skip_diff:
        payload["diff_tinystories656k"] = bench_diff()
        path = write_results(args.name, payload, machine)
    if args.ab_compare:
        payload["ab_scoring_smollm2"] = bench_ab_scoring()
        path = write_results(args.name, payload, machine)
    if not args.skip_smollm2:
        payload["gate_smollm2"] = bench_gate(candidate=args.candidate, with_files=args.with_files)
        path = write_results(args.name, payload, machine)
    logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
