"""Overhead of ActivationSnapshot + PersonaMonitor (at their defaults) on a LoRA fine-tune, in one script run.

For TinyStories-656K and SmolLM2-135M-Instruct: the same LoRA fine-tune (same data, same seed) is run without and
with the callbacks, alternately (``--repeats`` pairs). Timed from the first ``on_train_start`` hook to the last
``on_train_end`` hook, so the start/end snapshots, the monitor baseline and every check are included. Also: the
median step time, the cost of one snapshot and of one monitor check (their own timers), and a projection of the
overhead ratio for a longer run (``--project-steps``) at the default schedule (snapshots at start and end only,
a monitor check every ``PersonaMonitor.every_n_steps`` = 50 steps).

Run: ``python -m benchmarks.bench_callbacks [--steps-tiny 60] [--steps-smol 55]``; writes
``benchmarks/results/callbacks.json``. ``--responses``: the monitor reads the model's own answers too
(``PersonaMonitor(responses=True)``: a greedy generation of 32 tokens for each of the 20 questions per check);
writes ``callbacks_responses.json``, with the projection also at other check intervals (``ratio_projected_every``).
It never asserts timings. The machine is shared: see ``machine``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DIFFLIB_MODELS_NO_PROGRESS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

log = logging.getLogger("bench_callbacks")


def _timers() -> tuple[Any, Any]:
    import lightning.pytorch as L

    class First(L.Callback):
        def __init__(self) -> None:
            self.t0 = 0.0
            self.batch_t0 = 0.0
            self.steps: list[float] = []

        def on_train_start(self, trainer, pl_module) -> None:
            self.t0 = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.batch_t0 = time.perf_counter()

    class Last(L.Callback):
        def __init__(self, first: First) -> None:
            self.first = first
            self.total = 0.0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.first.steps.append(time.perf_counter() - self.first.batch_t0)

        def on_train_end(self, trainer, pl_module) -> None:
            self.total = time.perf_counter() - self.first.t0

    first = First()
    return first, Last(first)


def _fit(
    base_model: Any, tokenizer: Any, rows: list, steps: int, callbacks: list, root: Path
) -> dict[str, Any]:
    import lightning.pytorch as L

    from difflib_models.training.lora_module import ChatDataModule, LoRAFineTune, add_lora

    model = add_lora(copy.deepcopy(base_model), r=8, alpha=16)
    module = LoRAFineTune(model, tokenizer, lr=2e-3, max_steps=steps, warmup_steps=1)
    dm = ChatDataModule(tokenizer, rows, batch_size=4, max_length=96, seed=0)
    first, last = _timers()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[first, *callbacks, last],
    )
    trainer.fit(module, datamodule=dm)
    return {"loop_s": last.total, "step_s": first.steps}


def bench_model(
    name: str, loaded: Any, rows: list, steps: int, repeats: int, project_steps: int, work: Path,
    monitor_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from difflib_models.callbacks import ActivationSnapshot, PersonaMonitor
    from difflib_models.persona.extraction.extractor import PersonaExtractor

    layer = loaded.n_layers // 2
    vec = work / f"{name}-sycophancy"
    ext = PersonaExtractor(mode="prompt_contrast", layers=[layer], batch_size=8, show_progress=False)
    ext.fit(loaded, "sycophancy").to_vector_set(selected_layer=layer).save(vec)
    base = loaded.model
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    snap_costs, check_costs, baseline_costs = [], [], []
    for r in range(repeats):
        runs["without"].append(_fit(base, loaded.tokenizer, rows, steps, [], work / f"{name}-a{r}"))
        snap = ActivationSnapshot(out_dir=str(work / f"{name}-snap{r}"))
        mon = PersonaMonitor(
            vectors=str(vec.with_suffix(".safetensors")), out_dir=str(work / f"{name}-mon{r}"),
            **(monitor_kwargs or {}),
        )
        _wrap_timer(snap, "_snapshot", snap_costs)
        _wrap_timer(mon, "check", check_costs)
        _wrap_timer(mon, "_take_baseline", baseline_costs)
        runs["with"].append(_fit(base, loaded.tokenizer, rows, steps, [snap, mon], work / f"{name}-b{r}"))
    loop = {k: statistics.median(x["loop_s"] for x in v) for k, v in runs.items()}
    step_med = {k: statistics.median(s for x in v for s in x["step_s"]) for k, v in runs.items()}
    snap_s = statistics.median(snap_costs)
    if not check_costs:
        raise SystemExit(f"no monitor check happened in {steps} steps: run more steps than every_n_steps")
    check_s = statistics.median(check_costs)
    base_s = statistics.median(baseline_costs)
    t = step_med["without"]
    every = mon.every_n_steps
    def project(every_n: int) -> float:
        return (project_steps * t + 2 * snap_s + base_s + (project_steps // every_n) * check_s) / (project_steps * t)

    projected = project(every)
    return {
        "model": loaded.identity.name,
        "n_layers": loaded.n_layers,
        "steps_per_run": steps,
        "repeats": repeats,
        "batch": "4 chat rows x <= 96 tokens, LoRA r=8",
        "defaults": {
            "ActivationSnapshot": "generic prompts (64), layers='mid', at_start + at_end",
            "PersonaMonitor": f"sycophancy vector at blocks.{layer}, every_n_steps={every}, 20 probe questions, "
            "32 null directions",
        },
        "loop_s_without": loop["without"],
        "loop_s_with": loop["with"],
        "ratio_measured": loop["with"] / loop["without"],
        "median_step_s_without": t,
        "median_step_s_with": step_med["with"],
        "one_snapshot_s": snap_s,
        "one_monitor_check_s": check_s,
        "monitor_baseline_s": base_s,
        "snapshot_over_step": snap_s / t,
        "check_over_step": check_s / t,
        "projected_steps": project_steps,
        "ratio_projected": projected,
        "ratio_projected_every": {str(n): project(n) for n in (10, 50, 100, 200, 500)},
        "monitor_options": dict(monitor_kwargs or {}),
        "goal_ratio": 1.03,
    }


def _wrap_timer(obj: Any, method: str, sink: list[float]) -> None:
    fn = getattr(obj, method)

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)

    setattr(obj, method, timed)


def _earlier_results(exclude: set[str], name: str = "callbacks") -> dict[str, Any]:
    """Results of models not run this time, carried over from the existing results file and marked with the run
    they come from (``from_earlier_run``), so a TinyStories-only run does not drop the SmolLM2 numbers."""
    import json

    from benchmarks.common import RESULTS_DIR

    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    origin = {"timestamp_utc": doc.get("timestamp_utc"), "git_commit": (doc.get("machine") or {}).get("git_commit")}
    out = {}
    for name, r in (doc.get("results") or {}).items():
        if name not in exclude:
            out[name] = {**r, "from_earlier_run": r.get("from_earlier_run", origin)}
    return out


def main(argv: list[str] | None = None) -> Path:
    from benchmarks.common import machine_info, write_results
    from difflib_models.datasets import load_dataset
    from difflib_models.models.loading import load_model
    from difflib_models.paths import shared_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps-tiny", type=int, default=60)  # > every_n_steps (50)
    p.add_argument("--steps-smol", type=int, default=55)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--project-steps", type=int, default=1000)
    p.add_argument("--skip-smol", action="store_true")
    p.add_argument("--responses", action="store_true", help="PersonaMonitor(responses=True); -> callbacks_responses")
    args = p.parse_args(argv)
    name = "callbacks_responses" if args.responses else "callbacks"
    kwargs = {"responses": True} if args.responses else {}
    logging.basicConfig(level=logging.WARNING)
    machine = machine_info()
    rows = load_dataset("sycophancy-neutral")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = load_model(shared_dir() / "models" / "tinystories-656k")
        texts = [
            " ".join(m["content"] for m in r["messages"]) for r in rows
        ]  # no chat template in TinyStories
        results["tinystories-656k"] = bench_model(
            "tiny", tiny, texts, args.steps_tiny, args.repeats, args.project_steps, work, kwargs
        )
        if not args.skip_smol:
            smol = load_model()
            results["smollm2-135m-instruct"] = bench_model(
                "smol", smol, rows, args.steps_smol, args.repeats, args.project_steps, work, kwargs
            )
    if args.skip_smol:
        results.update(_earlier_results(exclude=set(results), name=name))
    path = write_results(
        name,
        {
            "results": results,
            "notes": (
                "ratio_measured covers short runs (steps_per_run), so the start/end snapshots and the baseline weigh far "
                "more than in a real run; ratio_projected = (N*step + 2*snapshot + baseline + N/every*check) / (N*step) for "
                "N = projected_steps at the default schedule. Timings on a shared 2-core machine (see load average)."
            ),
        },
        machine=machine,
    )
    for name, r in results.items():
        print(
            f"{name}: measured {r['ratio_measured']:.3f}x over {r['steps_per_run']} steps, projected "
            f"{r['ratio_projected']:.3f}x over {r['projected_steps']}; step {r['median_step_s_without']:.3f}s, "
            f"snapshot {r['one_snapshot_s']:.2f}s, check {r['one_monitor_check_s']:.2f}s"
        )
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
