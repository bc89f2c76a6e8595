"""Run the end-to-end demo: vectors -> data-filter scores -> fine-tunes with callbacks -> diffs -> gates -> summary.

Every stage goes through :class:`~difflib_models.stages.StageCache`, so a re-run with the same options reuses
the finished stages (and the cached GGUF conversion) and only reloads the model. Expected verdicts: the
sycophancy-inducing fine-tune FAILS the default release policy, the matched neutral control PASSES. The demo never
forces a verdict: when one differs from the expectation the summary says so and :attr:`DemoResult.as_expected`
is false.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflib_models.datasets import load_dataset
from difflib_models.demo import steps
from difflib_models.demo.config import INDUCING, NEUTRAL, TRAIT, DemoConfig
from difflib_models.gate.policy import load_policy
from difflib_models.io import atomic_write_json, sha256_file
from difflib_models.models.loading import load_model
from difflib_models.stages import StageCache

log = logging.getLogger(__name__)

EXPECTED = {INDUCING: "fail", NEUTRAL: "pass"}
"""Expected gate outcome per training set: "fail" = verdict fail; "pass" = the gate lets it through (exit 0, i.e.
verdict pass, or warn under the default policy's ``warnings_fail: false``)."""
SUMMARY_FILE = "summary.json"


@dataclass
class DemoResult:
    """What the demo produced: the summary dict (also in ``out/summary.json``) and per-stage timings."""

    out: Path
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)

    @property
    def verdicts(self) -> dict[str, str]:
        return {name: run["gate"]["verdict"] for name, run in self.summary["runs"].items()}

    @property
    def as_expected(self) -> bool:
        return all(outcome(self.summary["runs"][name]["gate"]) == want
                   for name, want in self.summary["expected"].items())


def outcome(gate: dict[str, Any]) -> str:
    """"fail" when the gate blocks the candidate (non-zero exit), else "pass" (a warn verdict passes)."""
    return "pass" if gate["exit_code"] == 0 else "fail"


def run_demo(config: DemoConfig) -> DemoResult:
    """Run (or resume) the demo described by ``config``; returns the summary."""
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    out = Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    profile = config.resolved_profile()
    device = steps.device_ok(config.resolved_device())
    uri = config.resolved_tracking_uri()
    stages = StageCache(out)

    t = time.perf_counter()
    base = load_model(config.model, device=device)
    load_s = time.perf_counter() - t
    ident = base.identity.weight_hash
    common = {"model": ident, "seed": config.seed, "profile": profile.to_dict(), "device": device}

    names = [INDUCING] + ([NEUTRAL] if config.control else [])
    all_rows = {name: load_dataset(name) for name in names}
    train_rows = {name: rows[: profile.train_rows] for name, rows in all_rows.items()}

    vector_budget = {k: getattr(profile, k) for k in ("vector_instructions", "vector_questions",
                                                      "vector_eval_questions")}
    plan = load_policy(None).persona
    vectors = stages.run("vectors", {"model": ident, "traits": list(steps.gate_traits()),
                                     "modes": {t: plan.mode_for(t) for t in steps.gate_traits()}, **vector_budget},
                         lambda: steps.extract_vectors(base, out / "vectors", profile),
                         files=lambda o: o["files"].values())
    vector_files = [vectors["files"][t] for t in steps.gate_traits()]
    filter_vector = stages.run("filter_vector", {"model": ident, "trait": TRAIT, "seed": config.seed,
                                                  "aggregator": steps.FILTER_AGGREGATOR},
                               lambda: steps.extract_filter_vector(base, out / "vectors", config.seed),
                               files=lambda o: [o["file"]])
    # every key below names the CONTENT of the files its stage reads, not only their paths: a re-extracted vector
    # or re-scored data set at the same path must not let a later stage reuse results made from the old one
    scores = stages.run("data_filter", {**common, "vectors": filter_vector["file"], "sets": names,
                                        "filter_vector": filter_vector, "read": _digests([filter_vector["file"]])},
                        lambda: steps.score_training_sets(base, filter_vector["file"], train_rows,
                                                          out / "data_filter", config.seed))
    ranking = scores.pop("ranking", None)
    held_out = all_rows[NEUTRAL if NEUTRAL in all_rows else INDUCING][profile.train_rows:] or all_rows[INDUCING]
    texts = steps.diff_texts(base.tokenizer, held_out, profile.diff_texts)
    # later stages load what they need (peft wraps a model in place, so each fine-tune gets a fresh copy)

    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        key = name.replace("sycophancy-", "")
        run_dir = out / "runs" / key
        train = stages.run(f"train_{key}", {**common, "set": name, "vectors": vectors["files"][TRAIT],
                                            "read": _digests([vectors["files"][TRAIT]])},
                           lambda n=name, d=run_dir: steps.fine_tune(
                               n, train_rows[n], profile, vector_file=vectors["files"][TRAIT], run_dir=d,
                               tracking_uri=uri, device=device, seed=config.seed, model_spec=config.model))
        diff = stages.run(f"diff_{key}", {**common, "adapter": train["adapter"], "run": train["run_id"]},
                          lambda a=train["adapter"], d=run_dir: steps.diff_adapter(
                              a, texts, profile, d / "diff", device=device, seed=config.seed))
        runs[name] = {"key": key, "train": train, "diff": diff}

    memo = steps.BehaviourMemo()  # the two gates score the base and the neutral fine-tune once each
    for name in names:
        r = runs[name]
        control = runs[NEUTRAL]["train"]["adapter"] if name == INDUCING and NEUTRAL in runs else None
        with memo:
            r["gate"] = stages.run(
                f"gate_{r['key']}",
                {**common, "adapter": r["train"]["run_id"], "control": control, "diff": r["diff"]["diff"],
                 "uri": uri, "read": _digests([*vector_files, scores[name]["summary"]])},
                lambda r=r, n=name, c=control: steps.gate(
                    n, r["train"]["adapter"], control_adapter=c, vectors=vector_files, diff=r["diff"]["diff"],
                    data_filter=scores[n]["summary"], monitor=r["train"]["monitor"], out_dir=out / "gate" / r["key"],
                    device=device, seed=config.seed, tracking_uri=uri, run_id=r["train"]["run_id"],
                    behaviour_items=profile.gate_behaviour_items))

    wall = time.perf_counter() - t_start
    summary = {
        "profile": profile.to_dict(),
        "device": device,
        "seed": config.seed,
        "out": str(out),
        "tracking_uri": uri,
        "mlflow_ui": mlflow_ui_command(uri),
        "expected": {n: EXPECTED[n] for n in names},
        "vectors": vectors,
        "data_filter": {n: {k: v for k, v in s.items() if k != "seconds"} for n, s in scores.items()},
        "filter_vector": filter_vector,
        "data_filter_ranking": ranking,
        "runs": {n: {k: v for k, v in r.items() if k != "key"} for n, r in runs.items()},
        "timings_s": {"load_model": round(load_s, 3), **{k: round(v, 3) for k, v in stages.timings.items()},
                      "total": round(wall, 3)},
        "cpu_s": round(time.process_time() - cpu_start, 3),
        "stage_cpu_s": {k: round(v, 3) for k, v in stages.cpu.items()},
        "reused": dict(stages.reused),
        "behaviour_memo": {"hits": memo.hits, "misses": memo.misses},
    }
    atomic_write_json(out / SUMMARY_FILE, summary)
    return DemoResult(out=out, summary=summary, timings=dict(stages.timings), reused=dict(stages.reused))


def _digests(paths: list[str]) -> dict[str, str | None]:
    """sha256 of each file a stage reads (None when missing), for that stage's key."""
    return {p: sha256_file(p) if Path(p).is_file() else None for p in paths}


def mlflow_ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this tracking store."""
    return f"mlflow ui --backend-store-uri {uri}"


def format_summary(result: DemoResult) -> list[str]:
    """The short human-readable summary the CLI prints."""
    s = result.summary
    lines = [f"difflib-models demo ({s['profile']['name']} profile, {s['device']}): "
             f"{s['timings_s']['total']:.0f} s" + (" (finished stages reused)" if any(s["reused"].values()) else "")]
    for name, run in s["runs"].items():
        g = run["gate"]
        want = s["expected"][name]
        mark = "as expected" if outcome(g) == want else f"UNEXPECTED (expected {want})"
        syc = g["persona"].get(TRAIT, {})
        lines.append(f"  {name:22s} verdict {g['verdict'].upper():5s} {mark}")
        lines.extend(f"    warn {cid}: {why}" for cid, why in (g.get("warnings") or {}).items())
        lines.append(f"    {TRAIT} answers {_num(syc.get('response_null_z'))} null sd  "
                     f"last-prompt shift_z {_num(syc.get('shift_z'))}  null pct {_num(syc.get('null_percentile'))}"
                     + (f"  excess_z over control {_num(syc.get('excess_z'))}" if syc.get("excess_z") is not None
                        else ""))
        tr = run["train"]
        lines.append(f"    monitor: {tr['monitor_status']} (first fail step {tr['monitor_first_fail_step']}; answers "
                     f"{_num((tr.get('monitor_last') or {}).get('response_null_z'))} null sd at the last check), "
                     f"final loss {_num(tr['final_loss'])}, data-filter mean delta_p "
                     f"{_num(s['data_filter'][name]['mean_delta_p'])}")
        lines.append(f"    report: {g['paths'].get('html')}")
    lines.extend(_filter_lines(s))
    lines.append(f"MLflow: {s['tracking_uri']}  (open with: {s['mlflow_ui']})")
    lines.append(f"summary: {Path(s['out']) / SUMMARY_FILE}")
    return lines


def _filter_lines(s: dict[str, Any]) -> list[str]:
    """The data filter's validation and how it ranks the demo's inducing rows above its neutral rows."""
    fv = (s.get("filter_vector") or {}).get("filter_validation")
    lines = []
    if fv:
        lines.append(f"  data filter: {TRAIT} vector (paired, {steps.FILTER_AGGREGATOR}) at blocks.{fv['filter_layer']}, method {fv['method']}; "
                     f"filter validation AUROC {fv['eval_auroc']:.2f} on {fv['n_eval']} held-out pairs")
    r = s.get("data_filter_ranking")
    if r:
        lines.append(f"    ranks {r['positive']} above {r['negative']} rows: AUROC {r['auroc']:.2f}, "
                     f"precision@{r['k']} {r['precision_at_k']:.2f}")
    return lines


def _num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, int | float) and not isinstance(x, bool) else "n/a"
