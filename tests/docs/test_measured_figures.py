"""The demo's measured time (docs/quickstart.md, docs/results.md) and the response monitor's cost (docs/callbacks.md)
are the numbers their benchmark JSONs hold: a figure the JSON does not back fails here."""

from __future__ import annotations

import json
from pathlib import Path

from difflib_models.persona.extraction.vectors import FilterValidation

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _doc(name: str) -> str:
    return " ".join((ROOT / "docs" / name).read_text(encoding="utf-8").split())


def test_demo_time_in_the_docs_is_demo_json() -> None:
    d = json.loads((RESULTS / "demo.json").read_text(encoding="utf-8"))
    first, rerun, commit = d["first_run"], d["rerun"], d["machine"]["git_commit"]
    assert first["returncode"] == rerun["returncode"] == 0
    assert first["verdicts"] == {"sycophancy-inducing": "fail", "sycophancy-neutral": "warn"} == rerun["verdicts"]
    quick, results = _doc("quickstart.md"), _doc("results.md")
    assert f"commit {commit}" in quick and f"`demo.json`, commit {commit}" in results
    assert f"| first run, quick profile | **{first['wall_s']:.1f} s** | {first['cpu_s']:.1f} s |" in quick
    assert f"| re-run, same options | **{rerun['wall_s']:.1f} s** | {rerun['cpu_s']:.1f} s |" in quick
    st = first["stage_timings_s"]
    assert (f"fine-tunes {st['train_inducing']:.1f} s + {st['train_neutral']:.1f} s, diffs {st['diff_inducing']:.1f} s"
            f" + {st['diff_neutral']:.1f} s, gates {st['gate_inducing']:.1f} s + {st['gate_neutral']:.1f} s") in quick
    assert (f"first run {first['wall_s']:.1f} s wall ({first['cpu_s']:.1f} s CPU), re-run {rerun['wall_s']:.1f} s"
            in results)


def test_response_monitor_cost_in_the_docs_is_callbacks_responses_json() -> None:
    d = json.loads((RESULTS / "callbacks_responses.json").read_text(encoding="utf-8"))
    smol, tiny = d["results"]["smollm2-135m-instruct"], d["results"]["tinystories-656k"]
    assert smol["monitor_options"] == {"responses": True} == tiny["monitor_options"]
    doc = _doc("callbacks.md")
    assert f"commit {d['machine']['git_commit']}" in doc
    assert (f"a check costs {smol['one_monitor_check_s']:.2f} s against a {smol['median_step_s_without']:.2f} s "
            f"training step (the baseline {smol['monitor_baseline_s']:.2f} s)") in doc
    every = {n: f"{v:.3f}x" for n, v in smol["ratio_projected_every"].items()}
    assert (f"{every['50']} checking every 50 steps, {every['100']} every 100, {every['200']} every 200 and "
            f"{every['500']} every 500") in doc
    assert (f"TinyStories-656K: {tiny['one_monitor_check_s']:.2f} s against {tiny['median_step_s_without']:.3f} s; "
            f"{tiny['ratio_projected_every']['200']:.3f}x at 200") in doc
    plain = json.loads((RESULTS / "callbacks.json").read_text(encoding="utf-8"))["results"]["smollm2-135m-instruct"]
    assert f"The last-prompt check alone costs {plain['one_monitor_check_s']:.2f} s" in doc


def test_stacked_filter_tables_on_other_behaviours_are_their_jsons() -> None:
    """docs/data-filtering.md, "Behaviours the recipe was not developed on": each row is its benchmark JSON."""
    doc = _doc("data-filtering.md")
    for behaviour in ("survival-instinct", "myopic-reward", "refusal", "coordinate-other-ais"):
        d = json.loads((RESULTS / f"filter_caa_stacked_{behaviour}.json").read_text(encoding="utf-8"))
        for r in d["runs"]:
            span = r["readout"].replace(" (stacked)", "")
            held, strat = r["heldout"], r["word_stratified_auroc"]
            flagged = " (flagged)" if FilterValidation.from_dict(r["record"]).reads_wording else ""
            row = (f"| {behaviour}, {r['seed']}{flagged} | {r['method']}, {span} | **{held['auroc']:.3f}** / "
                   f"{held['precision_at_k']:.2f} / {held['pair_win_rate']:.2f} | {strat['readout']:.3f} | "
                   f"{r['single_block_heldout']['auroc']:.3f} | {r['surface_heldout']['auroc']:.3f} / "
                   f"{strat['surface']:.3f} | {r['random_null_heldout_auroc']['max']:.3f} / "
                   f"{r['random_null_word_stratified_max']:.3f} |")
            assert row in doc, row
